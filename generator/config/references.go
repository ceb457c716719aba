package config

import (
	"fmt"
	"net/mail"
	"net/url"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/util/validation"
)

// References is how the Pipelines refer to their Tasks, and the examples,
// samples, Triggers template and start to the Pipeline: one of the Ref*
// modes, with that mode's settings.
type References struct {
	Mode    string      `json:"mode"`
	Bundles BundlesRefs `json:"bundles"`
	Git     GitRefs     `json:"git"`
	Hub     HubRefs     `json:"hub"`
	Cluster ClusterRefs `json:"cluster"`
}

// Reference modes (references.mode).
const (
	// RefNamespace: by name, installed in the namespace the run is in.
	RefNamespace = "namespace"
	// RefBundles: Tekton bundles by digest (bundles resolver). The digests
	// are computed at generate time: bundles are reproducible.
	RefBundles = "bundles"
	// RefGit: the committed YAML in a git repository (git resolver).
	RefGit = "git"
	// RefHub: the catalog on Artifact Hub (hub resolver, type artifact).
	RefHub = "hub"
	// RefCluster: installed once in a namespace of its own (cluster resolver).
	RefCluster = "cluster"
)

// RefModes lists the reference modes, as messages name them.
var RefModes = []string{RefNamespace, RefBundles, RefGit, RefHub, RefCluster}

// BundlesRefs: each object is <repository>/<name>@<digest>, as `bundle push
// --repository <repository>` pushes it.
type BundlesRefs struct {
	Repository string `json:"repository"`
}

// GitRefs: each object is <pathPrefix>tasks|pipelines/<name>/<version>/<name>.yaml
// at revision of the repository at url.
type GitRefs struct {
	URL        string `json:"url"`
	Revision   string `json:"revision"`
	PathPrefix string `json:"pathPrefix"`
}

// HubRefs are the Artifact Hub repository names the tasks/ and pipelines/
// folders were added under; the version is catalog.version.
type HubRefs struct {
	TaskCatalog     string `json:"taskCatalog"`
	PipelineCatalog string `json:"pipelineCatalog"`
}

// ClusterRefs names the namespace the catalog is installed in once.
type ClusterRefs struct {
	Namespace string `json:"namespace"`
}

// ArtifactHub is the metadata Artifact Hub reads from the objects'
// artifacthub.io/* annotations and from tasks/ and pipelines/
// artifacthub-repo.yml.
type ArtifactHub struct {
	// Category, one of Artifact Hub's: integration-delivery for a CI catalog.
	Category string `json:"category"`
	// License, an SPDX identifier; empty: none claimed.
	License  string `json:"license"`
	Provider string `json:"provider"`
	// SourceURL is the repository the catalog is published from, linked as "source".
	SourceURL string `json:"sourceURL"`
	// Owners go into artifacthub-repo.yml (ownership claim) and the
	// maintainers annotation.
	Owners []Owner `json:"owners"`
	// The repository IDs Artifact Hub gives the tasks/ and pipelines/
	// repositories once added (verified publisher); empty until then.
	TaskRepositoryID     string `json:"taskRepositoryID"`
	PipelineRepositoryID string `json:"pipelineRepositoryID"`
}

// Owner is a person Artifact Hub lists; both fields required.
type Owner struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// artifactHubCategories are Artifact Hub's package categories.
var artifactHubCategories = []string{"ai-machine-learning", "database", "integration-delivery", "monitoring-logging", "networking", "security", "storage", "streaming-messaging", "skip-prediction"}

func (r References) validate() []FieldError {
	var errs []FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	switch r.Mode {
	case RefNamespace:
	case RefBundles:
		if r.Bundles.Repository == "" {
			add("references.bundles.repository", "missing; give the registry and path `bundle push --repository` pushes to, e.g. registry.example.com/tekton-multiarch")
		} else if _, err := name.NewRepository(strings.TrimSuffix(r.Bundles.Repository, "/") + "/git-sync"); err != nil {
			add("references.bundles.repository", "%q is not a registry path: %v", r.Bundles.Repository, err)
		}
	case RefGit:
		if u, err := url.Parse(r.Git.URL); err != nil || u.Scheme == "" || u.Host == "" {
			add("references.git.url", "%q is not a repository URL; give the clone URL of the repository holding tasks/ and pipelines/, e.g. https://github.com/me/catalog.git", r.Git.URL)
		}
		if strings.TrimSpace(r.Git.Revision) == "" {
			add("references.git.revision", "missing; give a branch, a tag or a commit SHA (a tag or SHA pins what runs)")
		}
		if r.Git.PathPrefix != "" && (strings.HasPrefix(r.Git.PathPrefix, "/") || !strings.HasSuffix(r.Git.PathPrefix, "/") || strings.Contains(r.Git.PathPrefix, "..")) {
			add("references.git.pathPrefix", "%q: a relative directory ending in /, e.g. catalog/, or empty", r.Git.PathPrefix)
		}
	case RefHub:
		for path, v := range map[string]string{"references.hub.taskCatalog": r.Hub.TaskCatalog, "references.hub.pipelineCatalog": r.Hub.PipelineCatalog} {
			if v == "" {
				add(path, "missing; give the name the folder was added to Artifact Hub under")
			}
			for _, m := range validation.IsDNS1123Subdomain(v) {
				add(path, "%q: %s", v, m)
			}
		}
	case RefCluster:
		for _, m := range validation.IsDNS1123Label(r.Cluster.Namespace) {
			add("references.cluster.namespace", "%q: %s", r.Cluster.Namespace, m)
		}
	default:
		add("references.mode", "%q is not a reference mode; use one of %s", r.Mode, strings.Join(RefModes, ", "))
	}
	return errs
}

func (a ArtifactHub) validate() []FieldError {
	var errs []FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if !slices.Contains(artifactHubCategories, a.Category) {
		add("artifactHub.category", "%q is not an Artifact Hub category; use one of %s", a.Category, strings.Join(artifactHubCategories, ", "))
	}
	if a.SourceURL != "" {
		if u, err := url.Parse(a.SourceURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add("artifactHub.sourceURL", "%q is not an http(s) URL", a.SourceURL)
		}
	}
	for i, o := range a.Owners {
		p := fmt.Sprintf("artifactHub.owners[%d]", i)
		if strings.TrimSpace(o.Name) == "" {
			add(p+".name", "missing")
		}
		if _, err := mail.ParseAddress(o.Email); err != nil || strings.Contains(o.Email, "<") {
			add(p+".email", "%q is not an e-mail address (Artifact Hub requires one)", o.Email)
		}
	}
	return errs
}
