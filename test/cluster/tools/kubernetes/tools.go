//go:build tools

// Package tools pins the Kubernetes control-plane commands the cluster test runs;
// build-tools.sh builds them from this module so their k8s.io versions stay apart
// from the main module's.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
