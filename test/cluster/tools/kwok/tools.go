//go:build tools

// Package tools pins kwok, which stands in for the kubelet on the cluster test's fake nodes.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
