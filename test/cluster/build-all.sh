#!/usr/bin/env bash
# Builds what the cluster test needs, the binaries (build-tools.sh) and the real
# node's images (build-images.sh), side by side: the two are independent (their
# own Go modules and caches), and on 2 cores one `go build` leaves a core idle
# while it links, runs cgo or waits for the module proxy, and mmdebstrap mostly
# waits on apt. Cached directories are reused as each script says.
#
# build-images.sh's log goes to a file and is printed once it ends, so that the
# two logs do not interleave; build-tools.sh logs as it goes. Exits non-zero,
# naming the script, when either fails; stops the other then.
#
# Environment: as build-tools.sh and build-images.sh (TEKTON_MULTIARCH_CACHE,
# TEKTON_MULTIARCH_SKIP_COLD_CLUSTER, TEKTON_MULTIARCH_APT_SOURCES).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
images_log=$(mktemp)
images_pid=
cleanup() {
	if [ -n "$images_pid" ] && kill -0 "$images_pid" 2>/dev/null; then
		# The image build's own children (go, mmdebstrap) are in its process
		# group: setsid below made it a group leader.
		kill -TERM -- "-$images_pid" 2>/dev/null || true
		wait "$images_pid" 2>/dev/null || true
	fi
	rm -f "$images_log"
}
trap cleanup EXIT

setsid "$here/build-images.sh" >/dev/null 2>"$images_log" &
images_pid=$!

if ! "$here/build-tools.sh" >/dev/null; then
	echo "build-all.sh: build-tools.sh failed (its log is above); stopping build-images.sh" >&2
	exit 1
fi
rc=0
wait "$images_pid" || rc=$?
images_pid=
cat "$images_log" >&2
if [ "$rc" -ne 0 ]; then
	echo "build-all.sh: build-images.sh failed (exit $rc; its log is above)" >&2
	exit "$rc"
fi
