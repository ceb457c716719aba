package catalog

import (
	"fmt"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/render"
)

// ArtifactHubRepoFile is the repository metadata file Artifact Hub reads at
// the path a repository is added with (docs: topics/repositories,
// "artifacthub-repo.yml"): tasks/ and pipelines/ are each such a path.
const ArtifactHubRepoFile = "artifacthub-repo.yml"

type artifactHubRepo struct {
	RepositoryID string         `json:"repositoryID,omitempty"`
	Owners       []config.Owner `json:"owners,omitempty"`
}

// addArtifactHub writes tasks/ and pipelines/ artifacthub-repo.yml.
func addArtifactHub(files render.Files, cfg *config.Config) error {
	for _, r := range []struct{ dir, kind, id string }{
		{"tasks", "task", cfg.ArtifactHub.TaskRepositoryID},
		{"pipelines", "pipeline", cfg.ArtifactHub.PipelineRepositoryID},
	} {
		var y []byte
		if r.id != "" || len(cfg.ArtifactHub.Owners) > 0 {
			var err error
			if y, err = render.YAML(artifactHubRepo{RepositoryID: r.id, Owners: cfg.ArtifactHub.Owners}); err != nil {
				return fmt.Errorf("%s/%s: %w", r.dir, ArtifactHubRepoFile, err)
			}
		}
		note := fmt.Sprintf("# Artifact Hub repository metadata: add https://<this repository>/%s to Artifact Hub as a\n"+
			"# Tekton %s repository (directory-based versioning). repositoryID (artifactHub.%sRepositoryID)\n"+
			"# makes it a verified publisher, owners (artifactHub.owners) claim ownership.\n", r.dir, r.dir, r.kind)
		files[r.dir+"/"+ArtifactHubRepoFile] = append([]byte(Header+note), y...)
	}
	return nil
}
