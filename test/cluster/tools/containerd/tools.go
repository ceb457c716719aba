//go:build tools

// Package tools pins the containerd of the real node: v2, the first line whose CRI
// runs user-namespaced pods (hostUsers: false). Debian 12's containerd 1.6 cannot.
// build-tools.sh builds its daemon, its runc shim and ctr.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
