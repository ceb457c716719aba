# shellcheck shell=bash
# Sourced by build-tools.sh and build-images.sh: one way to time and log a
# build step, so both caches' logs read alike.

# step NAME CMD...: run CMD with its output on stderr, saying how long it took.
step() {
	local name=$1
	shift
	local t0=$SECONDS
	echo "building $name ..." >&2
	"$@" >&2
	echo "built $name in $((SECONDS - t0))s" >&2
}
