#!/bin/sh
# The raw build of BenchmarkPhases (rawbuild_test.go): buildah bud and push
# of one Dockerfile in a bare pod, no Tekton, from the checkout git-sync (the
# pod's init container) left. It is the reference the catalog's build step is
# measured against, so it does only what a user typing the two commands
# would: no storage probe, no labels, no --timestamp, no arch check. It
# prints the lines the phase breakdown marks, as build.sh does: "building
# ...", buildah's own output, "pushing ...", "pushed ...".
#
#   IMAGE       the tag to build and push, over plain HTTP
#   PLATFORM    linux/ARCH
#   DOCKERFILE  relative to the checkout
#   BUILD_ARG   one KEY=VALUE for buildah bud --build-arg, or empty
#   CHECKOUT    git-sync's link to the checkout (--root/--link)
#   ULIMIT      "true": give buildah bud the current nofile and nproc limits.
#               As root with CAP_SYS_ADMIN (a privileged container) buildah
#               raises them to 1048576 for RUN steps, which fails where root
#               lacks CAP_SYS_RESOURCE, as on the test's machines.
set -eu

target=$(readlink "$CHECKOUT")
case "$target" in
/*) ;;
*) target=$(dirname "$CHECKOUT")/$target ;;
esac
cd "$target"

set -- --root /var/lib/containers/storage --storage-driver overlay --storage-opt overlay.mount_program=
limits=
limit() { sed -n "s/^$1  *\([0-9][0-9]*\)  *\([0-9][0-9]*\).*/\1:\2/p" /proc/self/limits; }
if [ "${ULIMIT:-false}" = true ]; then
	limits="--ulimit=nofile=$(limit 'Max open files') --ulimit=nproc=$(limit 'Max processes')"
fi
digestfile=$(mktemp)

echo "building $IMAGE for $PLATFORM (uid $(id -u), CapEff $(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status))"
# shellcheck disable=SC2086 # $limits is two words or none
buildah "$@" bud --platform "$PLATFORM" --tls-verify=false --file "$DOCKERFILE" --tag "$IMAGE" \
	${BUILD_ARG:+--build-arg "$BUILD_ARG"} $limits .
echo "pushing $IMAGE"
buildah "$@" push --tls-verify=false --digestfile "$digestfile" "$IMAGE" "docker://$IMAGE"
echo "pushed $IMAGE@$(cat "$digestfile")"
