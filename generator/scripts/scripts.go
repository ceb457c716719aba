// Package scripts holds the step scripts, one .sh file per step, embedded so
// that the generated Tasks carry them verbatim and shellcheck can lint the
// same files.
package scripts

import _ "embed"

// Clone runs git-sync once and writes the COMMIT (and URL) results.
//
//go:embed clone.sh
var Clone string

// Build builds one architecture with buildah, guards its architecture and pushes it.
//
//go:embed build.sh
var Build string

// SBOM makes the SPDX SBOM of the pushed image with syft and checks it
// describes that digest.
//
//go:embed sbom.sh
var SBOM string

// SBOMAttach attaches an SBOM to an image as cosign attach sbom does (tag
// sha256-<hex>.sbom, one text/spdx+json layer), with crane.
//
//go:embed sbom-attach.sh
var SBOMAttach string

// SBOMIndex makes the index's SPDX SBOM: the index, each platform's image
// and that image's own attached SBOM (externalDocumentRefs).
//
//go:embed sbom-index.sh
var SBOMIndex string

// Manifest assembles, pushes and verifies the multi-arch index.
//
//go:embed manifest.sh
var Manifest string

// LoadNodeProfiles installs the seccomp profile on a node and, when given
// one, installs and loads the AppArmor profile.
//
//go:embed load-node-profiles.sh
var LoadNodeProfiles string

// CancelSuperseded cancels the runs of a pull request that new commits, a
// close or a merge superseded.
//
//go:embed cancel-superseded.sh
var CancelSuperseded string

// Prune deletes the finished runs of the catalog's Pipelines beyond the
// last few of each outcome.
//
//go:embed prune.sh
var Prune string

// NodeLoss fails the pods of the catalog's runs that sit on a lost node, so
// that their TaskRuns end or are retried.
//
//go:embed node-loss.sh
var NodeLoss string
