#!/usr/bin/env bash
# Builds the cluster test's arm64 node: what qemu-system-aarch64 (TCG, full-system
# emulation: this machine is x86_64 and has no KVM for arm64) boots to make a real
# Kubernetes node of architecture arm64, into
# ${TEKTON_MULTIARCH_CACHE:-~/.cache/tekton-multiarch}/arm64-node/<key>/:
#
#   Image          Debian bookworm's arm64 kernel (linux-image-6.1.0-*-arm64): an
#                  uncompressed Image, AppArmor built in and the default LSM
#   initrd.gz      busybox (Debian's arm64 busybox-static), the kernel modules the
#                  node needs (virtio, ext4, overlay, bridge, veth, ...; the closure
#                  of their .modinfo depends=, in dependency order: the package has
#                  no modules.dep) and /init, which loads them, mounts the root disk
#                  and switches to it
#   rootfs.img     a raw ext4 image (mkfs.ext4 -d; no journal: QEMU attaches it with
#                  snapshot=on, so it is never written) of Debian's arm64 containerd
#                  1.6, runc 1.1, containernetworking-plugins, apparmor
#                  (apparmor_parser), busybox-static and their dependencies
#                  (mmdebstrap --variant=extract: nothing runs at build time, so no
#                  binfmt is needed), the kubelet and /sbin/node-init, which brings
#                  the node up (below)
#   images/        pause.tar: a busybox image (`sleep inf`) as an OCI index of
#                  linux/arm64 and linux/amd64, the CRI sandbox image and the shell
#                  of a trivial pod; images.env (PAUSE_IMAGE=, SHELL_IMAGE=): a
#                  starting set for the node until build-images.sh makes the
#                  catalog's images for arm64
#   kubelet        the kubelet v1.35.4, cross-compiled (GOARCH=arm64 CGO_ENABLED=0)
#                  from tools/kubernetes with build-tools.sh's version stamp (in the
#                  root file system too, with the fuse device plugin, built alike)
#   packages       the Debian packages (arm64) in the root filesystem and initrd
#
# node-init (PID 1 after switch_root) mounts proc, sys, securityfs (AppArmor's
# interface, where apparmor_parser loads profiles), cgroup2 (unified), devpts, a
# tmpfs on /run; loads no module (the initrd did); configures eth0 as
# 10.89.0.2/24 via 10.89.0.1 (the test's bridge, or ARM64_NODE_IP and
# ARM64_NODE_GATEWAY from the config disk); mounts the second disk (the test's
# config: config.env, containerd.toml, kubelet.yaml, kubelet.kubeconfig, CNI
# config, seccomp profiles, images/*.tar) read-only at /config; starts containerd,
# imports each image archive's linux/arm64 content into its k8s.io namespace
# without unpacking it (containerd's CRI unpacks an image when a container first
# needs it; under emulation unpacking is the expensive part), then the kubelet, both
# with GOMAXPROCS=1 (GC-heavy Go ran 37% faster so under TCG) and their logs on
# virtio console ports named containerd and kubelet (the test gives QEMU a file
# for each); powers the machine off when the kubelet exits.
#
#   build-arm64-node.sh          build if needed; print the directory on stdout
#   build-arm64-node.sh --dir    print the directory for the current key; build nothing
#
# The key hashes this script (with the guest's scripts in it), tools/kubernetes'
# go.mod, go.sum and tools.go, the Go version, the apt sources, and the candidate
# versions of the same Debian packages for this machine's architecture in its apt
# lists (arm64 lists are only fetched when building; a bookworm package's version
# is the same for both architectures but for binary rebuilds, +bN). An existing
# directory for the current key is reused as is.
#
# Needs root (mmdebstrap and buildah write root-owned files), Go, and apt-get
# install -y mmdebstrap buildah busybox-static e2fsprogs cpio. Running the node
# needs qemu-system-arm (qemu-system-aarch64). Measured: see test/cluster/README.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tools=$here/tools
cache=${TEKTON_MULTIARCH_CACHE:-$HOME/.cache/tekton-multiarch}
suite=bookworm
apt_sources=${TEKTON_MULTIARCH_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
[ -f "$apt_sources" ] || apt_sources=/etc/apt/sources.list
k8s_version=v1.35.4
recipe="recipe=1 suite=$suite k8s=$k8s_version"

# The root filesystem's packages (and their dependencies). iptables comes with
# containernetworking-plugins; nothing here uses it (no masquerade: the test
# routes the pods' subnet to the node instead).
rootfs_debs=(containerd runc containernetworking-plugins apparmor busybox-static)
# The modules /init loads, with what they depend on. crc32c_generic: ext4 asks
# the crypto API for crc32c, which no depends= names.
modules=(virtio_pci virtio_blk virtio_net virtio_console virtio_rng crc32c_generic ext4 overlay bridge veth fuse)

die() {
	echo "build-arm64-node.sh: $*" >&2
	exit 1
}

host_versions() {
	apt-cache policy "$@" 2>/dev/null | awk '/^[^ ]/ { p = $1 } $1 == "Candidate:" { print p, $2 }'
}

key=$(
	{
		echo "$recipe"
		go version
		host_versions linux-image-amd64 "${rootfs_debs[@]}"
		cat "$apt_sources"
		cat "$0"
		cat "$tools/kubernetes/go.mod" "$tools/kubernetes/go.sum" "$tools/kubernetes/tools.go"
	} | sha256sum | cut -c1-16
)
dir=$cache/arm64-node/$key

if [ "${1:-}" = "--dir" ]; then
	echo "$dir"
	exit 0
fi

complete() {
	for f in Image initrd.gz rootfs.img kubelet images/pause.tar images/images.env packages; do
		[ -s "$dir/$f" ] || return 1
	done
}
if complete; then
	echo "arm64 node is up to date in $dir" >&2
	echo "$dir"
	exit 0
fi

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap and buildah write root-owned files)"
for c in go mmdebstrap buildah apt-get dpkg-deb mkfs.ext4 cpio gzip sha256sum; do
	command -v "$c" >/dev/null || die "$c is missing (apt-get install -y mmdebstrap buildah e2fsprogs cpio, and Go)"
done
[ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install -y busybox-static): its applet list names the image's links"

# shellcheck source=steps.sh source-path=SCRIPTDIR
. "$here/steps.sh"

mkdir -p "$cache/arm64-node"
tmp=$(mktemp -d "$cache/arm64-node/.build-$key.XXXXXX")
work=$tmp/work
mkdir -p "$work" "$tmp/images"
bah() {
	buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"
}
kubelet_pid=
cleanup() {
	if [ -n "$kubelet_pid" ]; then
		pkill -TERM -P "$kubelet_pid" 2>/dev/null || true
		kill "$kubelet_pid" 2>/dev/null || true
		wait "$kubelet_pid" 2>/dev/null || true
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
total0=$SECONDS

# The kubelet, cross-compiled in the background while apt and mmdebstrap work.
pkg=k8s.io/component-base/version
minor=${k8s_version#v1.}
minor=${minor%%.*}
ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
(
	cd "$tools/kubernetes"
	step "kubelet (linux/arm64)" env GOOS=linux GOARCH=arm64 CGO_ENABLED=0 \
		go build -trimpath -ldflags="$ldflags" -o "$tmp/kubelet" k8s.io/kubernetes/cmd/kubelet
	step "fuse-device-plugin (linux/arm64)" env GOOS=linux GOARCH=arm64 CGO_ENABLED=0 \
		go build -trimpath -ldflags="-s -w" -o "$tmp/fuse-device-plugin" ./fuse-device-plugin
) &
kubelet_pid=$!

# arm64 packages without touching this machine's dpkg architectures: apt with a
# configuration, state and cache of its own (its lists kept between builds).
aptdir=$cache/arm64-node/.apt
mkdir -p "$aptdir/lists/partial" "$aptdir/archives/partial" "$aptdir/etc/apt.conf.d" "$aptdir/etc/preferences.d"
touch "$aptdir/status"
cat >"$aptdir/apt.conf" <<EOF
APT::Sandbox::User "root";
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Dir::State "$aptdir";
Dir::State::Lists "$aptdir/lists";
Dir::State::status "$aptdir/status";
Dir::Cache "$aptdir";
Dir::Cache::archives "$aptdir/archives";
Dir::Etc::SourceList "$apt_sources";
Dir::Etc::SourceParts "/nonexistent";
Dir::Etc::Parts "$aptdir/etc/apt.conf.d";
Dir::Etc::Preferences "$aptdir/etc/preferences";
Dir::Etc::PreferencesParts "$aptdir/etc/preferences.d";
EOF
# Two builds at once (two checkouts) share these lists: apt refuses a held lock,
# so each apt call waits for the other's.
apt64() { APT_CONFIG=$aptdir/apt.conf flock "$aptdir/.build-lock" "$@"; }
step "arm64 apt lists" apt64 apt-get update -qq
kernel_pkg=$(apt64 apt-cache depends linux-image-arm64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
[ -n "$kernel_pkg" ] || die "no kernel package behind linux-image-arm64"
mkdir -p "$work/debs"
(cd "$work/debs" && apt64 apt-get download -qq "$kernel_pkg" busybox-static)
for p in "$kernel_pkg" busybox-static; do
	ls "$work/debs/${p}"_*_arm64.deb >/dev/null 2>&1 || die "apt-get download $p (arm64) failed"
done
dpkg-deb -x "$work"/debs/"$kernel_pkg"_*_arm64.deb "$work/kernel"
dpkg-deb -x "$work"/debs/busybox-static_*_arm64.deb "$work/busybox"
# shellcheck disable=SC2016 # dpkg-deb expands these
for d in "$work"/debs/*.deb; do dpkg-deb --show --showformat='${Package} ${Version}\n' "$d"; done >"$tmp/packages"
cp "$work"/kernel/boot/vmlinuz-* "$tmp/Image"

# The modules, dependencies first (a depth-first walk of .modinfo's depends=).
moddir=$(echo "$work"/kernel/lib/modules/*)
declare -A modpath=() seen=()
while IFS= read -r f; do
	n=$(basename "$f" .ko)
	modpath[${n//-/_}]=$f
done < <(find "$moddir/kernel" -name '*.ko')
order=()
visit() {
	local m=${1//-/_} d
	[ -n "${seen[$m]:-}" ] && return 0
	seen[$m]=1
	[ -n "${modpath[$m]:-}" ] || die "module $m not in $moddir (built in? then leave it out)"
	for d in $(tr '\0' '\n' <"${modpath[$m]}" | sed -n 's/^depends=//p' | head -1 | tr ',' ' '); do
		visit "$d"
	done
	order+=("$m")
}
for m in "${modules[@]}"; do visit "$m"; done
mkdir -p "$work/initrd/bin" "$work/initrd/lib/modules" "$work/initrd/proc" "$work/initrd/sys" "$work/initrd/dev" "$work/initrd/newroot"
for m in "${order[@]}"; do cp "${modpath[$m]}" "$work/initrd/lib/modules/$m.ko"; done
printf '%s\n' "${order[@]}" >"$work/initrd/modules"
install -m 0755 "$work/busybox/bin/busybox" "$work/initrd/bin/busybox"
cat >"$work/initrd/init" <<'EOF'
#!/bin/busybox sh
# The initrd's init: load the modules, mount the root disk (vda), switch to it.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
t0=$(cut -d' ' -f1 /proc/uptime)
for m in $(cat /modules); do
	insmod "/lib/modules/$m.ko" || echo "init: insmod $m failed"
done
echo "init: $(wc -l </modules) modules loaded in $t0..$(cut -d' ' -f1 /proc/uptime) s since boot"
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
# noinit_itable: mkfs left the inode tables to the kernel's lazy init, which
# would write all of them, under emulation, into QEMU's snapshot.
if ! mount -t ext4 -o noinit_itable /dev/vda /newroot || [ ! -x /newroot/sbin/node-init ]; then
	echo "init: no root file system with /sbin/node-init on /dev/vda"
	poweroff -f
fi
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/node-init
EOF
chmod 0755 "$work/initrd/init"
(cd "$work/initrd" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -1 >"$tmp/initrd.gz")
echo "initrd: ${#order[@]} modules (${order[*]})" >&2

# The root file system.
step "arm64 root file system (mmdebstrap --variant=extract)" mmdebstrap --quiet --variant=extract --architectures=arm64 \
	--include="$(
		IFS=,
		echo "${rootfs_debs[*]}"
	)" \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--extract-hook="for d in \"\$1\"/var/cache/apt/archives/*.deb; do dpkg-deb --show --showformat='\${Package} \${Version}\\n' \"\$d\"; done >>'$tmp/packages'" \
	--format=directory "$suite" "$work/rootfs" "$apt_sources"
root=$work/rootfs
grep -q '^containerd ' "$tmp/packages" || die "mmdebstrap left no package list (the extract hook found no .deb)"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
mkdir -p "$root/proc" "$root/sys" "$root/dev" "$root/run" "$root/tmp" "$root/config" "$root/var/lib/kubelet" \
	"$root/var/log" "$root/etc/cni/net.d" "$root/usr/local/busybox" "$root/usr/local/bin" "$root/root"
chmod 1777 "$root/tmp"
echo arm64-node >"$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
# The kubelet reads /etc/passwd and /etc/group at start (its user namespace
# mappings look for a user "kubelet"), and fails without them.
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
: >"$root/etc/resolv.conf"
[ -e "$root/etc/os-release" ] || [ -e "$root/usr/lib/os-release" ] ||
	printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm), tekton-multiarch arm64 test node"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n' >"$root/etc/os-release"
echo "$key$key" >"$root/etc/machine-id"
cat >"$root/sbin/node-init" <<'EOF'
#!/bin/busybox sh
# PID 1 of the arm64 node (see build-arm64-node.sh).
/bin/busybox --install -s /usr/local/busybox
# Debian's binaries first, busybox's applets for what Debian's packages lack
# (mount, ip, ...): the kubelet runs `mount` to mount its tmpfs volumes.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/busybox
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t securityfs securityfs /sys/kernel/security
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -o remount,rw /
log() { echo "node-init: $* ($(cut -d' ' -f1 /proc/uptime) s)"; }
log "root file system mounted; AppArmor enabled: $(cat /sys/module/apparmor/parameters/enabled 2>&1)"
mount -t ext4 -o ro /dev/vdb /config || { log "no config disk"; poweroff -f; }
# shellcheck disable=SC1091
. /config/config.env
ip link set lo up
ip addr add "${ARM64_NODE_IP:-10.89.0.2}/24" dev eth0
ip link set eth0 up
ip route add default via "${ARM64_NODE_GATEWAY:-10.89.0.1}"
echo 1 >/proc/sys/net/ipv4/ip_forward
hostname "${ARM64_NODE_NAME:-arm64-node}"
cp /config/containerd.toml /etc/containerd/config.toml
cp /config/cni/* /etc/cni/net.d/
mkdir -p /var/lib/kubelet/seccomp
cp -r /config/seccomp/. /var/lib/kubelet/seccomp/ 2>/dev/null
port() {
	for p in /sys/class/virtio-ports/*; do
		[ "$(cat "$p/name" 2>/dev/null)" = "$1" ] && { echo "/dev/$(basename "$p")"; return; }
	done
	echo /dev/console
}
GOMAXPROCS=1 containerd --config /etc/containerd/config.toml >"$(port containerd)" 2>&1 &
i=0
until ctr version >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 600 ] || { log "containerd did not answer"; poweroff -f; }
	sleep 0.5
done
log "containerd answers"
# The arm64 content only (an archive may hold an index of several
# platforms), and not unpacked: under emulation unpacking (gunzip) is the
# expensive part, about 2 min for a 60 MB image with the machine loaded, and
# containerd's CRI unpacks an image when a container first needs it.
for a in /config/images/*.tar; do
	[ -e "$a" ] || continue
	if ctr -n k8s.io images import --platform linux/arm64 --no-unpack "$a" >/dev/null; then
		log "imported $(basename "$a")"
	else
		log "ctr images import $a failed"
	fi
done
log "starting the kubelet"
# shellcheck disable=SC2086
GOMAXPROCS=1 kubelet --config=/config/kubelet.yaml --kubeconfig=/config/kubelet.kubeconfig \
	$KUBELET_ARGS >"$(port kubelet)" 2>&1 &
kubelet=$!
# The catalog's builds ask for /dev/fuse through this extended resource (the
# amd64 node's device plugin, built for arm64).
if [ -n "${FUSE_RESOURCE:-}" ]; then
	GOMAXPROCS=1 fuse-device-plugin -resource="$FUSE_RESOURCE" -count=100 &
fi
wait $kubelet
log "kubelet exited ($?); powering off"
sync
poweroff -f
EOF
chmod 0755 "$root/sbin/node-init"
wait "$kubelet_pid" || die "building the kubelet for arm64 failed"
kubelet_pid=
install -m 0755 "$tmp/kubelet" "$root/usr/local/bin/kubelet"
install -m 0755 "$tmp/fuse-device-plugin" "$root/usr/local/bin/fuse-device-plugin"
rm "$tmp/fuse-device-plugin"
# Room for the images and the pods: the file is sparse; snapshot=on keeps
# every write in QEMU's temporary overlay anyway.
step "rootfs.img" mkfs.ext4 -q -O ^has_journal -L arm64root -d "$root" "$tmp/rootfs.img" 8G

# The starting image set: busybox with a link per applet in /bin (names from
# this machine's busybox-static, the same version), `sleep inf`, as one
# reference to an OCI index of linux/arm64 (Debian's arm64 busybox-static) and
# linux/amd64 (this machine's): the form build-images.sh's images take for
# both nodes, which the node imports with --platform linux/arm64.
ref=localhost/tekton-multiarch-test/busybox:$key
bah manifest create "$ref" >/dev/null
for arch in arm64 amd64; do
	case $arch in
	arm64) bb=$work/busybox/bin/busybox ;;
	amd64) bb=/bin/busybox ;;
	esac
	mkdir -p "$work/image-$arch/bin" "$work/image-$arch/tmp"
	chmod 1777 "$work/image-$arch/tmp"
	install -m 0755 "$bb" "$work/image-$arch/bin/busybox"
	for a in $(/bin/busybox --list); do
		[ "$a" = busybox ] || ln -s busybox "$work/image-$arch/bin/$a"
	done
	c=$(bah from --quiet --arch "$arch" --os linux scratch)
	bah add --quiet "$c" "$work/image-$arch/" /
	bah config --os linux --arch "$arch" --created-by test/cluster/build-arm64-node.sh \
		--entrypoint '["/bin/sleep", "inf"]' --user 0:0 --env PATH=/bin "$c"
	bah commit --quiet --rm "$c" "$ref-$arch" >/dev/null
	bah manifest add "$ref" "containers-storage:$ref-$arch" >/dev/null
done
bah manifest push --quiet --all "$ref" "oci-archive:$tmp/images/pause.tar:$ref"
printf 'PAUSE_IMAGE=%s\nSHELL_IMAGE=%s\n' "$ref" "$ref" >"$tmp/images/images.env"

rm -rf "$work"
rm -rf "$dir"
chmod 755 "$tmp"
mv "$tmp" "$dir"
trap - EXIT
echo "built the arm64 node in $((SECONDS - total0))s into $dir" >&2
echo "$dir"
