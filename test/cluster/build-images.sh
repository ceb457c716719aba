#!/usr/bin/env bash
# Builds the container images a real node of the cluster test runs, here, without
# pulling anything: nothing may come from a public registry. Each image is an OCI
# archive <name>.tar whose reference `ctr -n k8s.io images import` registers:
#
#   entrypoint, nop, workingdirinit, sidecarlogresults
#           Tekton's own images, from the Tekton Pipelines version
#           tools/tekton/go.mod pins, each a static binary at /ko-app/<name> (the
#           path Tekton's pod builder runs, as ko lays out Tekton's release images)
#   shell   busybox (Debian's busybox-static, a link per applet): the controller's
#           -shell-image, whose `sh -c` writes the step scripts
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
# into ${TEKTON_MULTIARCH_CACHE:-~/.cache/tekton-multiarch}/node-images/<key>/, with
# images.env (ENTRYPOINT_IMAGE=<ref> ... GITSYNC_IMAGE=<ref>, shell-sourceable) and
# <image>.packages (the Debian packages in the mmdebstrap images). The key hashes
# everything that goes in: this script, the Go modules and sources, the Debian
# package versions apt would install (from this machine's apt lists: run apt-get
# update to see newer ones), the apt sources, and the tool versions. Every ref is
# localhost/tekton-multiarch-test/<name>:<key>. An existing directory for the
# current key is reused as is.
#
#   build-images.sh          build if needed; print the image directory on stdout
#   build-images.sh --dir    print the directory for the current key; build nothing
#
# Needs root, Go with cgo, and apt-get install -y buildah mmdebstrap busybox-static
# gcc libc6-dev libseccomp-dev. Packages
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
recipe="recipe=1 suite=$suite"

die() {
	echo "build-images.sh: $*" >&2
	exit 1
}
for c in go buildah mmdebstrap apt-cache dpkg-query sha256sum; do
	command -v "$c" >/dev/null || die "$c is missing (apt-get install -y buildah mmdebstrap, and Go)"
done
busybox=/bin/busybox
for h in gcc libc6-dev libseccomp-dev; do
	dpkg-query -W "$h" >/dev/null 2>&1 || die "$h is missing (buildah is built with cgo): apt-get install -y gcc libc6-dev libseccomp-dev"
done
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
		dpkg-query -W mmdebstrap busybox-static gcc libc6-dev libseccomp-dev
		debian_versions "${buildah_debs[@]}" "${gitsync_debs[@]}"
		cat "$apt_sources"
		cat "$0"
		cat "$tools/tekton/go.mod" "$tools/tekton/go.sum" "$tools/buildah/go.mod" "$tools/buildah/go.sum"
		cat "$tools/sbom/go.mod" "$tools/sbom/go.sum" "$tools/sbom/tools.go"
		cat "$repo/go.mod" "$repo/go.sum"
		find "$repo/test/gitsync" -name '*.go' ! -name '*_test.go' | LC_ALL=C sort | xargs cat
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
goarch=$(go env GOARCH)

# Build into a scratch directory and rename it at the end, so an interrupted build
# never leaves a directory that looks complete.
mkdir -p "$cache/node-images"
tmp=$(mktemp -d "$cache/node-images/.build-$key.XXXXXX")
work=$tmp/work
mkdir -p "$work/bin"

# buildah on a private vfs store under $work: vfs mounts nothing, so removing the
# directory removes every container and image this script made.
bah() {
	buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"
}
debootstrap_pid=
cleanup() {
	if [ -n "$debootstrap_pid" ]; then
		# mmdebstrap (a child of the background subshell) unmounts and removes
		# its own temporary chroot on SIGTERM.
		pkill -TERM -P "$debootstrap_pid" 2>/dev/null || true
		kill "$debootstrap_pid" 2>/dev/null || true
		wait "$debootstrap_pid" 2>/dev/null || true
	fi
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
# image of ROOTFS (a tar file, which buildah add unpacks as it is, owners and
# modes included, or a directory), SRC files on top, and the given config,
# written to $tmp/NAME.tar under its ref.
image() {
	local name=$1 rootfs=$2
	shift 2
	local c r
	r=$(ref "$name")
	c=$(bah from --quiet scratch)
	if [ -d "$rootfs" ]; then
		bah add --quiet "$c" "$rootfs/" /
	else
		bah add --quiet "$c" "$rootfs" /
	fi
	while [ "${1:-}" = --file ]; do
		bah copy --quiet --chmod "$4" "$c" "$2" "$3"
		shift 4
	done
	bah config --os linux --arch "$goarch" --created-by test/cluster/build-images.sh "$@" "$c"
	bah commit --quiet --rm "$c" "$r" >/dev/null
	bah push --quiet "$r" "oci-archive:$tmp/$name.tar:$r"
	bah rmi "$r" >/dev/null
}

# rootfs NAME VARIANT PACKAGES... [-- HOOK...]: a Debian $suite root filesystem
# from this machine's apt sources, as a tar at $work/NAME.tar, its package list
# at $tmp/NAME.packages. Documentation, man pages and locales are left out; the
# device nodes mmdebstrap puts in /dev are removed (the runtime mounts /dev), and
# so are the build machine's resolv.conf and hostname. mmdebstrap runs each hook
# under sh with the chroot directory as $1, hence the single quotes.
# shellcheck disable=SC2016
rootfs() {
	local name=$1 variant=$2
	shift 2
	local include=() hooks=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		include+=("$1")
		shift
	done
	[ $# -eq 0 ] || shift
	for h in "$@"; do hooks+=(--customize-hook="$h"); done
	local IFS=,
	# The system PATH: mmdebstrap's filter (mmtarfilter) runs `env python3`, and
	# must get Debian's python3, not whichever a user's PATH puts first.
	PATH=/usr/sbin:/usr/bin:/sbin:/bin mmdebstrap --variant="$variant" --include="${include[*]}" \
		--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--customize-hook='truncate -s 0 "$1/etc/resolv.conf" "$1/etc/hostname" && chmod 0644 "$1/etc/resolv.conf" "$1/etc/hostname"' \
		"${hooks[@]}" \
		--customize-hook="dpkg-query --admindir=\"\$1/var/lib/dpkg\" -W >'$tmp/$name.packages'" \
		--format=tar "$suite" "$work/$name.tar" "$apt_sources"
	tar --delete --wildcards -f "$work/$name.tar" './dev/?*'
}

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
	rootfs buildah apt "${buildah_debs[@]}"
	# The git-sync image, as the real git-sync v4 image is made: a user and group
	# 65533 named git-sync in /etc/passwd and /etc/group (ssh refuses to run for a
	# UID with no passwd entry), home /tmp, and /git (its default --root) owned by
	# them, setgid and group-writable.
	rootfs git-sync essential "${gitsync_debs[@]}" -- \
		'echo "git-sync:x:65533:65533::/tmp:/sbin/nologin" >>"$1/etc/passwd"' \
		'echo "git-sync:x:65533:git-sync" >>"$1/etc/group"' \
		'mkdir -m 02775 "$1/git" && chown 65533:65533 "$1/git"'
}

total0=$SECONDS
# mmdebstrap waits on the network and dpkg while Go compiles: run it alongside.
echo "building the Debian root filesystems (mmdebstrap, in the background; log in $work/mmdebstrap.log) ..." >&2
debian_rootfses >"$work/mmdebstrap.log" 2>&1 &
debootstrap_pid=$!

step "Tekton $tekton_version entrypoint, nop, workingdirinit, sidecarlogresults" \
	bash -c "cd '$tools/tekton' && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o '$work/bin/' \
		github.com/tektoncd/pipeline/cmd/entrypoint github.com/tektoncd/pipeline/cmd/nop \
		github.com/tektoncd/pipeline/cmd/workingdirinit github.com/tektoncd/pipeline/cmd/sidecarlogresults"
step "buildah $buildah_version (cgo, tags: $buildah_tags)" \
	bash -c "cd '$tools/buildah' && CGO_ENABLED=1 go build -trimpath -ldflags='-s -w' -tags '$buildah_tags' \
		-o '$work/bin/buildah' github.com/containers/buildah/cmd/buildah"
# syft and crane from one wrapper module: crane's packages are syft's own
# dependency, so crane costs a link. Version stamps as their releases set them.
step "syft $syft_version and crane $crane_version" \
	bash -c "cd '$tools/sbom' && CGO_ENABLED=0 go build -trimpath -o '$work/bin/' \
		-ldflags='-s -w -X main.version=${syft_version#v} -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$crane_version' \
		github.com/anchore/syft/cmd/syft github.com/google/go-containerregistry/cmd/crane"
step "the git-sync stand-in" \
	bash -c "cd '$repo' && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o '$work/bin/git-sync' ./test/gitsync/cmd/git-sync"

# Tekton's images, laid out as ko lays out its release images: the binary at
# /ko-app/<name>, which is what the pod builder runs (pkg/pod/pod.go: the prepare
# init container `/ko-app/entrypoint init /ko-app/entrypoint /tekton/bin/entrypoint
# <steps>`, the results sidecar `/ko-app/sidecarlogresults`;
# pkg/pod/workingdir_init.go: `/ko-app/workingdirinit`), and the entrypoint (nop
# runs as the affinity assistant with only args, and replaces a sidecar's image
# to stop it). Tekton's base image runs as the distroless nonroot user,
# 65532:65532.
for b in entrypoint nop workingdirinit sidecarlogresults; do
	mkdir -p "$work/ko-$b/ko-app"
	install -m 0755 "$work/bin/$b" "$work/ko-$b/ko-app/$b"
	step "image $b" image "$b" "$work/ko-$b" \
		--entrypoint "[\"/ko-app/$b\"]" --user 65532:65532 \
		--env PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/ko-app \
		--label "org.opencontainers.image.version=$tekton_version"
done

# busybox with a link per applet in /bin. Tekton's place-scripts init container
# runs `sh -c` with touch, chmod, cat and a heredoc (pkg/pod/script.go), as root
# (the controller's own config: "The shell image must allow root").
mkdir -p "$work/busybox/bin" "$work/busybox/tmp"
chmod 1777 "$work/busybox/tmp"
install -m 0755 "$busybox" "$work/busybox/bin/busybox"
for a in $("$busybox" --list); do
	[ "$a" = busybox ] || ln -s busybox "$work/busybox/bin/$a"
done
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
step "image shell" image shell "$work/busybox" --cmd /bin/sh --user 0:0 --env PATH="$path"
# The CRI sandbox: anything that sleeps until killed (containerd stops a
# sandbox with SIGKILL).
step "image pause" image pause "$work/busybox" --entrypoint '["/bin/sleep", "inf"]' --user 0:0 --env PATH="$path"

# The debug images' layout (distroless static/base :debug): busybox and its
# applets in /busybox only, /busybox last on PATH, no /bin/sh (the step
# scripts start #!/busybox/sh), root, a world-writable /tmp.
debug_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/busybox
mkdir -p "$work/debug/busybox" "$work/debug/tmp"
chmod 1777 "$work/debug/tmp"
install -m 0755 "$busybox" "$work/debug/busybox/busybox"
for a in $("$busybox" --list); do
	[ "$a" = busybox ] || ln -s busybox "$work/debug/busybox/$a"
done
step "image syft" image syft "$work/debug" --file "$work/bin/syft" /syft 0755 \
	--entrypoint '["/syft"]' --user 0:0 --workingdir /tmp --env PATH="$debug_path" \
	--label "org.opencontainers.image.version=$syft_version"
mkdir -p "$work/debug/ko-app"
step "image crane" image crane "$work/debug" --file "$work/bin/crane" /ko-app/crane 0755 \
	--entrypoint '["/ko-app/crane"]' --user 0:0 --env PATH="$debug_path:/ko-app" \
	--label "org.opencontainers.image.version=$crane_version"

t0=$SECONDS
if ! wait "$debootstrap_pid"; then
	debootstrap_pid=
	cat "$work/mmdebstrap.log" >&2
	die "mmdebstrap failed (its log is above)"
fi
debootstrap_pid=
echo "the Debian root filesystems were ready $((SECONDS - t0))s after the rest ($(grep -c 'I: success' "$work/mmdebstrap.log") mmdebstrap runs)" >&2

# Our buildah at /usr/bin/buildah, where Debian's package and the upstream image
# have it, on top of the Debian layer.
step "image buildah" image buildah "$work/buildah.tar" --file "$work/bin/buildah" /usr/bin/buildah 0755 \
	--cmd /bin/sh --user 0:0 --env PATH="$path" --env BUILDAH_ISOLATION=chroot \
	--label "org.opencontainers.image.version=$buildah_version"
# /git-sync on top of the Debian layer, as the real image adds its binary.
step "image git-sync" image git-sync "$work/git-sync.tar" --file "$work/bin/git-sync" /git-sync 0755 \
	--entrypoint '["/git-sync"]' --user 65533:65533 --workingdir /tmp \
	--env PATH="$path" --env HOME=/tmp --env GITSYNC_ROOT=/git

{
	echo "# Made by test/cluster/build-images.sh (Tekton $tekton_version, Debian $suite)."
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
	# The buildah image's buildah, for tests whose expectations depend on it
	# (the build step keeps buildah before 1.35 off the kernel's overlay).
	echo "BUILDAH_VERSION=${buildah_version#v}"
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
