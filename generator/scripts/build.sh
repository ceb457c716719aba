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
#   STORAGE               auto (the default), overlay, fuse-overlayfs or vfs;
#                         see "Storage" below
#   STORAGE_DRIVER        removed (renamed STORAGE): any value fails, naming
#                         the STORAGE to pass instead
#   PUSH_RETRIES          how many times buildah retries the push
#   SOURCE_DATE_EPOCH     the image's creation time and every file's time in
#                         its layers (buildah bud --timestamp), so the same
#                         commit builds the same digest: empty (the default)
#                         for the commit's committer time (COMMIT_TIME_FILE),
#                         a whole number of seconds since 1970-01-01 UTC, or
#                         "now" for the time of the build (a new digest each time)
#   COMMIT_TIME_FILE      the clone step's COMMIT_TIME result file
#   CACHE                 "true": a layer cache in the registry (buildah bud
#                         --layers --cache-from/--cache-to); its failures only warn
#   CACHE_REPO            the cache's repository, TAG_SUFFIX appended; empty:
#                         IMAGE's repository + "-cache"
#   TARGET                the Dockerfile stage to build (buildah bud --target);
#                         empty: the last stage
#   PUSH                  "true" (the default) or "false": build and check,
#                         push nothing (no image, no cache write); the results
#                         then carry the image's digest in the pod's storage
#   GIT_URL               the repository cloned: the image's
#                         org.opencontainers.image.source label, userinfo removed
#   SOURCE_ROOT, SOURCE_LINK   where the clone step left the checkout; the
#                         link's target is the commit (the revision label)
#   DOCKERCONFIG_BOUND, DOCKERCONFIG_PATH   registry credentials workspace
#   CA_BUNDLE_BOUND, CA_BUNDLE_PATH   optional workspace of PEM certificates
#                         (*.crt, *.pem) trusted for registries besides the
#                         system's
#   BUILD_SECRETS_BOUND, BUILD_SECRETS_PATH   optional workspace (a Secret):
#                         each key is a build secret, RUN --mount=type=secret,id=KEY
#   RESULT_IMAGE_URL, RESULT_IMAGE_DIGEST, RESULT_IMAGE_REF   result files
#   RESULT_BUILD_ARCH, RESULT_EMULATED   result files: uname -m of this step,
#                         and "true" when it builds another architecture
#                         (ALLOW_EMULATION), else "false"
#   CONTAINERS_ROOT       buildah's storage (default /var/lib/containers/storage)
#   CONTAINERS_RUNROOT    optional buildah run root
#   FUSE_OVERLAYFS        mount program (default /usr/bin/fuse-overlayfs)
#   arguments             BUILD_ARGS, each KEY=VALUE, then "--labels" and
#                         LABELS, each KEY=VALUE (image labels)
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
STORAGE=${STORAGE:-auto}
STORAGE_DRIVER=${STORAGE_DRIVER:-}
PUSH_RETRIES=${PUSH_RETRIES:-3}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-}
CACHE=${CACHE:-false}
CACHE_REPO=${CACHE_REPO:-}
TARGET=${TARGET:-}
PUSH=${PUSH:-true}
GIT_URL=${GIT_URL:-}
DOCKERFILE=${DOCKERFILE:-./Dockerfile}
CONTEXT=${CONTEXT:-.}
FUSE_OVERLAYFS=${FUSE_OVERLAYFS:-/usr/bin/fuse-overlayfs}
: "${SOURCE_ROOT:?SOURCE_ROOT must name the clone root}"
SOURCE_LINK=${SOURCE_LINK:-checkout}
: "${RESULT_IMAGE_URL:?}" "${RESULT_IMAGE_DIGEST:?}" "${RESULT_IMAGE_REF:?}"

is_bool TLS_VERIFY "$TLS_VERIFY"
is_bool ALLOW_EMULATION "$ALLOW_EMULATION"
is_bool CACHE "$CACHE"
is_bool PUSH "$PUSH"
case "$TARGET" in
-* | *[[:space:]]*) die "TARGET '$TARGET' is not a stage name: give the name after AS in the Dockerfile's FROM line, or leave it empty for the last stage" ;;
esac
case "$PUSH_RETRIES" in
'' | *[!0-9]*) die "PUSH_RETRIES must be a whole number, not '$PUSH_RETRIES'" ;;
esac
case "$SOURCE_DATE_EPOCH" in
'' | now) ;;
*[!0-9]*) die "SOURCE_DATE_EPOCH must be empty (the commit's time, the default), a whole number of seconds since 1970-01-01 UTC (e.g. git log -1 --format=%ct) or now (the build's own time), not '$SOURCE_DATE_EPOCH'" ;;
esac
relpath DOCKERFILE "$DOCKERFILE"
relpath CONTEXT "$CONTEXT"
# STORAGE_DRIVER's overlay went through fuse-overlayfs; STORAGE's is the
# kernel's own. Tekton drops params a Task does not declare, so the old name
# stays declared to say this rather than be ignored.
case "$STORAGE_DRIVER" in
'') ;;
overlay) die "STORAGE_DRIVER was renamed STORAGE, and its overlay (through fuse-overlayfs) is now STORAGE=fuse-overlayfs: pass that, or leave STORAGE out for auto, which needs no /dev/fuse where the kernel mounts overlay" ;;
vfs) die "STORAGE_DRIVER was renamed STORAGE: pass STORAGE=vfs instead of STORAGE_DRIVER=vfs" ;;
*) die "STORAGE_DRIVER was renamed STORAGE: pass STORAGE=auto, overlay (the kernel's), fuse-overlayfs or vfs" ;;
esac
case "$STORAGE" in
auto | overlay | fuse-overlayfs | vfs) ;;
*) die "STORAGE '$STORAGE' is not a storage mode: use auto, overlay (the kernel's), fuse-overlayfs or vfs" ;;
esac

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
# What Chains records of how it was built: this step runs natively on the
# node (only the Dockerfile's RUN steps run under QEMU), so uname -m is the
# node's architecture either way.
if [ -n "${RESULT_BUILD_ARCH:-}" ]; then
	uname -m | tr -d '\n' >"$RESULT_BUILD_ARCH"
fi
if [ -n "${RESULT_EMULATED:-}" ]; then
	if [ "$native" = true ]; then printf false; else printf true; fi >"$RESULT_EMULATED"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Storage. Every mode builds the same image (with --timestamp, the same
# digest); they differ in speed, disk and what the node must give:
#   overlay         the kernel's overlay, mounted in the user namespace
#                   buildah creates: Linux >= 5.11, no /dev/fuse; the fastest
#   fuse-overlayfs  overlay in user space: needs /dev/fuse from the fuse
#                   device plugin; the slowest on small files
#   vfs             a full copy of the tree for every layer: needs nothing
#   auto            overlay where it can serve, else fuse-overlayfs where
#                   /dev/fuse is here, else vfs; one line says which and why
storage_root=${CONTAINERS_ROOT:-/var/lib/containers/storage}

# overlay_unsafe prints why this buildah must not use the kernel's overlay,
# or nothing. Without CAP_SYS_ADMIN (every pod of this Task) buildah works
# in a user namespace it creates, where the kernel's overlay keeps its own
# records in user.overlay.* xattrs; containers/storage before 1.53 (buildah
# before 1.35) copies them into the image's layers (containers/storage#1847):
# another digest than the other modes, and layers rootless Docker cannot
# extract. As root with CAP_SYS_ADMIN they are trusted.overlay.*, left out.
overlay_unsafe() {
	capeff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
	case "$capeff" in
	'' | *[!0-9a-fA-F]*) capeff=0 ;;
	esac
	if [ "$(id -u)" = 0 ] && [ $((0x$capeff >> 21 & 1)) = 1 ]; then
		return 0
	fi
	v=$(buildah --version 2>/dev/null) || v=
	v=${v#buildah version }
	v=${v%% *}
	major=${v%%.*}
	minor=${v#*.}
	minor=${minor%%.*}
	case "$major|$minor" in
	*[!0-9|]* | '|'* | *'|') echo "cannot tell buildah's version ('$v'), and buildah before 1.35 writes the kernel overlay's xattrs into the image" ;;
	*) [ "$major" -gt 1 ] || { [ "$major" = 1 ] && [ "$minor" -ge 35 ]; } ||
		echo "buildah $v, older than 1.35, writes the kernel overlay's user.overlay.* xattrs into the image in a user namespace" ;;
	esac
}

# overlay_refusal prints why the kernel refuses buildah an overlay mount
# here, or nothing. buildah's storage library tries one when it starts (its
# own test mount, in the user namespace the build uses too), here in a
# scratch store on the build storage's filesystem. Refused, it takes
# fuse-overlayfs on its own; .has-mount-program records which it took.
overlay_refusal() {
	if ! mkdir -p "$storage_root" || ! probe=$(mktemp -d "$storage_root/overlay-probe.XXXXXX"); then
		echo "cannot make a scratch store in $storage_root"
		return
	fi
	rc=0
	buildah --root "$probe/root" --runroot "$probe/run" --log-level debug --storage-driver overlay --storage-opt overlay.mount_program= \
		images --quiet >"$tmp/overlay-probe.log" 2>&1 || rc=$?
	took=$(cat "$probe/root/overlay/.has-mount-program" 2>/dev/null) || took=
	rm -rf "$probe"
	[ "$rc" != 0 ] || [ "$took" != false ] || return 0
	why=$(sed -n 's/.*test mount with multiple lowers failed: \([^"]*\).*/\1/p' "$tmp/overlay-probe.log" | head -n 1)
	[ -n "$why" ] || why=$(grep -i 'error' "$tmp/overlay-probe.log" | tail -n 1)
	echo "the kernel refused buildah an overlay mount here${why:+ ($why)}"
}

# fuse_missing prints why fuse-overlayfs cannot mount here, or nothing.
fuse_missing() {
	if [ ! -c /dev/fuse ]; then
		echo "this container has no /dev/fuse"
	elif ! (: <>/dev/fuse) 2>/dev/null; then
		echo "this container cannot open /dev/fuse"
	elif [ ! -x "$FUSE_OVERLAYFS" ]; then
		echo "this image has no $FUSE_OVERLAYFS"
	fi
}

case "$STORAGE" in
overlay)
	why=$(overlay_unsafe)
	[ -z "$why" ] || die "STORAGE=overlay: $why (containers/storage#1847): use a buildah image of 1.35 or later, or STORAGE=auto, fuse-overlayfs or vfs"
	why=$(overlay_refusal)
	[ -z "$why" ] || die "STORAGE=overlay: $why: overlay in a user namespace needs Linux 5.11 or later, and seccomp and AppArmor profiles that allow mount; or use STORAGE=auto, which falls back to fuse-overlayfs or vfs"
	storage=overlay
	storage_why="STORAGE=overlay: the kernel's overlay, which mounted here"
	;;
fuse-overlayfs)
	why=$(fuse_missing)
	[ -z "$why" ] || die "STORAGE=fuse-overlayfs: $why. Only a catalog generated with build.storage: fuse-overlayfs asks for /dev/fuse (the fuse device plugin's resource, in the Task's computeResources.limits): generate it so and check the plugin runs on this node, or use STORAGE=auto or vfs"
	storage=fuse-overlayfs
	storage_why="STORAGE=fuse-overlayfs"
	;;
vfs)
	storage=vfs
	storage_why="STORAGE=vfs"
	;;
auto)
	why=$(overlay_unsafe)
	[ -n "$why" ] || why=$(overlay_refusal)
	if [ -z "$why" ]; then
		storage=overlay
		storage_why="STORAGE=auto: the kernel's overlay mounted here"
	else
		fuse_why=$(fuse_missing)
		if [ -z "$fuse_why" ]; then
			storage=fuse-overlayfs
			storage_why="STORAGE=auto: $why; /dev/fuse is here"
		else
			storage=vfs
			storage_why="STORAGE=auto: $why; $fuse_why"
		fi
	fi
	;;
esac
echo "storage: $storage ($storage_why)"

# The memory limit, said before the build: a build over it is OOMKilled,
# and then Tekton says only that ("step-build" exited with code 137:
# OOMKilled, reason StepOOM), never which limit or where it is set.
mem_limit=
for f in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do
	if [ -r "$f" ]; then
		mem_limit=$(cat "$f")
		break
	fi
done
case $mem_limit in
'') mem_limit_said="unknown (no cgroup memory controller in this container)" ;;
max | *[!0-9]* | 9[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]) mem_limit_said="none (the node's memory)" ;;
*) mem_limit_said="$((mem_limit / 1048576)) MiB" ;;
esac
echo "memory limit: $mem_limit_said; a build that needs more is OOMKilled: raise build.resources.limits.memory or architectures[].resources.limits.memory in the generator's configuration, or this run's taskRunSpecs[].stepSpecs[] (name: build) computeResources"
# oom_kills is how many processes of this container the kernel has killed
# at its memory limit: where only a RUN step's process is killed (cgroup v1,
# or v2 without memory.oom.group), buildah fails and this step lives on to
# say why.
oom_kills() {
	n=$(sed -n 's/^oom_kill //p' /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null | head -n 1)
	echo "${n:-0}"
}
oom_kills_before=$(oom_kills)

# bah is buildah on this step's storage; under timeout(1) while bah_timeout
# holds a number of seconds.
bah_timeout=
bah() {
	case "$storage" in
	overlay) set -- --storage-driver overlay --storage-opt overlay.mount_program= "$@" ;;
	fuse-overlayfs) set -- --storage-driver overlay --storage-opt "overlay.mount_program=$FUSE_OVERLAYFS" "$@" ;;
	*) set -- --storage-driver vfs "$@" ;;
	esac
	${bah_timeout:+timeout "$bah_timeout"} buildah --root "$storage_root" ${CONTAINERS_RUNROOT:+--runroot "$CONTAINERS_RUNROOT"} "$@"
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

# BUILD_ARGS, then LABELS after their marker, arrive as arguments; each
# becomes --build-arg or --label. A build arg must be KEY=VALUE, so no valid
# one is taken for the marker.
count=$#
mode=build-args
for arg in "$@"; do
	case "$mode:$arg" in
	*:--labels) mode=labels ;;
	build-args:[A-Za-z_]*=*) set -- "$@" --build-arg "$arg" ;;
	build-args:*) die "BUILD_ARGS entry '$arg' is not KEY=VALUE" ;;
	labels:?*=*) set -- "$@" --label "$arg" ;;
	labels:*) die "LABELS entry '$arg' is not KEY=VALUE with a non-empty KEY, e.g. com.example.team=payments" ;;
	esac
done
shift "$count"

# Trusted CAs: Go's TLS clients in buildah (pulls of FROM images, pushes,
# the layer cache) add every file of SSL_CERT_DIR's directories to the
# system's roots. That reaches every registry, including those only FROM
# names, and every buildah command (manifest create has no --cert-dir),
# and keeps the per-registry certs.d directories working: --cert-dir would
# replace those. TLS verification stays on.
if [ "${CA_BUNDLE_BOUND:-false}" = true ]; then
	ca_dir=$tmp/ca-bundle
	mkdir -p "$ca_dir"
	ca_keys=
	for f in "${CA_BUNDLE_PATH:?}"/*.crt "$CA_BUNDLE_PATH"/*.pem; do
		[ -f "$f" ] || continue
		grep -q -- '-----BEGIN CERTIFICATE-----' "$f" || die "workspace ca-bundle: ${f##*/} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
		cp "$f" "$ca_dir/${f##*/}"
		ca_keys="$ca_keys ${f##*/}"
	done
	[ -n "$ca_keys" ] || die "workspace ca-bundle is bound but has no *.crt or *.pem key: put the registry's CA certificate (PEM) in a ConfigMap or Secret key such as ca.crt"
	SSL_CERT_DIR=${SSL_CERT_DIR:-/etc/ssl/certs:/etc/pki/tls/certs}:$ca_dir
	export SSL_CERT_DIR
	echo "trusting the system's CAs and $(cat "$ca_dir"/* | grep -c -- '-----BEGIN CERTIFICATE-----') more from workspace ca-bundle:$ca_keys"
fi

# Build secrets: each key of the workspace is one, by path: buildah mounts
# it for RUN --mount=type=secret,id=KEY only, never in a layer. Only names
# are printed. A Secret volume's own entries start with "..".
secrets=
if [ "${BUILD_SECRETS_BOUND:-false}" = true ]; then
	for f in "${BUILD_SECRETS_PATH:?}"/* "$BUILD_SECRETS_PATH"/.[!.]*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		key=${f##*/}
		case "$key" in
		*[!A-Za-z0-9_.-]*) die "workspace build-secrets: key '$key' cannot be a build secret id (buildah splits --secret on ',' and '='): use letters, digits, '_', '.', '-'" ;;
		esac
		[ -f "$f" ] || die "workspace build-secrets: '$key' is not a file: bind the workspace to a Secret, whose keys are files"
		secrets="$secrets $key"
		set -- "$@" --secret "id=$key,src=$f"
	done
	[ -n "$secrets" ] || die "workspace build-secrets is bound but has no key: bind it to a Secret with one key per build secret"
	echo "build secrets (RUN --mount=type=secret,id=...):$secrets"
fi

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

# Where the image came from, as OCI labels: the repository (without
# credentials a URL may carry), the commit the clone step resolved (its
# COMMIT result, which the manifest's same-commit check compares) and the
# creation time. LABELS come after them, so a run can override one.
commit=${link_target##*/}
source_url=$(printf '%s' "$GIT_URL" | sed 's#^\([A-Za-z][A-Za-z0-9+.-]*://\)[^/@]*@#\1#')
# The epoch: the run's SOURCE_DATE_EPOCH, else the commit's time, so that a
# rebuild of the commit gives the same digest; "now" keeps the build's time.
case "$SOURCE_DATE_EPOCH" in
now)
	epoch=
	echo "SOURCE_DATE_EPOCH: none, the build's own time (SOURCE_DATE_EPOCH=now): every build of this commit gets another digest"
	;;
'')
	epoch=$(cat "${COMMIT_TIME_FILE:?COMMIT_TIME_FILE must name the COMMIT_TIME result of the clone step}" 2>/dev/null) || epoch=
	case "$epoch" in
	'' | *[!0-9]*) die "the clone step left no commit time in $COMMIT_TIME_FILE ('$epoch'): set the SOURCE_DATE_EPOCH param to a number, or to now for the build's own time" ;;
	esac
	echo "SOURCE_DATE_EPOCH: $epoch ($(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)), the committer time of commit $commit (the param is empty)"
	;;
*)
	epoch=$SOURCE_DATE_EPOCH
	echo "SOURCE_DATE_EPOCH: $epoch ($(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)), from the SOURCE_DATE_EPOCH param"
	;;
esac
# buildah passes the epoch as --timestamp, the one flag every buildah of
# the last years has (measured: 1.40.1 has no --source-date-epoch). From
# 1.42 buildah also reads SOURCE_DATE_EPOCH from its environment as
# --source-date-epoch, where "now" is a parse error: it takes the flag only.
unset SOURCE_DATE_EPOCH
if [ -n "$epoch" ]; then
	created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ) || die "cannot turn SOURCE_DATE_EPOCH '$epoch' into a date"
else
	created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
fi
set -- --label "org.opencontainers.image.revision=$commit" --label "org.opencontainers.image.created=$created" "$@"
[ -z "$source_url" ] || set -- --label "org.opencontainers.image.source=$source_url" "$@"

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
cache_to=$cache_repo
if [ -n "$cache_repo" ] && [ "$PUSH" = false ]; then
	# Build-only: read the cache, write nothing to the registry.
	echo "layer cache: $cache_repo, read only (PUSH=false: buildah bud --layers --cache-from)"
	cache_to=
elif [ -n "$cache_repo" ]; then
	if cache_probe >"$tmp/probe.log" 2>&1; then
		echo "layer cache: $cache_repo (buildah bud --layers --cache-from/--cache-to)"
	else
		reason=$(grep -i 'error' "$tmp/probe.log" | tail -n 1) || reason=$(tail -n 1 "$tmp/probe.log")
		echo "warning: cannot push to the layer cache $cache_repo, building without it: $reason"
		cache_repo=
	fi
fi

build() {
	bah bud --platform "$PLATFORM" --tls-verify="$TLS_VERIFY" ${epoch:+--timestamp "$epoch"} ${TARGET:+--target "$TARGET"} \
		--file "$DOCKERFILE" --tag "$push_ref" "$@"
}
# bud_failed says why a build failed, from its log, and exits. buildah's
# own word for an unknown target names neither the param nor the stages.
bud_failed() {
	if [ -n "$TARGET" ] && grep -Eiq 'target "[^"]*" was not found' "$tmp/bud.log"; then
		stages=$(sed -n 's/^[[:space:]]*[Ff][Rr][Oo][Mm][[:space:]].*[[:space:]][Aa][Ss][[:space:]][[:space:]]*\([^[:space:]]*\).*/\1/p' "$DOCKERFILE" | tr '\n' ' ' | sed 's/ $//')
		die "TARGET '$TARGET' is not a stage of $DOCKERFILE: its named stages are: ${stages:-(none: no FROM ... AS <name>)}"
	fi
	if [ "$(oom_kills)" -gt "$oom_kills_before" ]; then
		die "buildah bud failed for $PLATFORM: the build ran out of memory (a process of it was OOMKilled at this container's memory limit, $mem_limit_said): raise build.resources.limits.memory or architectures[].resources.limits.memory in the generator's configuration, or this run's taskRunSpecs[].stepSpecs[] (name: build) computeResources"
	fi
	if memfd_busy; then
		die "buildah bud failed for $PLATFORM: buildah could not re-execute itself ('sealing memfd copy: Device or resource busy') in $((memfd_retries + 1)) attempts: the kernel kept refusing to seal its in-memory copy of its binary; this is the node's load, not the Dockerfile: run again"
	fi
	die "buildah bud failed for $PLATFORM (its output is above)"
}
# memfd_busy says whether a failed build died in buildah's re-exec of
# itself rather than in the Dockerfile. For each RUN (chroot isolation), and
# at start where it makes a user namespace, buildah re-executes itself
# through containers/storage's pkg/unshare, which copies its own binary into
# a memfd and seals it (F_SEAL_WRITE) unless it can bind-mount it read-only,
# which it tries only when it makes a mount namespace: the RUN's first
# re-exec makes none, so every RUN makes a copy. The kernel refuses that seal
# with EBUSY while a page of the copy is briefly held elsewhere, which a
# loaded node can do; the process exits 1 with this line before the RUN's
# command starts, and buildah fails the build at that step. containers/storage has no retry there (checked: 1.43.0 in Debian's
# buildah 1.28.2, 1.58.0 in buildah v1.40.1, 1.59.1, go.podman.io/storage
# 1.65.1). Only this line is matched: any other failure is the build's own
# and is not retried.
memfd_busy() {
	grep -Fq 'sealing memfd copy: Device or resource busy' "$tmp/bud.log"
}
memfd_retries=2
# bud ARGS... builds, its output also in bud.log; bud.status has its exit code.
# A build that failed only in buildah's memfd seal (memfd_busy) goes again, up
# to memfd_retries times, saying so.
bud() {
	retry=0
	while :; do
		echo 0 >"$tmp/bud.status"
		{ build "$@" 2>&1 || echo "$?" >"$tmp/bud.status"; } | tee "$tmp/bud.log"
		[ "$(cat "$tmp/bud.status")" != 0 ] || return 0
		[ "$retry" -lt "$memfd_retries" ] && memfd_busy || return 1
		retry=$((retry + 1))
		echo "warning: buildah failed to re-execute itself (above: 'sealing memfd copy: Device or resource busy', the kernel refused to seal buildah's in-memory copy of its binary while the node was busy), not in a Dockerfile step: building again (retry $retry of $memfd_retries)"
		sleep 1
	done
}
echo "building $push_ref for $PLATFORM on a linux/$node node (storage: $storage)${TARGET:+, stage $TARGET}"
if [ -z "$cache_repo" ]; then
	bud "$@" "$CONTEXT" || bud_failed
else
	# The registry can still fail a cache push mid-build (buildah: "failed
	# pushing cache to ..."). Then build again without the cache: --layers
	# reuses every layer the first attempt committed to this pod's storage.
	if ! bud --layers --cache-from "$cache_repo" ${cache_to:+--cache-to "$cache_to"} "$@" "$CONTEXT"; then
		grep -Eiq '^error.*cache' "$tmp/bud.log" || bud_failed
		echo "warning: the layer cache $cache_repo failed during the build (above): building again without it, from the layers this pod has"
		bud --layers "$@" "$CONTEXT" || bud_failed
	fi
fi

# containers/storage takes fuse-overlayfs on its own when the kernel refuses
# overlay: an overlay build must have had the kernel's, as the probe found.
if [ "$storage" = overlay ] && [ "$(cat "$storage_root/overlay/.has-mount-program" 2>/dev/null)" != false ]; then
	die "buildah did not build on the kernel's overlay although its test mount worked before the build: build again, or use STORAGE=vfs"
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

if [ "$PUSH" = false ]; then
	# Build-only: the digest of the image's manifest in this pod's storage
	# (its layers uncompressed, so a push would give another digest).
	digest=$(bah images --digests --format '{{.Digest}}' "$push_ref" | head -n 1)
	printf '%s' "$digest" | grep -Eq '^sha256:[0-9a-f]{64}$' || die "buildah gave no usable digest of the built image ('$digest')"
	printf '%s' "$push_ref" >"$RESULT_IMAGE_URL"
	printf '%s' "$digest" >"$RESULT_IMAGE_DIGEST"
	printf '%s' "$repo@$digest" >"$RESULT_IMAGE_REF"
	echo "built $repo@$digest ($built), not pushed (PUSH=false)"
	exit 0
fi

digestfile=$tmp/digest
echo "pushing $push_ref (up to $PUSH_RETRIES retries)"
# buildah can exit 0 and leave the digest file empty when the registry
# dropped the connection of the manifest's write (measured with buildah
# 1.40.1, TestRealNode/faults): such a push counts as failed and goes again.
push_image() {
	rm -f "$digestfile"
	bah push --retry "$PUSH_RETRIES" --digestfile "$digestfile" --tls-verify="$TLS_VERIFY" "$push_ref" "docker://$push_ref"
}
if ! push_image || ! grep -Eq '^sha256:[0-9a-f]{64}$' "$digestfile" 2>/dev/null; then
	echo "the push of $push_ref did not complete: pushing again"
	push_image ||
		die "pushing $push_ref failed after $PUSH_RETRIES retries: check that the registry is reachable from this node, TLS_VERIFY (and for a registry behind an internal CA, the ca-bundle workspace), and the credentials in the dockerconfig workspace"
fi
digest=$(cat "$digestfile" 2>/dev/null || true)
printf '%s' "$digest" | grep -Eq '^sha256:[0-9a-f]{64}$' || die "buildah wrote no usable digest ('$digest')"

printf '%s' "$push_ref" >"$RESULT_IMAGE_URL"
printf '%s' "$digest" >"$RESULT_IMAGE_DIGEST"
printf '%s' "$repo@$digest" >"$RESULT_IMAGE_REF"
echo "pushed $repo@$digest ($built)"
