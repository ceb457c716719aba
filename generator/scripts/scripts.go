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

// Manifest assembles, pushes and verifies the multi-arch index.
//
//go:embed manifest.sh
var Manifest string

// LoadNodeProfiles installs the seccomp profile on a node and, when given
// one, installs and loads the AppArmor profile.
//
//go:embed load-node-profiles.sh
var LoadNodeProfiles string
