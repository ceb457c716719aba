#!/usr/bin/env bash
# Builds the cluster test's binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, the kubelet, containerd v2 with its runc shim and ctr,
# runc and the fuse device plugin of the real node,
# the Tekton controller, kwok, the Tekton Triggers controller,
# EventListener sink and core interceptors) from the wrapper modules in
# tools/, into a cache directory outside the repo keyed by those modules' go.mod,
# go.sum and sources. A cold build takes about 10 minutes on 2 cores (measured
# 551 s, plus about 30 s for Triggers, and 150 s for containerd and runc with
# their modules), so an existing directory for the current key
# is reused as is.
#
#   build-tools.sh              build if needed; print the binary directory on stdout
#   build-tools.sh --dir        print the directory for the current key; build nothing
#   build-tools.sh --chains-dir print the Chains directory for its key; build nothing
#
# Tekton Chains' controller (tools/chains/controller, a main of our own around
# chains v0.26.2) and the cosign CLI come from tools/chains, whose dependency
# graph (about 480 modules: KMS providers, storage backends) is kept apart:
# they are built after the others into $cache/chains-bin/<key>, keyed by
# tools/chains alone, so a change there never rebuilds the cluster binaries
# and the cluster key above never sees it. Measured cold on 2 cores: see
# test/cluster/README.md.
#
# TEKTON_MULTIARCH_CACHE   cache root (default ~/.cache/tekton-multiarch)
# TEKTON_MULTIARCH_SKIP_COLD_CLUSTER=1
#                          when the binaries are not built yet, build nothing and
#                          exit 0: the cluster test then skips, loudly. Without it a
#                          cold cache is built, however long it takes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tools=$here/tools
cache=${TEKTON_MULTIARCH_CACHE:-$HOME/.cache/tekton-multiarch}

k8s_version=v1.35.4
# tkn, the Tekton CLI users read build logs with (tkn pipelinerun logs).
tkn_version=v0.46.0
# Bump when the build commands below change in a way the key would not notice.
recipe="recipe=4 k8s=$k8s_version tkn=$tkn_version"

key=$(
	{
		echo "$recipe"
		go env GOOS GOARCH
		# runc links the machine's libseccomp.
		dpkg-query -W -f '${Version}\n' libseccomp-dev 2>/dev/null || true
		for m in containerd etcd kubernetes kwok runc tekton triggers; do
			cat "$tools/$m/go.mod" "$tools/$m/go.sum" "$tools/$m"/*.go
		done
		for f in "$tools"/*/*/*.go; do
			case $f in "$tools"/chains/*) continue ;; esac
			cat "$f"
		done
	} | sha256sum | cut -c1-16
)
dir=$cache/cluster-bin/$key
chains_key=$(
	{
		echo "chains-recipe=1"
		go env GOOS GOARCH
		cat "$tools/chains/go.mod" "$tools/chains/go.sum" "$tools/chains"/*.go "$tools/chains"/*/*.go
	} | sha256sum | cut -c1-16
)
chains_dir=$cache/chains-bin/$chains_key
chains_binaries=(chains-controller cosign)
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet fuse-device-plugin
	controller resolvers kwok
	triggers-controller triggers-eventlistenersink triggers-interceptors tkn
	containerd containerd-shim-runc-v2 ctr runc)

if [ "${1:-}" = "--dir" ]; then
	echo "$dir"
	exit 0
fi
if [ "${1:-}" = "--chains-dir" ]; then
	echo "$chains_dir"
	exit 0
fi

# shellcheck source=steps.sh source-path=SCRIPTDIR
. "$here/steps.sh"

complete() {
	for b in "${binaries[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

chains_complete() {
	for b in "${chains_binaries[@]}"; do [ -x "$chains_dir/$b" ] || return 1; done
}

# build_chains builds Chains' controller and cosign into chains_dir the way
# the cluster binaries are built below: a scratch directory renamed at the end.
build_chains() {
	chains_complete && return 0
	mkdir -p "$cache/chains-bin"
	local ctmp
	ctmp=$(mktemp -d "$cache/chains-bin/.build-$chains_key.XXXXXX")
	local t0=$SECONDS
	if step chains-controller bash -c "cd '$tools/chains' && go build -ldflags='-s -w' -o '$ctmp/chains-controller' ./controller" &&
		step cosign bash -c "cd '$tools/chains' && go build -ldflags='-s -w' -o '$ctmp/cosign' github.com/sigstore/cosign/v2/cmd/cosign"; then
		rm -rf "$chains_dir"
		chmod 755 "$ctmp"
		mv "$ctmp" "$chains_dir"
		echo "built Chains and cosign in $((SECONDS - t0))s into $chains_dir" >&2
	else
		rm -rf "$ctmp"
		return 1
	fi
}

if complete && { chains_complete || [ "${TEKTON_MULTIARCH_SKIP_COLD_CLUSTER:-}" = 1 ]; }; then
	echo "cluster binaries are up to date in $dir" >&2
	chains_complete && echo "Chains and cosign are up to date in $chains_dir" >&2
	echo "$dir"
	exit 0
fi
if complete; then
	echo "cluster binaries are up to date in $dir" >&2
	build_chains
	echo "$dir"
	exit 0
fi

if [ "${TEKTON_MULTIARCH_SKIP_COLD_CLUSTER:-}" = 1 ]; then
	{
		echo "##################################################################"
		echo "## TEKTON_MULTIARCH_SKIP_COLD_CLUSTER=1 and the cluster binaries"
		echo "## are not built ($dir):"
		echo "## NOT building them; the cluster end-to-end test will SKIP."
		echo "## Unset the variable to build them (about 10 min on 2 cores)."
		echo "##################################################################"
	} >&2
	echo "$dir"
	exit 0
fi

# Build into a scratch directory and rename it at the end, so an interrupted build
# never leaves a directory that looks complete. The Go build cache keeps the work.
mkdir -p "$cache/cluster-bin"
tmp=$(mktemp -d "$cache/cluster-bin/.build-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

total0=$SECONDS
pkg=k8s.io/component-base/version
minor=${k8s_version#v1.}
minor=${minor%%.*}
# Tekton refuses to start against a server whose version reads v0.0.0, which is what
# an unstamped build reports.
k8s_ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"

step etcd bash -c "cd '$tools/etcd' && go build -ldflags='-s -w' -o '$tmp/etcd' ."
step kubernetes bash -c "cd '$tools/kubernetes' && go build -ldflags='$k8s_ldflags' -o '$tmp/' \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet \
	./fuse-device-plugin"
# Tekton's and Triggers' binaries are built as build-images.sh builds Tekton's
# entrypoint, nop, workingdirinit and sidecarlogresults (static, -trimpath, from
# the same tools/tekton graph), and as ko builds Tekton's release images: the
# Go build cache then compiles the packages they share (knative, client-go,
# Tekton's own) once for both scripts. Measured on a cold cache: see
# test/cluster/README.md.
gostatic="CGO_ENABLED=0 go build -trimpath -ldflags='-s -w'"
step tekton bash -c "cd '$tools/tekton' && $gostatic -o '$tmp/controller' github.com/tektoncd/pipeline/cmd/controller"
step resolvers bash -c "cd '$tools/tekton' && $gostatic -o '$tmp/resolvers' github.com/tektoncd/pipeline/cmd/resolvers"
step triggers bash -c "cd '$tools/triggers' && for c in controller eventlistenersink interceptors; do \
	$gostatic -o '$tmp/triggers-'\$c github.com/tektoncd/triggers/cmd/\$c || exit 1; done"
# go install refuses tektoncd/cli (its go.mod has replace directives): build it
# in a writable copy of its module directory instead.
step tkn bash -c "src=\$(go mod download -json github.com/tektoncd/cli@$tkn_version | jq -r .Dir) && \
	cp -r \"\$src\" '$tmp/cli-src' && chmod -R u+w '$tmp/cli-src' && cd '$tmp/cli-src' && \
	go build -ldflags='-s -w -X github.com/tektoncd/cli/pkg/cmd/version.clientVersion=$tkn_version' -o '$tmp/tkn' ./cmd/tkn && \
	rm -rf '$tmp/cli-src'"
# The real node's container runtime: containerd v2 and runc >= 1.2 run
# user-namespaced pods (hostUsers: false), Debian 12's containerd 1.6 and runc
# 1.1 cannot. Flags as their Makefiles set them: containerd and its shim
# without cgo (the shim static, without gRPC), runc with cgo and libseccomp
# (Debian's libseccomp-dev) as a PIE.
containerd_version=$(awk '$1 == "require" && $2 == "github.com/containerd/containerd/v2" { print $3 }' "$tools/containerd/go.mod")
cpkg=github.com/containerd/containerd/v2
step containerd bash -c "cd '$tools/containerd' && \
	CGO_ENABLED=0 go build -trimpath -tags urfave_cli_no_docs -ldflags='-s -w -X $cpkg/version.Version=$containerd_version' \
		-o '$tmp/' $cpkg/cmd/containerd $cpkg/cmd/ctr && \
	CGO_ENABLED=0 go build -trimpath -tags 'urfave_cli_no_docs no_grpc' -ldflags='-s -w -X $cpkg/version.Version=$containerd_version' \
		-o '$tmp/' $cpkg/cmd/containerd-shim-runc-v2"
step runc bash -c "cd '$tools/runc' && CGO_ENABLED=1 go build -trimpath -buildmode=pie -tags 'seccomp urfave_cli_no_docs' \
	-ldflags='-s -w' -o '$tmp/runc' github.com/opencontainers/runc"
step kwok bash -c "cd '$tools/kwok' && go build -ldflags='-s -w' -o '$tmp/kwok' sigs.k8s.io/kwok/cmd/kwok"

rm -rf "$dir"
chmod 755 "$tmp"
mv "$tmp" "$dir"
trap - EXIT
echo "built all cluster binaries in $((SECONDS - total0))s into $dir" >&2
build_chains
echo "$dir"
