#!/bin/sh
# Build one architecture natively with buildah, check that the image is of
# that architecture, and push it by digest. Every input comes from the
# environment: Tekton params are never interpolated into this script.
#
#   IMAGE, TAG_SUFFIX     push to ${IMAGE}${TAG_SUFFIX}; IMAGE must carry a tag
#                         when TAG_SUFFIX is set
#   PLATFORM              linux/ARCH[/VARIANT], e.g. linux/arm64, linux/arm/v7
#   ALLOW_EMULATION       "true" to build for another architecture than the node's
#   DOCKERFILE, CONTEXT   paths relative to the repository root
#   TLS_VERIFY            "true" or "false"
#   STORAGE_DRIVER        overlay (fuse-overlayfs, needs /dev/fuse) or vfs
#   PUSH_RETRIES          how many times buildah retries the push
#   SOURCE_ROOT, SOURCE_LINK   where the clone step left the checkout
#   DOCKERCONFIG_BOUND, DOCKERCONFIG_PATH   registry credentials workspace
#   RESULT_IMAGE_URL, RESULT_IMAGE_DIGEST, RESULT_IMAGE_REF   result files
#   CONTAINERS_ROOT, CONTAINERS_RUNROOT   optional buildah storage locations
#   FUSE_OVERLAYFS        mount program (default /usr/bin/fuse-overlayfs)
#   arguments             BUILD_ARGS, each KEY=VALUE
set -eu

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

is_bool() {
	case "$2" in
	true | false) ;;
	*) die "$1 must be true or false, not '$2'" ;;
	esac
}

# relpath NAME VALUE: refuse paths that leave the repository.
relpath() {
	case "/$2/" in
	//* | */../*) die "$1 '$2' must be a path inside the repository, relative to its root" ;;
	esac
}

# node_platform prints this node's architecture in Go's names, as
# kubernetes.io/arch and OCI platforms spell it.
node_platform() {
	m=$(uname -m)
	case "$m" in
	x86_64 | amd64) echo amd64 ;;
	aarch64 | arm64) echo arm64 ;;
	armv8l | armv7*) echo arm/v7 ;;
	armv6*) echo arm/v6 ;;
	i?86) echo 386 ;;
	ppc64le | s390x | riscv64) echo "$m" ;;
	*) echo "$m" ;;
	esac
}

TAG_SUFFIX=${TAG_SUFFIX:-}
TLS_VERIFY=${TLS_VERIFY:-true}
ALLOW_EMULATION=${ALLOW_EMULATION:-false}
STORAGE_DRIVER=${STORAGE_DRIVER:-overlay}
PUSH_RETRIES=${PUSH_RETRIES:-3}
DOCKERFILE=${DOCKERFILE:-./Dockerfile}
CONTEXT=${CONTEXT:-.}
FUSE_OVERLAYFS=${FUSE_OVERLAYFS:-/usr/bin/fuse-overlayfs}
: "${SOURCE_ROOT:?SOURCE_ROOT must name the clone root}"
SOURCE_LINK=${SOURCE_LINK:-checkout}
: "${RESULT_IMAGE_URL:?}" "${RESULT_IMAGE_DIGEST:?}" "${RESULT_IMAGE_REF:?}"

is_bool TLS_VERIFY "$TLS_VERIFY"
is_bool ALLOW_EMULATION "$ALLOW_EMULATION"
case "$PUSH_RETRIES" in
'' | *[!0-9]*) die "PUSH_RETRIES must be a whole number, not '$PUSH_RETRIES'" ;;
esac
relpath DOCKERFILE "$DOCKERFILE"
relpath CONTEXT "$CONTEXT"

# The image reference: a tag to push to, never a digest or an option.
[ -n "${IMAGE:-}" ] || die "IMAGE is empty: set the IMAGE param, e.g. registry.example.com/me/app:v1"
case "$IMAGE" in
-* | *[[:space:]]*) die "IMAGE '$IMAGE' is not an image reference" ;;
*@*) die "IMAGE '$IMAGE' has a digest: give the tag to push to" ;;
esac
case "${IMAGE##*/}" in
*:*) ;;
*) [ -z "$TAG_SUFFIX" ] || die "IMAGE '$IMAGE' has no tag: give one (registry/repo:tag); each architecture is pushed as <tag>$TAG_SUFFIX" ;;
esac
case "$TAG_SUFFIX" in
*[!A-Za-z0-9_.-]*) die "TAG_SUFFIX '$TAG_SUFFIX' may only hold letters, digits, '_', '.', '-'" ;;
esac
push_ref=$IMAGE$TAG_SUFFIX
repo=$push_ref
case "${push_ref##*/}" in
*:*) repo=${push_ref%:*} ;;
esac

# The target platform, and the arch guard: building for another architecture
# than the node's would need QEMU emulation (slow, or "exec format error"
# when it is not installed), which this catalog exists to avoid.
case "$PLATFORM" in
linux/[a-z0-9]* | linux/[a-z0-9]*/v[0-9]*) ;;
*) die "PLATFORM '$PLATFORM' is not linux/ARCH[/VARIANT], e.g. linux/arm64 or linux/arm/v7" ;;
esac
target=${PLATFORM#linux/}
target_arch=${target%%/*}
node=$(node_platform)
node_arch=${node%%/*}
native=false
if [ "$node_arch" = "$target_arch" ]; then
	case "$node|$target" in
	# Same arch and no variant asked, the same variant, arm64's only variant,
	# or ARMv6 code on an ARMv7 core: all run natively.
	"$node|$target_arch" | "$node|$node" | *"|arm64/v8" | "arm/v7|arm/v6") native=true ;;
	esac
fi
if [ "$native" != true ]; then
	if [ "$ALLOW_EMULATION" != true ]; then
		die "this node is linux/$node but PLATFORM is $PLATFORM: building here would need emulation. Pin the TaskRun to a $target_arch node (PipelineRun spec.taskRunSpecs[].podTemplate.nodeSelector kubernetes.io/arch: $target_arch, as examples/pipelinerun.yaml does), or set ALLOW_EMULATION=true to build under emulation anyway"
	fi
	echo "warning: building $PLATFORM on a linux/$node node under emulation (ALLOW_EMULATION=true)"
fi

# Storage. overlay on fuse-overlayfs needs /dev/fuse from the device plugin.
case "$STORAGE_DRIVER" in
overlay)
	[ -c /dev/fuse ] || die "STORAGE_DRIVER=overlay needs /dev/fuse and this container has none: request the fuse device plugin's resource (the Task's computeResources.limits) and check the plugin runs on this node, or use STORAGE_DRIVER=vfs"
	[ -x "$FUSE_OVERLAYFS" ] || die "STORAGE_DRIVER=overlay needs $FUSE_OVERLAYFS, which this image lacks: use a buildah image with fuse-overlayfs, or STORAGE_DRIVER=vfs"
	;;
vfs) ;;
*) die "STORAGE_DRIVER '$STORAGE_DRIVER' is not supported: use overlay or vfs" ;;
esac
bah() {
	if [ "$STORAGE_DRIVER" = overlay ]; then
		buildah ${CONTAINERS_ROOT:+--root "$CONTAINERS_ROOT"} ${CONTAINERS_RUNROOT:+--runroot "$CONTAINERS_RUNROOT"} \
			--storage-driver overlay --storage-opt "overlay.mount_program=$FUSE_OVERLAYFS" "$@"
	else
		buildah ${CONTAINERS_ROOT:+--root "$CONTAINERS_ROOT"} ${CONTAINERS_RUNROOT:+--runroot "$CONTAINERS_RUNROOT"} \
			--storage-driver vfs "$@"
	fi
}

# Registry credentials, from a kubernetes.io/dockerconfigjson Secret or a
# plain config.json.
if [ "${DOCKERCONFIG_BOUND:-false}" = true ]; then
	if [ -f "${DOCKERCONFIG_PATH:?}/config.json" ]; then
		REGISTRY_AUTH_FILE=$DOCKERCONFIG_PATH/config.json
	elif [ -f "$DOCKERCONFIG_PATH/.dockerconfigjson" ]; then
		REGISTRY_AUTH_FILE=$DOCKERCONFIG_PATH/.dockerconfigjson
	else
		die "workspace dockerconfig is bound but holds neither config.json nor .dockerconfigjson"
	fi
	export REGISTRY_AUTH_FILE
fi

# BUILD_ARGS arrive as arguments; turn each into --build-arg.
count=$#
for arg in "$@"; do
	case "$arg" in
	[A-Za-z_]*=*) ;;
	*) die "BUILD_ARGS entry '$arg' is not KEY=VALUE" ;;
	esac
	set -- "$@" --build-arg "$arg"
done
shift "$count"

# Enter the checkout through the link's target: with fs.protected_symlinks on,
# following a link in a sticky world-writable directory fails even for root.
link_target=$(readlink "$SOURCE_ROOT/$SOURCE_LINK") || die "no checkout at $SOURCE_ROOT/$SOURCE_LINK: the clone step did not run or failed"
case "$link_target" in
/*) src=$link_target ;;
*) src=$SOURCE_ROOT/$link_target ;;
esac
cd "$src" || die "cannot enter the checkout $src"
[ -d "$CONTEXT" ] || die "CONTEXT '$CONTEXT' is not a directory of the repository at commit ${link_target##*/}"
if [ ! -f "$DOCKERFILE" ]; then
	die "DOCKERFILE '$DOCKERFILE' does not exist in the repository at commit ${link_target##*/} (top level: $(find . -mindepth 1 -maxdepth 1 ! -name .git | sed 's|^\./||' | sort | tr '\n' ' '))"
fi

echo "building $push_ref for $PLATFORM on a linux/$node node (storage: $STORAGE_DRIVER)"
bah bud --platform "$PLATFORM" --tls-verify="$TLS_VERIFY" --file "$DOCKERFILE" --tag "$push_ref" "$@" "$CONTEXT" ||
	die "buildah bud failed for $PLATFORM (its output is above)"

# After the build: the image config must say the target architecture.
built=$(bah inspect --type image --format '{{.OCIv1.OS}}/{{.OCIv1.Architecture}}/{{.OCIv1.Variant}}' "$push_ref")
# arm64's only variant is v8: buildah may or may not write it down.
norm() {
	p=${1%/}
	[ "$p" != linux/arm64/v8 ] || p=linux/arm64
	echo "$p"
}
[ "$(norm "$built")" = "$(norm "$PLATFORM")" ] ||
	die "built image is $(norm "$built"), not $PLATFORM: refusing to push an image of the wrong architecture"
built=$(norm "$built")

digestfile=$(mktemp)
trap 'rm -f "$digestfile"' EXIT
echo "pushing $push_ref (up to $PUSH_RETRIES retries)"
bah push --retry "$PUSH_RETRIES" --digestfile "$digestfile" --tls-verify="$TLS_VERIFY" "$push_ref" "docker://$push_ref" ||
	die "pushing $push_ref failed after $PUSH_RETRIES retries: check that the registry is reachable from this node, TLS_VERIFY, and the credentials in the dockerconfig workspace"
digest=$(cat "$digestfile")
printf '%s' "$digest" | grep -Eq '^sha256:[0-9a-f]{64}$' || die "buildah wrote no usable digest ('$digest')"

printf '%s' "$push_ref" >"$RESULT_IMAGE_URL"
printf '%s' "$digest" >"$RESULT_IMAGE_DIGEST"
printf '%s' "$repo@$digest" >"$RESULT_IMAGE_REF"
echo "pushed $repo@$digest ($built)"
