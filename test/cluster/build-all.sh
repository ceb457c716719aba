#!/usr/bin/env bash
# Builds what the cluster test needs, the binaries (build-tools.sh), the real
# node's images (build-images.sh) and the emulated arm64 node (build-arm64-node.sh),
# side by side: they are independent (their own Go modules and caches), and on 2
# cores one `go build` leaves a core idle while it links, runs cgo or waits for the
# module proxy, and mmdebstrap and apt mostly wait on the network. Cached
# directories are reused as each script says.
#
# The background scripts' logs go to files and are printed once each ends, so that
# the logs do not interleave; build-tools.sh logs as it goes. Exits non-zero,
# naming the script, when any fails; stops the others then.
#
# Environment: as the scripts (TEKTON_MULTIARCH_CACHE,
# TEKTON_MULTIARCH_SKIP_COLD_CLUSTER, TEKTON_MULTIARCH_APT_SOURCES).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
background=(build-images.sh build-arm64-node.sh)
declare -A pids=() logs=()
cleanup() {
	local s
	for s in "${!pids[@]}"; do
		if kill -0 "${pids[$s]}" 2>/dev/null; then
			# Each script's own children (go, mmdebstrap) are in its process
			# group: setsid below made it a group leader.
			kill -TERM -- "-${pids[$s]}" 2>/dev/null || true
			wait "${pids[$s]}" 2>/dev/null || true
		fi
	done
	for s in "${!logs[@]}"; do rm -f "${logs[$s]}"; done
}
trap cleanup EXIT

for s in "${background[@]}"; do
	logs[$s]=$(mktemp)
	setsid "$here/$s" >/dev/null 2>"${logs[$s]}" &
	pids[$s]=$!
done

if ! "$here/build-tools.sh" >/dev/null; then
	echo "build-all.sh: build-tools.sh failed (its log is above); stopping ${background[*]}" >&2
	exit 1
fi
for s in "${background[@]}"; do
	rc=0
	wait "${pids[$s]}" || rc=$?
	unset "pids[$s]"
	cat "${logs[$s]}" >&2
	if [ "$rc" -ne 0 ]; then
		echo "build-all.sh: $s failed (exit $rc; its log is above)" >&2
		exit "$rc"
	fi
done
