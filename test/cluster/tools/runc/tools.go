//go:build tools

// Package tools pins the runc of the real node: >= 1.2, the first with the
// idmapped mounts user-namespaced pods need (Debian 12's 1.1.5 has none).
// build-tools.sh builds it with cgo and libseccomp.
package tools

import _ "github.com/opencontainers/runc"
