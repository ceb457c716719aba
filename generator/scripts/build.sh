#!/bin/sh
# Build one architecture natively with buildah, check that the image is of
# that architecture, and push it by digest. Every input comes from the
# environment: Tekton params are never interpolated into this script.
#
#   IMAGE, TAG_SUFFIX     push to ${IMAGE}${TAG_SUFFIX}; IMAGE must carry a tag
#                         when TAG_SUFFIX is set
#   PLATFORM_TAG_SUFFIX   "true": TAG_SUFFIX is -ARCH[-VARIANT] of PLATFORM
#                         (-arm64, -arm-v7), for a matrix that can pass only PLATFORM
#   PLATFORM              linux/ARCH[/VARIANT], e.g. linux/arm64, linux/arm/v7
#   ALLOW_EMULATION       "true" to build for another architecture than the node's
#   DOCKERFILE, CONTEXT   paths relative to the repository root
#   TLS_VERIFY            "true" or "false"
#   STORAGE_DRIVER        overlay (fuse-overlayfs, needs /dev/fuse) or vfs
#   PUSH_RETRIES          how many times buildah retries the push
#   CACHE                 "true": a layer cache in the registry (buildah bud
#                         --layers --cache-from/--cache-to); its failures only warn
#   CACHE_REPO            the cache's repository, TAG_SUFFIX appended; empty:
#                         IMAGE's repository + "-cache"
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
if [ "${PLATFORM_TAG_SUFFIX:-false}" = true ]; then
	# A malformed PLATFORM is refused below, by its own check.
	TAG_SUFFIX=-$(printf '%s' "${PLATFORM#linux/}" | tr / -)
fi
TLS_VERIFY=${TLS_VERIFY:-true}
ALLOW_EMULATION=${ALLOW_EMULATION:-false}
STORAGE_DRIVER=${STORAGE_DRIVER:-overlay}
PUSH_RETRIES=${PUSH_RETRIES:-3}
CACHE=${CACHE:-false}
CACHE_REPO=${CACHE_REPO:-}
DOCKERFILE=${DOCKERFILE:-./Dockerfile}
CONTEXT=${CONTEXT:-.}
FUSE_OVERLAYFS=${FUSE_OVERLAYFS:-/usr/bin/fuse-overlayfs}
: "${SOURCE_ROOT:?SOURCE_ROOT must name the clone root}"
SOURCE_LINK=${SOURCE_LINK:-checkout}
: "${RESULT_IMAGE_URL:?}" "${RESULT_IMAGE_DIGEST:?}" "${RESULT_IMAGE_REF:?}"

is_bool TLS_VERIFY "$TLS_VERIFY"
is_bool ALLOW_EMULATION "$ALLOW_EMULATION"
is_bool CACHE "$CACHE"
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

# The layer cache's repository: one per architecture (TAG_SUFFIX appended, as
# to the tag), never the image's own, whose tags it would bury under cache keys.
cache_repo=
if [ "$CACHE" = true ]; then
	if [ -n "$CACHE_REPO" ]; then
		case "$CACHE_REPO" in
		-* | *[[:space:]]* | *@*) die "CACHE_REPO '$CACHE_REPO' is not a repository: give one without tag or digest, e.g. registry.example.com/me/app-cache" ;;
		esac
		case "${CACHE_REPO##*/}" in
		*:*) die "CACHE_REPO '$CACHE_REPO' has a tag: give the repository alone (buildah tags each cached layer with its cache key)" ;;
		esac
		cache_repo=$CACHE_REPO$TAG_SUFFIX
	else
		image_repo=$IMAGE
		case "${IMAGE##*/}" in
		*:*) image_repo=${IMAGE%:*} ;;
		esac
		cache_repo=$image_repo-cache$TAG_SUFFIX
	fi
	[ "$cache_repo" != "$repo" ] || die "the layer cache would go to $repo, the image's own repository: give CACHE_REPO another one, e.g. $repo-cache"
elif [ -n "$CACHE_REPO" ]; then
	echo "note: CACHE is false: CACHE_REPO '$CACHE_REPO' is not used"
fi

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
# bah is buildah on this step's storage; under timeout(1) while bah_timeout
# holds a number of seconds.
bah_timeout=
bah() {
	if [ "$STORAGE_DRIVER" = overlay ]; then
		set -- --storage-driver overlay --storage-opt "overlay.mount_program=$FUSE_OVERLAYFS" "$@"
	else
		set -- --storage-driver vfs "$@"
	fi
	${bah_timeout:+timeout "$bah_timeout"} buildah ${CONTAINERS_ROOT:+--root "$CONTAINERS_ROOT"} ${CONTAINERS_RUNROOT:+--runroot "$CONTAINERS_RUNROOT"} "$@"
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

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The layer cache must never fail the build. buildah (1.28 as 1.40) skips a
# cache it cannot pull from, after retries (1.28: 3 x 2 s, or hanging as long
# as the registry does), but fails the build when it cannot push a layer to
# it. So first check, within a bound, that this pod can push there at all:
# an empty image to <cache repo>:cache-probe. Unreachable, refused or too
# slow: warn and build without the cache.
cache_probe() {
	ctr=$(bah from --quiet scratch) || return 1
	bah commit --quiet --rm "$ctr" localhost/tekton-multiarch-cache-probe || return 1
	if command -v timeout >/dev/null 2>&1; then
		bah_timeout=$cache_probe_timeout
	fi
	rc=0
	bah push --retry 1 --retry-delay 500ms --tls-verify="$TLS_VERIFY" localhost/tekton-multiarch-cache-probe "docker://$cache_repo:cache-probe" || rc=$?
	bah_timeout=
	bah rmi localhost/tekton-multiarch-cache-probe || true
	[ "$rc" != 124 ] || echo "Error: no answer from the registry within $cache_probe_timeout s"
	return "$rc"
}
cache_probe_timeout=30
if [ -n "$cache_repo" ]; then
	if cache_probe >"$tmp/probe.log" 2>&1; then
		echo "layer cache: $cache_repo (buildah bud --layers --cache-from/--cache-to)"
	else
		reason=$(grep -i 'error' "$tmp/probe.log" | tail -n 1) || reason=$(tail -n 1 "$tmp/probe.log")
		echo "warning: cannot push to the layer cache $cache_repo, building without it: $reason"
		cache_repo=
	fi
fi

build() {
	bah bud --platform "$PLATFORM" --tls-verify="$TLS_VERIFY" --file "$DOCKERFILE" --tag "$push_ref" "$@"
}
echo "building $push_ref for $PLATFORM on a linux/$node node (storage: $STORAGE_DRIVER)"
if [ -z "$cache_repo" ]; then
	build "$@" "$CONTEXT" || die "buildah bud failed for $PLATFORM (its output is above)"
else
	# The registry can still fail a cache push mid-build (buildah: "failed
	# pushing cache to ..."). Then build again without the cache: --layers
	# reuses every layer the first attempt committed to this pod's storage.
	echo 0 >"$tmp/bud.status"
	{ build --layers --cache-from "$cache_repo" --cache-to "$cache_repo" "$@" "$CONTEXT" 2>&1 || echo "$?" >"$tmp/bud.status"; } | tee "$tmp/bud.log"
	if [ "$(cat "$tmp/bud.status")" != 0 ]; then
		grep -Eiq '^error.*cache' "$tmp/bud.log" || die "buildah bud failed for $PLATFORM (its output is above)"
		echo "warning: the layer cache $cache_repo failed during the build (above): building again without it, from the layers this pod has"
		build --layers "$@" "$CONTEXT" || die "buildah bud failed for $PLATFORM (its output is above)"
	fi
fi

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

digestfile=$tmp/digest
echo "pushing $push_ref (up to $PUSH_RETRIES retries)"
bah push --retry "$PUSH_RETRIES" --digestfile "$digestfile" --tls-verify="$TLS_VERIFY" "$push_ref" "docker://$push_ref" ||
	die "pushing $push_ref failed after $PUSH_RETRIES retries: check that the registry is reachable from this node, TLS_VERIFY, and the credentials in the dockerconfig workspace"
digest=$(cat "$digestfile")
printf '%s' "$digest" | grep -Eq '^sha256:[0-9a-f]{64}$' || die "buildah wrote no usable digest ('$digest')"

printf '%s' "$push_ref" >"$RESULT_IMAGE_URL"
printf '%s' "$digest" >"$RESULT_IMAGE_DIGEST"
printf '%s' "$repo@$digest" >"$RESULT_IMAGE_REF"
echo "pushed $repo@$digest ($built)"
