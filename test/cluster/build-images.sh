#!/usr/bin/env bash
# Builds the container images a real node of the cluster test runs, here, without
# pulling anything: nothing may come from a public registry. Each image is an OCI
# archive <name>.tar holding ONE reference, an OCI image index with linux/amd64
# and linux/arm64 (the same reference runs on the amd64 and the arm64 node, as a
# cluster pulls one multi-arch reference); `ctr -n k8s.io images import`
# registers it and unpacks the node's own platform:
#
#   entrypoint, nop, workingdirinit, sidecarlogresults
#           Tekton's own images, from the Tekton Pipelines version
#           tools/tekton/go.mod pins, each a static binary at /ko-app/<name> (the
#           path Tekton's pod builder runs, as ko lays out Tekton's release images)
#   shell   busybox (Debian's busybox-static, a link per applet): the controller's
#           -shell-image, whose `sh -c` writes the step scripts, and the
#           node-profile loader's image (busybox has sh and chroot)
#   pause   containerd's CRI sandbox_image: busybox `sleep inf`
#   buildah buildah at the version tools/buildah/go.mod pins (the catalog's default
#           image's, v1.40.1), built here at /usr/bin/buildah, on Debian's
#           containers-common, fuse-overlayfs and the libraries it links
#           (mmdebstrap), standing in for buildah's upstream stable image
#   syft    syft at the version tools/sbom/go.mod pins (v1.57.2) at /syft, with
#           busybox at /busybox and no /bin/sh, as anchore/syft:v1.57.2-debug
#           (distroless static debug) lays it out; the build's sbom step
#   crane   crane (go-containerregistry, the version syft requires, v0.22.1)
#           at /ko-app/crane with busybox at /busybox, as
#           gcr.io/go-containerregistry/crane/debug:v0.22.1; sbom-attach
#   git-sync  the git-sync v4 stand-in (test/gitsync) at /git-sync with Debian's git
#           and openssh-client, as UID/GID 65533 like the real git-sync v4 image
#
# How each platform is made (the build machine is amd64; arm64 is cross-built,
# nothing of it runs here except Debian's maintainer scripts, see below):
#   Go programs  GOARCH=arm64 CGO_ENABLED=0, the same flags as amd64's
#   buildah      cgo: CC=aarch64-linux-gnu-gcc (Debian's gcc-aarch64-linux-gnu,
#                libc6-dev-arm64-cross) against a private sysroot of Debian's
#                arm64 libseccomp-dev and libseccomp2 (the versions installed here)
#   busybox      Debian's arm64 busybox-static .deb of the version installed here
#   Debian root filesystems  mmdebstrap --architectures=arm64, whose maintainer
#                scripts run under qemu-user (qemu-user-static) registered in a
#                binfmt_misc instance of the build's own user namespace (Linux >=
#                6.7): the machine's binfmt_misc is neither read nor changed
# arm64 .debs come from this machine's apt sources through a private apt
# configuration (APT::Architecture "arm64", its own state and cache under the
# build directory): the machine's dpkg gets no arm64 architecture.
# Every archive is checked (test/archcheck): one index with exactly linux/amd64
# and linux/arm64, each config naming its platform, and every ELF file in each
# platform's layers built for its machine (EM_X86_64, EM_AARCH64); the build
# fails otherwise.
#
# into ${TEKTON_MULTIARCH_CACHE:-~/.cache/tekton-multiarch}/node-images/<key>/, with
# images.env (ENTRYPOINT_IMAGE=<ref> ... GITSYNC_IMAGE=<ref>, shell-sourceable;
# for each, <VAR>_DIGEST=<index digest> and <VAR>_DIGEST_AMD64, _ARM64=<that
# platform's manifest digest>; PLATFORMS) and <image>.<arch>.packages (the
# Debian packages in the mmdebstrap images). The key hashes everything that goes
# in: this script, the Go modules and sources, the Debian package versions apt
# would install (from this machine's apt lists: run apt-get update to see newer
# ones; the arm64 packages come from the same archive), the apt sources, and the
# tool versions. Every ref is localhost/tekton-multiarch-test/<name>:<key>. An
# existing directory for the current key is reused as is.
#
#   build-images.sh          build if needed; print the image directory on stdout
#   build-images.sh --dir    print the directory for the current key; build nothing
#
# Needs root, Go with cgo, and apt-get install -y buildah mmdebstrap busybox-static
# gcc libc6-dev libseccomp-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross
# qemu-user-static. Packages
# come from this machine's own apt sources (TEKTON_MULTIARCH_APT_SOURCES, default
# /etc/apt/sources.list.d/debian.sources). buildah works in a private vfs store
# under the build directory, deleted at the end: the host's /var/lib/containers
# does not grow.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tools=$here/tools
cache=${TEKTON_MULTIARCH_CACHE:-$HOME/.cache/tekton-multiarch}
suite=bookworm
apt_sources=${TEKTON_MULTIARCH_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
[ -f "$apt_sources" ] || apt_sources=/etc/apt/sources.list
# Bump when the build commands below change in a way the key would not notice
# (the key hashes this script, so any edit here changes it anyway).
recipe="recipe=2 suite=$suite"
# The platforms of every image: the machine's own (amd64) first, then arm64.
archs=(amd64 arm64)
platforms=linux/amd64,linux/arm64

die() {
	echo "build-images.sh: $*" >&2
	exit 1
}
for c in go buildah mmdebstrap apt-cache apt-get dpkg-query dpkg-deb sha256sum unshare pkg-config; do
	command -v "$c" >/dev/null || die "$c is missing (apt-get install -y buildah mmdebstrap pkg-config, and Go)"
done
busybox=/bin/busybox
cross_debs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static)
for h in gcc libc6-dev libseccomp-dev "${cross_debs[@]}"; do
	dpkg-query -W "$h" >/dev/null 2>&1 || die "$h is missing (buildah is built with cgo for amd64 and arm64, and arm64's maintainer scripts run under qemu-user): apt-get install -y gcc libc6-dev libseccomp-dev ${cross_debs[*]}"
done
qemu_aarch64=/usr/share/binfmts/qemu-aarch64
[ -f "$qemu_aarch64" ] || die "$qemu_aarch64 is missing: apt-get install -y qemu-user-static"
if ! [ -x "$busybox" ] || ! dpkg-query -W busybox-static >/dev/null 2>&1; then
	die "$busybox from busybox-static is missing: apt-get install -y busybox-static"
fi
[ -f "$apt_sources" ] || die "no apt sources at $apt_sources: set TEKTON_MULTIARCH_APT_SOURCES"

# The buildah the image carries, from tools/buildah (cmd/buildah). cgo, because
# containers/storage's pkg/unshare re-executes buildah into the user namespace it
# makes (root without CAP_SYS_ADMIN, as in every pod of the Task) from a C
# constructor, and buildah's chroot isolation filters RUN steps with libseccomp:
# linked against this machine's glibc and libseccomp, which are bookworm's, as
# the image's are. Tags as buildah's Makefile sets them (seccomp), minus the C
# libraries the image does without: containers_image_openpgp (Go OpenPGP, no
# gpgme), exclude_graphdriver_btrfs (no libbtrfs); no libsubid, systemd or
# apparmor tags; exclude_graphdriver_devicemapper is a no-op since
# containers/storage dropped devicemapper, kept for older pins.
buildah_tags="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper seccomp"
buildah_version=$(awk '$1 == "github.com/containers/buildah" { print $2 } $1 == "require" && $2 == "github.com/containers/buildah" { print $3 }' "$tools/buildah/go.mod" | head -n 1)
[ -n "$buildah_version" ] || die "no github.com/containers/buildah requirement in $tools/buildah/go.mod"

syft_version=$(awk '$1 == "github.com/anchore/syft" { print $2 }' "$tools/sbom/go.mod" | head -n 1)
crane_version=$(awk '$1 == "github.com/google/go-containerregistry" { print $2 }' "$tools/sbom/go.mod" | head -n 1)
{ [ -n "$syft_version" ] && [ -n "$crane_version" ]; } || die "no syft or go-containerregistry requirement in $tools/sbom/go.mod"

tekton_version=$(awk '$1 == "github.com/tektoncd/pipeline" { print $2 } $1 == "require" && $2 == "github.com/tektoncd/pipeline" { print $3 }' "$tools/tekton/go.mod" | head -n 1)
[ -n "$tekton_version" ] || die "no github.com/tektoncd/pipeline requirement in $tools/tekton/go.mod"

# The Debian packages each image asks for; mmdebstrap adds their dependencies.
# The buildah image: what Debian's buildah package depends on, but neither that
# package (its binary is replaced by ours) nor the libraries ours does not link
# (gpgme, devmapper). golang-github-containers-common brings /etc/containers's
# policy.json and (through golang-github-containers-image) registries.conf.
# netavark, as in the upstream image: buildah 1.40 sets up its network backend
# for every build container, even under chroot isolation,
# and without the cni tag knows only netavark; without the binary `buildah bud`
# fails at once ("could not find netavark").
buildah_debs=(golang-github-containers-common netavark uidmap libseccomp2 fuse-overlayfs ca-certificates)
gitsync_debs=(git openssh-client ca-certificates)

# debian_versions prints "package candidate-version" as this machine's apt lists
# have them: what mmdebstrap will install unless the archive moved since the last
# apt-get update.
# apt-cache keeps its parsed lists in our cache (this machine's apt config turns
# its own off), rebuilt by apt when the lists change: 0.01 s instead of 0.7.
debian_versions() {
	mkdir -p "$cache/node-images/.apt"
	apt-cache -o Dir::Cache::pkgcache="$cache/node-images/.apt/pkgcache.bin" \
		-o Dir::Cache::srcpkgcache="$cache/node-images/.apt/srcpkgcache.bin" \
		policy "$@" | awk '/^[^ ]/ { p = $1 } $1 == "Candidate:" { print p, $2 }'
}

key=$(
	{
		echo "$recipe tekton=$tekton_version buildah=$buildah_version buildah_tags=$buildah_tags"
		go version
		go env GOOS GOARCH
		buildah --version
		dpkg-query -W mmdebstrap busybox-static gcc libc6-dev libseccomp-dev libseccomp2 "${cross_debs[@]}"
		cat "$qemu_aarch64"
		debian_versions "${buildah_debs[@]}" "${gitsync_debs[@]}"
		cat "$apt_sources"
		cat "$0"
		cat "$tools/tekton/go.mod" "$tools/tekton/go.sum" "$tools/buildah/go.mod" "$tools/buildah/go.sum"
		cat "$tools/sbom/go.mod" "$tools/sbom/go.sum" "$tools/sbom/tools.go"
		cat "$repo/go.mod" "$repo/go.sum"
		find "$repo/test/gitsync" "$repo/test/archcheck" -name '*.go' ! -name '*_test.go' | LC_ALL=C sort | xargs cat
	} | sha256sum | cut -c1-16
)
dir=$cache/node-images/$key
names=(entrypoint nop workingdirinit sidecarlogresults shell pause buildah git-sync syft crane)

if [ "${1:-}" = "--dir" ]; then
	echo "$dir"
	exit 0
fi

complete() {
	[ -f "$dir/images.env" ] || return 1
	for n in "${names[@]}"; do [ -s "$dir/$n.tar" ] || return 1; done
}

if complete; then
	echo "node images are up to date in $dir" >&2
	echo "$dir"
	exit 0
fi

if debian_versions "${buildah_debs[@]}" "${gitsync_debs[@]}" | grep -q '(none)'; then
	echo "warning: apt knows no candidate version of some packages (run apt-get update); the key cannot follow them:" >&2
	debian_versions "${buildah_debs[@]}" "${gitsync_debs[@]}" | grep '(none)' >&2
fi

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap builds the Debian root filesystems as root)"
[ "$(go env GOARCH)" = amd64 ] || die "the images are built on amd64 (arm64 is cross-built); this Go is $(go env GOARCH)"

# Build into a scratch directory and rename it at the end, so an interrupted build
# never leaves a directory that looks complete.
mkdir -p "$cache/node-images"
tmp=$(mktemp -d "$cache/node-images/.build-$key.XXXXXX")
work=$tmp/work
for a in "${archs[@]}"; do mkdir -p "$work/$a/bin"; done

# buildah on a private vfs store under $work: vfs mounts nothing, so removing the
# directory removes every container and image this script made.
bah() {
	buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"
}
rootfs_pids=()
cleanup() {
	local pid
	for pid in "${rootfs_pids[@]}"; do
		# mmdebstrap (a child of the background subshell) unmounts and removes
		# its own temporary chroot on SIGTERM.
		pkill -TERM -P "$pid" 2>/dev/null || true
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ -d "$work/storage" ]; then
		bah rm --all >/dev/null 2>&1 || true
		bah rmi --all --force >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# shellcheck source=steps.sh source-path=SCRIPTDIR
. "$here/steps.sh"

ref() { echo "localhost/tekton-multiarch-test/$1:$key"; }

# image NAME ROOTFS [--file SRC DEST MODE]... [buildah config options...]: an
# image index with one image per platform, each of $work/<arch>/ROOTFS (a tar
# file, which buildah add unpacks as it is, owners and modes included, or a
# directory), the files $work/<arch>/SRC on top, and the given config, written
# to $tmp/NAME.tar under its one ref (buildah manifest push --all); then
# checked by archcheck (the build fails if it fails), whose digests of the
# index and each platform go to $work/digests.env as <NAME>_IMAGE_DIGEST...
image() {
	local name=$1 rootfs=$2
	shift 2
	local files=() a c r i var
	while [ "${1:-}" = --file ]; do
		files+=("$2" "$3" "$4")
		shift 4
	done
	r=$(ref "$name")
	var=$(echo "$name" | tr -d - | tr '[:lower:]' '[:upper:]')_IMAGE
	bah manifest create "$r" >/dev/null
	for a in "${archs[@]}"; do
		c=$(bah from --quiet scratch)
		if [ -d "$work/$a/$rootfs" ]; then
			bah add --quiet "$c" "$work/$a/$rootfs/" /
		else
			bah add --quiet "$c" "$work/$a/$rootfs" /
		fi
		for ((i = 0; i < ${#files[@]}; i += 3)); do
			bah copy --quiet --chmod "${files[i + 2]}" "$c" "$work/$a/${files[i]}" "${files[i + 1]}"
		done
		bah config --os linux --arch "$a" --created-by test/cluster/build-images.sh "$@" "$c"
		bah commit --quiet --rm "$c" "$r-$a" >/dev/null
		bah manifest add "$r" "containers-storage:$r-$a" >/dev/null
	done
	bah manifest push --quiet --all "$r" "oci-archive:$tmp/$name.tar:$r"
	for a in "${archs[@]}"; do bah rmi "$r-$a" >/dev/null; done
	bah rmi "$r" >/dev/null
	"$work/archcheck" -platforms "$platforms" -env "$var" "$tmp/$name.tar" >>"$work/digests.env"
}

# apt_arm64 ARGS...: apt-get for arm64 packages: this machine's apt sources,
# but a configuration, lists, state and cache of its own under $work/apt (no
# arm64 architecture is added to the machine's dpkg, nothing of its apt state
# changes).
apt_arm64() {
	APT_CONFIG=$work/apt/apt.conf apt-get -q "$@"
}
setup_apt_arm64() {
	mkdir -p "$work/apt/lists/partial" "$work/apt/archives/partial" "$work/apt/sources" "$work/apt/debs"
	: >"$work/apt/status"
	cp "$apt_sources" "$work/apt/sources/"
	cat >"$work/apt/apt.conf" <<-EOF
		APT::Architecture "arm64";
		APT::Architectures { "arm64"; };
		APT::Sandbox::User "root";
		Dir::State "$work/apt";
		Dir::State::Lists "$work/apt/lists";
		Dir::State::status "$work/apt/status";
		Dir::Cache "$work/apt";
		Dir::Cache::Archives "$work/apt/archives";
		Dir::Cache::pkgcache "";
		Dir::Cache::srcpkgcache "";
		Dir::Etc::SourceList "/dev/null";
		Dir::Etc::SourceParts "$work/apt/sources";
		Dir::Etc::Preferences "/dev/null";
		Dir::Etc::PreferencesParts "/dev/null";
	EOF
	apt_arm64 update -qq
}

# arm64_debs: Debian's arm64 busybox-static, libseccomp-dev and libseccomp2 of
# the versions installed on this machine (so busybox has the applets of the
# machine's busybox, and both buildahs link the same libseccomp), unpacked:
# busybox to $work/arm64/busybox-deb, the libseccomp packages to the sysroot
# arm64's buildah is linked against, $work/arm64/sysroot.
arm64_debs() {
	local p debs=()
	for p in busybox-static libseccomp-dev libseccomp2; do
		debs+=("$p=$(dpkg-query -W -f='${Version}' "$p")")
	done
	(cd "$work/apt/debs" && apt_arm64 download -qq "${debs[@]}")
	dpkg-deb -x "$work"/apt/debs/busybox-static_*_arm64.deb "$work/arm64/busybox-deb"
	for p in libseccomp-dev libseccomp2; do
		dpkg-deb -x "$work/apt/debs/${p}_"*_arm64.deb "$work/arm64/sysroot"
	done
}

# with_qemu_binfmt CMD...: run CMD as root of a user namespace of its own (IDs
# 0-65535 mapped to themselves, so files keep their owners) with a mount
# namespace and a binfmt_misc instance of its own (Linux >= 6.7 gives each user
# namespace that mounts binfmt_misc its own), in which arm64 ELF files run under
# qemu-user as update-binfmts would register qemu-user-static's
# /usr/share/binfmts/qemu-aarch64 (with F, the interpreter is opened now, so it
# also runs inside a chroot). The machine's binfmt_misc is neither read nor
# changed: the build depends on no state of the machine's, and leaves none.
with_qemu_binfmt() {
	local reg fifo pid rc=0
	reg=$(awk '{ v[$1] = $2 } END {
		f = ""
		if (v["preserve"] == "yes") f = f "P"
		if (v["credentials"] == "yes") f = f "C"
		if (v["fix_binary"] == "yes") f = f "F"
		printf ":qemu-aarch64-build:M:%s:%s:%s:%s:%s", v["offset"], v["magic"], v["mask"], v["interpreter"], f
	}' "$qemu_aarch64")
	fifo=$(mktemp -u "$work/userns.XXXXXX")
	mkfifo "$fifo"
	# The child waits on the fifo until its ID maps are written (newuidmap
	# would want /etc/subuid ranges for root; root writes them itself).
	# shellcheck disable=SC2016
	unshare --user --mount --propagation private sh -c 'read -r _ <"$0" &&
		mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc &&
		printf "%s" "$1" >/proc/sys/fs/binfmt_misc/register && shift && exec "$@"' "$fifo" "$reg" "$@" &
	pid=$!
	while [ -e "/proc/$pid" ] && [ "$(readlink "/proc/$pid/ns/user")" = "$(readlink /proc/self/ns/user)" ]; do
		sleep 0.01
	done
	if echo '0 0 65536' >"/proc/$pid/uid_map" && echo '0 0 65536' >"/proc/$pid/gid_map"; then
		echo go >"$fifo"
	else
		kill "$pid" 2>/dev/null || true
	fi
	wait "$pid" || rc=$?
	rm -f "$fifo"
	return "$rc"
}

# rootfs ARCH NAME VARIANT PACKAGES... [-- HOOK...]: a Debian $suite root
# filesystem for ARCH from this machine's apt sources, as a tar at
# $work/ARCH/NAME.tar, its package list at $tmp/NAME.ARCH.packages.
# Documentation, man pages and locales are left out; the device nodes mmdebstrap
# puts in /dev are removed (the runtime mounts /dev), and so are the build
# machine's resolv.conf and hostname. mmdebstrap runs each hook under sh with the
# chroot directory as $1, hence the single quotes. arm64's maintainer scripts
# run under qemu-user (with_qemu_binfmt; mmdebstrap's own check of that needs
# arch-test, which is skipped: a script that cannot run fails the build).
# shellcheck disable=SC2016
rootfs() {
	local arch=$1 name=$2 variant=$3
	shift 3
	local include=() hooks=() run=() opts=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		include+=("$1")
		shift
	done
	[ $# -eq 0 ] || shift
	for h in "$@"; do hooks+=(--customize-hook="$h"); done
	if [ "$arch" != amd64 ]; then
		run=(with_qemu_binfmt)
		opts=(--mode=root --skip=check/qemu)
	fi
	local t0=$SECONDS IFS=,
	# The system PATH: mmdebstrap's filter (mmtarfilter) runs `env python3`, and
	# must get Debian's python3, not whichever a user's PATH puts first.
	"${run[@]}" env PATH=/usr/sbin:/usr/bin:/sbin:/bin mmdebstrap "${opts[@]}" --architectures="$arch" \
		--variant="$variant" --include="${include[*]}" \
		--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--customize-hook='truncate -s 0 "$1/etc/resolv.conf" "$1/etc/hostname" && chmod 0644 "$1/etc/resolv.conf" "$1/etc/hostname"' \
		"${hooks[@]}" \
		--customize-hook="dpkg-query --admindir=\"\$1/var/lib/dpkg\" -W >'$tmp/$name.$arch.packages'" \
		--format=tar "$suite" "$work/$arch/$name.tar" "$apt_sources"
	tar --delete --wildcards -f "$work/$arch/$name.tar" './dev/?*'
	echo "rootfs: $name for $arch in $((SECONDS - t0))s"
}

# debian_rootfses ARCH: the buildah and git-sync root filesystems for ARCH.
# shellcheck disable=SC2016
debian_rootfses() {
	# The buildah image. buildah's upstream stable image also sets up, and this
	# does not: storage.conf with fuse-overlayfs as mount_program (the Task passes
	# --storage-driver and overlay.mount_program itself), /var/lib/shared as an
	# additional image store (no pre-pulled images here), a VOLUME on
	# /var/lib/containers (the Task mounts an emptyDir there), a non-root "build"
	# user with /etc/subuid ranges (the Task's build runs as root), and a
	# containers.conf for `buildah run` with OCI isolation (BUILDAH_ISOLATION=chroot
	# needs no runtime, cgroups or network namespace). Measured here: in such a
	# container, as root with the default capabilities and /dev/fuse, buildah bud
	# with a RUN step builds and pushes.
	rootfs "$1" buildah apt "${buildah_debs[@]}"
	# The git-sync image, as the real git-sync v4 image is made: a user and group
	# 65533 named git-sync in /etc/passwd and /etc/group (ssh refuses to run for a
	# UID with no passwd entry), home /tmp, and /git (its default --root) owned by
	# them, setgid and group-writable.
	rootfs "$1" git-sync essential "${gitsync_debs[@]}" -- \
		'echo "git-sync:x:65533:65533::/tmp:/sbin/nologin" >>"$1/etc/passwd"' \
		'echo "git-sync:x:65533:git-sync" >>"$1/etc/group"' \
		'mkdir -m 02775 "$1/git" && chown 65533:65533 "$1/git"'
}

total0=$SECONDS
step "archcheck (test/archcheck, for this machine)" \
	bash -c "cd '$repo' && CGO_ENABLED=0 go build -trimpath -o '$work/archcheck' ./test/archcheck/cmd/archcheck"
step "the arm64 apt lists (a private apt configuration)" setup_apt_arm64
step "Debian's arm64 busybox-static, libseccomp-dev, libseccomp2" arm64_debs
# Fail here, not minutes later in mmdebstrap, if arm64 programs cannot run in a
# user namespace's binfmt_misc.
qemu_check() {
	with_qemu_binfmt "$work/arm64/busybox-deb/bin/busybox" true ||
		die "arm64 programs do not run under qemu-user in a user namespace's binfmt_misc (it needs Linux >= 6.7 and qemu-user-static)"
}
step "a check that arm64 programs run under qemu-user in the build's own binfmt_misc" qemu_check

# mmdebstrap waits on the network and dpkg (and arm64's on qemu-user) while Go
# compiles: run it alongside, one job per architecture.
for a in "${archs[@]}"; do
	echo "building the $a Debian root filesystems (mmdebstrap, in the background; log in $work/mmdebstrap.$a.log) ..." >&2
	debian_rootfses "$a" >"$work/mmdebstrap.$a.log" 2>&1 &
	rootfs_pids+=("$!")
done

# per_arch FN: FN amd64 and FN arm64 side by side (one go build leaves a core
# idle while it links or runs cgo); fails if either fails.
per_arch() {
	local pids=() a p rc=0
	for a in "${archs[@]}"; do
		"$1" "$a" &
		pids+=("$!")
	done
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	return "$rc"
}
# gobuild ARCH DIR [ENV=VALUE...] -- GO-BUILD-ARGS...: go build in DIR for
# linux/ARCH, without cgo unless ENV says otherwise.
gobuild() {
	local arch=$1 dir=$2 env=()
	shift 2
	while [ "$1" != -- ]; do
		env+=("$1")
		shift
	done
	shift
	(cd "$dir" && env GOOS=linux GOARCH="$arch" CGO_ENABLED=0 "${env[@]}" go build -trimpath "$@")
}
build_tekton() {
	gobuild "$1" "$tools/tekton" -- -ldflags='-s -w' -o "$work/$1/bin/" \
		github.com/tektoncd/pipeline/cmd/entrypoint github.com/tektoncd/pipeline/cmd/nop \
		github.com/tektoncd/pipeline/cmd/workingdirinit github.com/tektoncd/pipeline/cmd/sidecarlogresults
}
# cgo: arm64's with Debian's cross compiler, and libseccomp from the sysroot
# (pkg-config prefixes its -I and -L with it).
build_buildah() {
	local env=(CGO_ENABLED=1)
	if [ "$1" = arm64 ]; then
		env+=(CC=aarch64-linux-gnu-gcc
			PKG_CONFIG_LIBDIR="$work/arm64/sysroot/usr/lib/aarch64-linux-gnu/pkgconfig"
			PKG_CONFIG_SYSROOT_DIR="$work/arm64/sysroot")
	fi
	gobuild "$1" "$tools/buildah" "${env[@]}" -- -ldflags='-s -w' -tags "$buildah_tags" \
		-o "$work/$1/bin/buildah" github.com/containers/buildah/cmd/buildah
}
# syft and crane from one wrapper module: crane's packages are syft's own
# dependency, so crane costs a link. Version stamps as their releases set them.
build_sbom() {
	gobuild "$1" "$tools/sbom" -- -o "$work/$1/bin/" \
		-ldflags="-s -w -X main.version=${syft_version#v} -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$crane_version" \
		github.com/anchore/syft/cmd/syft github.com/google/go-containerregistry/cmd/crane
}
build_gitsync() {
	gobuild "$1" "$repo" -- -ldflags='-s -w' -o "$work/$1/bin/git-sync" ./test/gitsync/cmd/git-sync
}
step "Tekton $tekton_version entrypoint, nop, workingdirinit, sidecarlogresults (amd64, arm64)" per_arch build_tekton
step "buildah $buildah_version (cgo, tags: $buildah_tags; amd64, arm64)" per_arch build_buildah
step "syft $syft_version and crane $crane_version (amd64, arm64)" per_arch build_sbom
step "the git-sync stand-in (amd64, arm64)" per_arch build_gitsync

# busybox for each platform: this machine's (amd64) and Debian's arm64 build of
# the same version, so one applet list (the machine's busybox --list) fits both.
busybox_of() {
	case $1 in
	amd64) echo "$busybox" ;;
	*) echo "$work/$1/busybox-deb/bin/busybox" ;;
	esac
}
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
debug_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/busybox
for a in "${archs[@]}"; do
	# Tekton's images, laid out as ko lays out its release images: the binary
	# at /ko-app/<name>, which is what the pod builder runs.
	for b in entrypoint nop workingdirinit sidecarlogresults; do
		mkdir -p "$work/$a/ko-$b/ko-app"
		install -m 0755 "$work/$a/bin/$b" "$work/$a/ko-$b/ko-app/$b"
	done
	# busybox with a link per applet in /bin (the shell and pause images), and
	# the debug images' layout, busybox and its applets in /busybox only.
	mkdir -p "$work/$a/busybox/bin" "$work/$a/busybox/tmp" "$work/$a/debug/busybox" "$work/$a/debug/tmp" "$work/$a/debug/ko-app"
	chmod 1777 "$work/$a/busybox/tmp" "$work/$a/debug/tmp"
	install -m 0755 "$(busybox_of "$a")" "$work/$a/busybox/bin/busybox"
	install -m 0755 "$(busybox_of "$a")" "$work/$a/debug/busybox/busybox"
	for x in $("$busybox" --list); do
		[ "$x" = busybox ] && continue
		ln -s busybox "$work/$a/busybox/bin/$x"
		ln -s busybox "$work/$a/debug/busybox/$x"
	done
done

# Tekton's images: the entrypoint (nop runs as the affinity assistant with only
# args, and replaces a sidecar's image to stop it). The pod builder runs
# /ko-app/<name> (pkg/pod/pod.go: the prepare init container `/ko-app/entrypoint
# init /ko-app/entrypoint /tekton/bin/entrypoint <steps>`, the results sidecar
# `/ko-app/sidecarlogresults`; pkg/pod/workingdir_init.go:
# `/ko-app/workingdirinit`). Tekton's base image runs as the distroless nonroot
# user, 65532:65532.
for b in entrypoint nop workingdirinit sidecarlogresults; do
	step "image $b" image "$b" "ko-$b" \
		--entrypoint "[\"/ko-app/$b\"]" --user 65532:65532 \
		--env PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/ko-app \
		--label "org.opencontainers.image.version=$tekton_version"
done

# busybox: Tekton's place-scripts init container runs `sh -c` with touch, chmod,
# cat and a heredoc (pkg/pod/script.go), as root (the controller's own config:
# "The shell image must allow root"). The node-profile loader runs its script
# with sh and chroot.
step "image shell" image shell busybox --cmd /bin/sh --user 0:0 --env PATH="$path"
# The CRI sandbox: anything that sleeps until killed (containerd stops a
# sandbox with SIGKILL).
step "image pause" image pause busybox --entrypoint '["/bin/sleep", "inf"]' --user 0:0 --env PATH="$path"

# The debug images' layout (distroless static/base :debug): busybox and its
# applets in /busybox only, /busybox last on PATH, no /bin/sh (the step
# scripts start #!/busybox/sh), root, a world-writable /tmp.
step "image syft" image syft debug --file bin/syft /syft 0755 \
	--entrypoint '["/syft"]' --user 0:0 --workingdir /tmp --env PATH="$debug_path" \
	--label "org.opencontainers.image.version=$syft_version"
step "image crane" image crane debug --file bin/crane /ko-app/crane 0755 \
	--entrypoint '["/ko-app/crane"]' --user 0:0 --env PATH="$debug_path:/ko-app" \
	--label "org.opencontainers.image.version=$crane_version"

t0=$SECONDS
for i in "${!archs[@]}"; do
	if ! wait "${rootfs_pids[i]}"; then
		cat "$work/mmdebstrap.${archs[i]}.log" >&2
		die "mmdebstrap for ${archs[i]} failed (its log is above)"
	fi
	grep '^rootfs: ' "$work/mmdebstrap.${archs[i]}.log" >&2
done
rootfs_pids=()
echo "the Debian root filesystems were ready $((SECONDS - t0))s after the rest" >&2

# Our buildah at /usr/bin/buildah, where Debian's package and the upstream image
# have it, on top of the Debian layer.
step "image buildah" image buildah buildah.tar --file bin/buildah /usr/bin/buildah 0755 \
	--cmd /bin/sh --user 0:0 --env PATH="$path" --env BUILDAH_ISOLATION=chroot \
	--label "org.opencontainers.image.version=$buildah_version"
# /git-sync on top of the Debian layer, as the real image adds its binary.
step "image git-sync" image git-sync git-sync.tar --file bin/git-sync /git-sync 0755 \
	--entrypoint '["/git-sync"]' --user 65533:65533 --workingdir /tmp \
	--env PATH="$path" --env HOME=/tmp --env GITSYNC_ROOT=/git

{
	echo "# Made by test/cluster/build-images.sh (Tekton $tekton_version, Debian $suite)."
	echo "# Each reference is an OCI image index of these platforms:"
	echo "PLATFORMS=$platforms"
	echo "ENTRYPOINT_IMAGE=$(ref entrypoint)"
	echo "NOP_IMAGE=$(ref nop)"
	echo "WORKINGDIRINIT_IMAGE=$(ref workingdirinit)"
	echo "SIDECARLOGRESULTS_IMAGE=$(ref sidecarlogresults)"
	echo "SHELL_IMAGE=$(ref shell)"
	echo "PAUSE_IMAGE=$(ref pause)"
	echo "BUILDAH_IMAGE=$(ref buildah)"
	echo "GITSYNC_IMAGE=$(ref git-sync)"
	echo "SYFT_IMAGE=$(ref syft)"
	echo "CRANE_IMAGE=$(ref crane)"
	# The node-profile loader's image (cluster.nodeProfileLoaderImage): the
	# shell image, busybox with sh and chroot, as the catalog's default.
	echo "NODE_PROFILE_LOADER_IMAGE=$(ref shell)"
	# The buildah image's buildah, for tests whose expectations depend on it
	# (the build step keeps buildah before 1.35 off the kernel's overlay).
	echo "BUILDAH_VERSION=${buildah_version#v}"
	echo "# Digests (archcheck): <VAR>_DIGEST is the index's, <VAR>_DIGEST_<ARCH> that platform's manifest's."
	cat "$work/digests.env"
} >"$tmp/images.env"

rm -rf "$work"
rm -rf "$dir"
chmod 755 "$tmp"
mv "$tmp" "$dir"
trap - EXIT
{
	echo "built all node images in $((SECONDS - total0))s into $dir:"
	(cd "$dir" && du -h ./*.tar)
} >&2
echo "$dir"
