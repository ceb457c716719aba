#!/bin/sh
# Install the build steps' node profiles on this node: the seccomp profile,
# into the kubelet's seccomp directory, and, when one is given, the AppArmor
# profile, loaded with the node's own apparmor_parser (through chroot, so
# parser, abstractions and kernel match). It runs once per node in the
# node-profile loader DaemonSet's init container: the one place that needs
# host access. Inputs from env:
#
#   SECCOMP_PROFILE   the seccomp profile's path under the kubelet's seccomp
#                     directory, as pods name it (localhostProfile), e.g.
#                     tekton-multiarch/buildah.json
#   SECCOMP_FILE      the seccomp profile, from the ConfigMap
#   SECCOMP_DIR       where the kubelet's seccomp directory is mounted
#   SECCOMP_NODE_DIR  that directory's path on the node, for messages only
#   APPARMOR_PROFILE  the AppArmor profile's name, as pods name it
#                     (localhostProfile); empty or unset: apparmor.mode none,
#                     nothing to load
#   APPARMOR_FILE     the AppArmor profile text, from the ConfigMap
#   HOST_ROOT         where the node's root filesystem is mounted (default /host)
set -eu

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

: "${SECCOMP_PROFILE:?SECCOMP_PROFILE must name the seccomp profile}"
: "${SECCOMP_FILE:?SECCOMP_FILE must name the seccomp profile file}"
: "${SECCOMP_DIR:?SECCOMP_DIR must name the kubelet seccomp directory}"
node_dir=${SECCOMP_NODE_DIR:-"the kubelet's seccomp directory"}
case "/$SECCOMP_PROFILE/" in
//* | */../* | */./*) die "SECCOMP_PROFILE '$SECCOMP_PROFILE' must be a relative path inside the kubelet's seccomp directory" ;;
esac
[ -f "$SECCOMP_FILE" ] || die "no seccomp profile at $SECCOMP_FILE"
[ -d "$SECCOMP_DIR" ] || die "the kubelet's seccomp directory ($node_dir) is not mounted at $SECCOMP_DIR"

# The runtime reads the profile at every container start: write it next to
# the target and rename, so that no build ever sees half a profile.
target=$SECCOMP_DIR/$SECCOMP_PROFILE
dir=${target%/*}
new=$dir/.${target##*/}.new
if ! { mkdir -p "$dir" && cp "$SECCOMP_FILE" "$new" && chmod 0644 "$new" && mv -f "$new" "$target"; }; then
	rm -f "$new"
	die "cannot write $node_dir/$SECCOMP_PROFILE (message above); on SELinux-enforcing nodes a container may need another SELinux type to write the kubelet's directory"
fi
cmp -s "$SECCOMP_FILE" "$target" || die "$node_dir/$SECCOMP_PROFILE differs from the profile just written"
echo "installed seccomp profile $SECCOMP_PROFILE in $node_dir"

if [ -z "${APPARMOR_PROFILE:-}" ]; then
	echo "AppArmor: not used (apparmor.mode: none), nothing to load"
	exit 0
fi
: "${APPARMOR_FILE:?APPARMOR_FILE must name the AppArmor profile text}"
host=${HOST_ROOT:-/host}
[ -f "$APPARMOR_FILE" ] || die "no AppArmor profile text at $APPARMOR_FILE"

enabled_file=$host/sys/module/apparmor/parameters/enabled
enabled=$(cat "$enabled_file" 2>/dev/null || echo missing)
if [ "$enabled" != Y ]; then
	# Not an error for the DaemonSet: crash-looping would not give the node
	# AppArmor, and the seccomp profile above is in place.
	if [ "$enabled" = missing ]; then
		why="this node's kernel has no AppArmor (no /sys/module/apparmor/parameters/enabled)"
	else
		why="AppArmor is disabled on this node (/sys/module/apparmor/parameters/enabled is $enabled)"
	fi
	# The architecture as the generator's configuration names it (Go's).
	machine=$(uname -m)
	case $machine in
	x86_64) arch=amd64 ;;
	aarch64 | arm64) arch=arm64 ;;
	armv7*) arch=arm-v7 ;;
	armv6*) arch=arm-v6 ;;
	i?86) arch=386 ;;
	*) arch=$machine ;;
	esac
	echo "AppArmor profile $APPARMOR_PROFILE not loaded: $why ($machine). The kubelet refuses build pods that ask for it here. For nodes without AppArmor (RHEL, Fedora, Bottlerocket, Raspberry Pi OS), set apparmor.architectures.$arch: none in the generator's configuration (or apparmor.mode: none where no node has AppArmor) and regenerate; the seccomp profile still confines the build."
	exit 0
fi

parser=
for p in /sbin/apparmor_parser /usr/sbin/apparmor_parser; do
	if [ -x "$host$p" ]; then
		parser=$p
		break
	fi
done
[ -n "$parser" ] || die "AppArmor is enabled but the node has no apparmor_parser: install the node's apparmor package"

# The profile includes local/$APPARMOR_PROFILE. buildah creates a user
# namespace; AppArmor 4 can mediate that (Ubuntu 24.04 restricts
# unprivileged user namespaces), and then a confined process needs
# `userns,`. AppArmor 3 parsers reject that rule outright, so it goes in
# only where the node's parser is 4 or newer and its kernel mediates user
# namespace creation.
major=$(chroot "$host" "$parser" --version | sed -n '1s/.*version \([0-9][0-9]*\).*/\1/p')
aa=$host/etc/apparmor.d
mkdir -p "$aa/local"
{
	echo "# Written by the tekton-multiarch node-profile-loader; rewritten on every load."
	if [ "${major:-0}" -ge 4 ] && [ -e "$host/sys/kernel/security/apparmor/features/namespaces/userns_create" ]; then
		echo "userns,"
		echo "AppArmor $major mediates user namespaces here: allowing userns for $APPARMOR_PROFILE" >&2
	fi
} >"$aa/local/.$APPARMOR_PROFILE.new"
mv "$aa/local/.$APPARMOR_PROFILE.new" "$aa/local/$APPARMOR_PROFILE"

# Write next to the target and rename, so a half-written profile never
# lands where the boot-time AppArmor service would read it.
cp "$APPARMOR_FILE" "$aa/.$APPARMOR_PROFILE.new"
mv "$aa/.$APPARMOR_PROFILE.new" "$aa/$APPARMOR_PROFILE"
chroot "$host" "$parser" --replace "/etc/apparmor.d/$APPARMOR_PROFILE" ||
	die "the node's apparmor_parser refused /etc/apparmor.d/$APPARMOR_PROFILE (its message is above)"

if ! grep -q "^$APPARMOR_PROFILE (" "$host/sys/kernel/security/apparmor/profiles"; then
	die "apparmor_parser succeeded but $APPARMOR_PROFILE is not among the loaded profiles"
fi
echo "loaded AppArmor profile $APPARMOR_PROFILE ($(grep "^$APPARMOR_PROFILE (" "$host/sys/kernel/security/apparmor/profiles"))"
