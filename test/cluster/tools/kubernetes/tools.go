//go:build tools

// Package tools pins the Kubernetes commands the cluster test runs (the control
// plane, and the kubelet of its real node); build-tools.sh builds them, and the
// real node's fuse device plugin (fuse-device-plugin/), from this module so
// their k8s.io versions stay apart from the main module's.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
