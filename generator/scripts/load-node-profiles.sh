#!/bin/sh
# Install an AppArmor profile on this node and load it with the node's own
# apparmor_parser (through chroot, so parser, abstractions and kernel match).
# It runs once per node in the loader DaemonSet's init container: the one
# place that needs host access (CAP_MAC_ADMIN, CAP_SYS_CHROOT, the node's root
# filesystem read-only and its /etc/apparmor.d writable). Inputs from env:
#
#   PROFILE_NAME  the profile's name, as pods name it (localhostProfile)
#   PROFILE_FILE  the profile text, from the ConfigMap
#   HOST_ROOT     where the node's root filesystem is mounted (default /host)
set -eu

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

: "${PROFILE_NAME:?PROFILE_NAME must name the profile}"
: "${PROFILE_FILE:?PROFILE_FILE must name the profile text}"
host=${HOST_ROOT:-/host}
[ -f "$PROFILE_FILE" ] || die "no profile text at $PROFILE_FILE"

enabled=$(cat "$host/sys/module/apparmor/parameters/enabled" 2>/dev/null || echo N)
if [ "$enabled" != Y ]; then
	# Not an error for the DaemonSet: the node simply cannot confine anything.
	echo "AppArmor is not enabled on this node ($(uname -m)): nothing loaded."
	echo "The kubelet refuses pods that ask for Localhost profile $PROFILE_NAME here; enable AppArmor in the node's kernel (Raspberry Pi OS kernels lack it, Ubuntu's have it)."
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

# The profile includes local/$PROFILE_NAME. buildah creates a user
# namespace; AppArmor 4 can mediate that (Ubuntu 24.04 restricts unprivileged
# user namespaces), and then a confined process needs `userns,`. AppArmor 3
# parsers reject that rule outright, so it goes in only where the node's
# parser is 4 or newer and its kernel mediates user namespace creation.
major=$(chroot "$host" "$parser" --version | sed -n '1s/.*version \([0-9][0-9]*\).*/\1/p')
dir=$host/etc/apparmor.d
mkdir -p "$dir/local"
{
	echo "# Written by the tekton-multiarch apparmor-loader; rewritten on every load."
	if [ "${major:-0}" -ge 4 ] && [ -e "$host/sys/kernel/security/apparmor/features/namespaces/userns_create" ]; then
		echo "userns,"
		echo "AppArmor $major mediates user namespaces here: allowing userns for $PROFILE_NAME" >&2
	fi
} >"$dir/local/.$PROFILE_NAME.new"
mv "$dir/local/.$PROFILE_NAME.new" "$dir/local/$PROFILE_NAME"

# Write next to the target and rename, so a half-written profile never
# lands where the boot-time AppArmor service would read it.
cp "$PROFILE_FILE" "$dir/.$PROFILE_NAME.new"
mv "$dir/.$PROFILE_NAME.new" "$dir/$PROFILE_NAME"
chroot "$host" "$parser" --replace "/etc/apparmor.d/$PROFILE_NAME" ||
	die "the node's apparmor_parser refused /etc/apparmor.d/$PROFILE_NAME (its message is above)"

if ! grep -q "^$PROFILE_NAME (" "$host/sys/kernel/security/apparmor/profiles"; then
	die "apparmor_parser succeeded but $PROFILE_NAME is not among the loaded profiles"
fi
echo "loaded AppArmor profile $PROFILE_NAME ($(grep "^$PROFILE_NAME (" "$host/sys/kernel/security/apparmor/profiles"))"
