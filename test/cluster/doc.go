// Package cluster is the end-to-end test of the generated catalog on a real
// Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler) with the real Tekton Pipelines controller, and kwok standing
// in for the kubelet on fake amd64 and arm64 nodes. Everything runs on
// loopback inside a network namespace the test creates. See README.md.
package cluster
