# shellcheck shell=bash
# Sourced by build-tools.sh and build-images.sh: one way to time and log a
# build step, so both caches' logs read alike.

# step NAME CMD...: run CMD with its output on stderr, saying how long it took:
# wall time, and the CPU time of CMD's processes (on a machine shared with
# other jobs, the CPU seconds are what the step itself costs). Said also when
# CMD fails (set -e then ends the script), so the line says "took", not "built".
step() {
	local name=$1
	shift
	local TIMEFORMAT="$name took %0Rs (CPU: %0Us user, %0Ss system)"
	echo "building $name ..." >&2
	time "$@" >&2
}
