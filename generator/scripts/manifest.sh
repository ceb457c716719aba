#!/bin/sh
# Assemble the per-architecture images, by digest, into one multi-arch index,
# push it, then read the pushed index back from the registry and fail unless
# it holds exactly the expected platforms with the expected digests. Every
# input comes from the environment: Tekton params are never interpolated into
# this script.
#
#   IMAGE             the index tag to push, e.g. registry.example.com/me/app:v1
#   PLATFORMS         expected platforms, comma-separated: linux/amd64,linux/arm64
#   SOURCE_COMMITS    optional, space-separated commits the images were built
#                     from; all must be equal
#   TLS_VERIFY        "true" or "false"
#   PUSH_RETRIES      how many times to retry the push
#   PUSH              "true" (the default) or "false": check the index's
#                     inputs and push nothing (see below)
#   GIT_URL           optional: the index's org.opencontainers.image.source
#                     annotation, userinfo removed
#   SOURCE_DATE_EPOCH the index's org.opencontainers.image.created: empty
#                     for COMMIT_TIME (the commit's time, as the builds
#                     take it), a whole number of seconds since 1970-01-01
#                     UTC, or "now" for the time of this step; its .revision
#                     is the commit SOURCE_COMMITS agree on
#   COMMIT_TIME       optional: a build's COMMIT_TIME result, used when
#                     SOURCE_DATE_EPOCH is empty; empty too: the time of
#                     this step
#   DOCKERCONFIG_BOUND, DOCKERCONFIG_PATH   registry credentials workspace
#   CA_BUNDLE_BOUND, CA_BUNDLE_PATH   optional workspace of PEM certificates
#                     (*.crt, *.pem) trusted for the registry besides the system's
#   RESULT_IMAGE_URL, RESULT_IMAGE_DIGEST, RESULT_IMAGES   result files
#   CONTAINERS_ROOT, CONTAINERS_RUNROOT     optional buildah storage locations
#   arguments         IMAGES: each architecture's image as repo@sha256:...,
#                     then "--platforms" and the platforms as words, then
#                     "--commits" and the commits as words, then
#                     "--commit-times" and commit times: the array forms of
#                     PLATFORMS, SOURCE_COMMITS and COMMIT_TIME (a matrix's
#                     results are arrays, which Tekton cannot pass as a
#                     string), used when those are empty; then "--annotations" and
#                     ANNOTATIONS, each KEY=VALUE, for the index
#
# With PUSH=false the per-architecture images exist only in their build
# pods' storage, gone with those pods, so no index of them can be made here:
# the step checks what it would be made of (one image pinned by digest per
# platform, no platform and no digest twice, one commit) and pushes nothing.
set -eu

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

TLS_VERIFY=${TLS_VERIFY:-true}
PUSH_RETRIES=${PUSH_RETRIES:-3}
PUSH=${PUSH:-true}
GIT_URL=${GIT_URL:-}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-}
COMMIT_TIME=${COMMIT_TIME:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: >"$work/annotations"
PLATFORMS=${PLATFORMS:-}
SOURCE_COMMITS=${SOURCE_COMMITS:-}

# Split the arguments: the images stay the positional parameters.
n=$#
mode=images
list_platforms=
list_commits=
list_times=
for a do
	case $mode:$a in
	*:--platforms) mode=platforms ;;
	*:--commits) mode=commits ;;
	*:--commit-times) mode=commit-times ;;
	*:--annotations) mode=annotations ;;
	images:*) set -- "$@" "$a" ;;
	platforms:*) list_platforms=${list_platforms:+$list_platforms,}$a ;;
	commits:*) list_commits=${list_commits:+$list_commits }$a ;;
	commit-times:*) list_times=${list_times:+$list_times }$a ;;
	annotations:?*=*) printf '%s\n' "$a" >>"$work/annotations" ;;
	annotations:*) die "ANNOTATIONS entry '$a' is not KEY=VALUE with a non-empty KEY, e.g. com.example.team=payments" ;;
	esac
done
shift "$n"
PLATFORMS=${PLATFORMS:-$list_platforms}
SOURCE_COMMITS=${SOURCE_COMMITS:-$list_commits}
COMMIT_TIME=${COMMIT_TIME:-${list_times%% *}}
: "${RESULT_IMAGE_URL:?}" "${RESULT_IMAGE_DIGEST:?}" "${RESULT_IMAGES:?}"
case "$TLS_VERIFY" in
true | false) ;;
*) die "TLS_VERIFY must be true or false, not '$TLS_VERIFY'" ;;
esac
case "$PUSH_RETRIES" in
'' | *[!0-9]*) die "PUSH_RETRIES must be a whole number, not '$PUSH_RETRIES'" ;;
esac
case "$PUSH" in
true | false) ;;
*) die "PUSH must be true or false, not '$PUSH'" ;;
esac
case "$SOURCE_DATE_EPOCH" in
'' | now) ;;
*[!0-9]*) die "SOURCE_DATE_EPOCH must be empty (the commit's time, the default), a whole number of seconds since 1970-01-01 UTC (e.g. git log -1 --format=%ct) or now (the build's own time), not '$SOURCE_DATE_EPOCH'" ;;
esac
case "$COMMIT_TIME" in
*[!0-9]*) die "COMMIT_TIME must be a build's COMMIT_TIME result (seconds since 1970-01-01 UTC), not '$COMMIT_TIME'" ;;
esac

[ -n "${IMAGE:-}" ] || die "IMAGE is empty: set it to the multi-arch tag to push, e.g. registry.example.com/me/app:v1"
case "$IMAGE" in
-* | *[[:space:]]*) die "IMAGE '$IMAGE' is not an image reference" ;;
*@*) die "IMAGE '$IMAGE' has a digest: give the tag to push the index to" ;;
esac
repo=$IMAGE
case "${IMAGE##*/}" in
*:*) repo=${IMAGE%:*} ;;
esac

[ "$#" -gt 0 ] || die "IMAGES is empty: pass each architecture's IMAGE_REF result"
[ -n "$PLATFORMS" ] || die "PLATFORMS is empty: list the platforms the index must hold, e.g. linux/amd64,linux/arm64"

# All architectures must come from one commit: a branch that moved between the
# per-architecture clones would otherwise give an index of mixed sources.
same_commit() {
	first=$1
	for c in "$@"; do
		[ "$c" = "$first" ] || die "the architectures were built from different commits ($*): the branch moved during the run; pin GIT_REF to a full commit SHA and run again"
	done
}
if [ -n "$SOURCE_COMMITS" ]; then
	# shellcheck disable=SC2086 # split on purpose: one commit per word
	same_commit $SOURCE_COMMITS
fi

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

# Trusted CAs, as in the build step: added to the system's roots of buildah's
# Go TLS clients through SSL_CERT_DIR, which reaches manifest create too
# (it has no --cert-dir). TLS verification stays on.
if [ "${CA_BUNDLE_BOUND:-false}" = true ]; then
	ca_dir=$work/ca-bundle
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
	echo "trusting the system's CAs and more from workspace ca-bundle:$ca_keys"
fi

# Only manifests move here, no layers are mounted: vfs needs no /dev/fuse.
bah() {
	buildah ${CONTAINERS_ROOT:+--root "$CONTAINERS_ROOT"} ${CONTAINERS_RUNROOT:+--runroot "$CONTAINERS_RUNROOT"} \
		--storage-driver vfs "$@"
}

for ref in "$@"; do
	printf '%s\n' "$ref" | grep -Eq '^[^@[:space:]-][^@[:space:]]*@sha256:[0-9a-f]{64}$' ||
		die "IMAGES entry '$ref' is not an image pinned by digest (repo@sha256:...): pass the build tasks' IMAGE_REF results"
	printf '%s\n' "${ref#*@}" >>"$work/want-digests"
done
printf '%s\n' "$PLATFORMS" | tr ',' '\n' | sed '/^$/d' | sort >"$work/want-platforms"
[ "$(sort -u "$work/want-platforms" | wc -l)" -eq "$(wc -l <"$work/want-platforms")" ] ||
	die "PLATFORMS '$PLATFORMS' lists a platform twice"
[ "$(wc -l <"$work/want-platforms")" -eq "$#" ] ||
	die "PLATFORMS lists $(wc -l <"$work/want-platforms") platforms but IMAGES has $# images"
dup=$(sort "$work/want-digests" | uniq -d | head -n 1)
[ -z "$dup" ] || die "IMAGES holds $dup twice: each platform's build must give its own image"

# The index's annotations: where it came from (as the build step's labels),
# then ANNOTATIONS, which can override them.
source_url=$(printf '%s' "$GIT_URL" | sed 's#^\([A-Za-z][A-Za-z0-9+.-]*://\)[^/@]*@#\1#')
# The same epoch as the builds': the run's SOURCE_DATE_EPOCH, else the
# commit's time, so that the index of a rebuilt commit has the same digest.
case "$SOURCE_DATE_EPOCH" in
now)
	epoch=
	epoch_why="none, this step's own time (SOURCE_DATE_EPOCH=now): every index of this commit gets another digest"
	;;
'')
	epoch=$COMMIT_TIME
	epoch_why="the commit's time (the builds' COMMIT_TIME; the SOURCE_DATE_EPOCH param is empty)"
	[ -n "$epoch" ] || epoch_why="none, this step's own time: SOURCE_DATE_EPOCH and COMMIT_TIME are empty"
	;;
*)
	epoch=$SOURCE_DATE_EPOCH
	epoch_why="from the SOURCE_DATE_EPOCH param"
	;;
esac
# Not for buildah's own reading (1.42 and later take it from the
# environment, and "now" is not a number to them): the epoch is in created.
unset SOURCE_DATE_EPOCH
if [ -n "$epoch" ]; then
	created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ) || die "cannot turn SOURCE_DATE_EPOCH '$epoch' into a date"
	echo "SOURCE_DATE_EPOCH: $epoch ($created), $epoch_why"
else
	created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	echo "SOURCE_DATE_EPOCH: $epoch_why"
fi
{
	[ -z "$source_url" ] || printf 'org.opencontainers.image.source=%s\n' "$source_url"
	# shellcheck disable=SC2086 # split on purpose: the first commit
	[ -z "$SOURCE_COMMITS" ] || printf 'org.opencontainers.image.revision=%s\n' $SOURCE_COMMITS | head -n 1
	printf 'org.opencontainers.image.created=%s\n' "$created"
	cat "$work/annotations"
} >"$work/index-annotations"

if [ "$PUSH" = false ]; then
	echo "build-only (PUSH=false): nothing pushed; the index would hold:"
	printf '%s\n' "$PLATFORMS" | tr ',' '\n' | sed '/^$/d' >"$work/platforms-in-order"
	i=0
	for ref in "$@"; do
		i=$((i + 1))
		echo "  $(sed -n "${i}p" "$work/platforms-in-order") $ref"
	done
	echo "with the annotations:"
	sed 's/^/  /' "$work/index-annotations"
	printf '%s' "$IMAGE" >"$RESULT_IMAGE_URL"
	printf '' >"$RESULT_IMAGE_DIGEST"
	(
		IFS=,
		printf '%s' "$*"
	) >"$RESULT_IMAGES"
	exit 0
fi

# entries FILE prints "digest os/arch[/variant]" for each manifest of the
# index (OCI or Docker list) that buildah printed to FILE. Plain sed keeps this
# to what every buildah image has.
entries() {
	tr -d ' \t\r\n' <"$1" | sed 's/{"mediaType"/\
{"mediaType"/g' | grep '"platform":{' | while IFS= read -r e; do
		d=$(printf '%s' "$e" | sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p')
		p=${e#*\"platform\":}
		p=${p%%\}*}
		os=$(printf '%s' "$p" | sed -n 's/.*"os":"\([^"]*\)".*/\1/p')
		arch=$(printf '%s' "$p" | sed -n 's/.*"architecture":"\([^"]*\)".*/\1/p')
		variant=$(printf '%s' "$p" | sed -n 's/.*"variant":"\([^"]*\)".*/\1/p')
		[ "$arch/$variant" != arm64/v8 ] || variant=
		printf '%s %s/%s%s\n' "$d" "$os" "$arch" "${variant:+/$variant}"
	done
}

# check FILE WHEN fails unless the index in FILE holds exactly the wanted
# digests, each once, with exactly the wanted platforms.
check() {
	entries "$1" >"$work/entries"
	total=$(tr -d ' \t\r\n' <"$1" | grep -o '"digest":"sha256:' | wc -l)
	n=$(wc -l <"$work/entries")
	[ "$n" -eq "$total" ] || die "$2: could not read every manifest of the index ($n of $total have a platform)"
	cut -d' ' -f1 "$work/entries" | sort >"$work/got-digests"
	sort "$work/want-digests" >"$work/want-digests.sorted"
	cmp -s "$work/got-digests" "$work/want-digests.sorted" ||
		die "$2: the index holds digests $(tr '\n' ' ' <"$work/got-digests")but IMAGES are $(tr '\n' ' ' <"$work/want-digests.sorted")"
	cut -d' ' -f2 "$work/entries" | sort >"$work/got-platforms"
	cmp -s "$work/got-platforms" "$work/want-platforms" ||
		die "$2: the index holds platforms $(tr '\n' ' ' <"$work/got-platforms")but PLATFORMS are $(tr '\n' ' ' <"$work/want-platforms")"
}

list=multiarch-index-$$
# An empty index, then one add per image: buildah 1.28's manifest create
# with the images makes a Docker manifest list of Docker images, not an OCI
# index (TestRealBuild/pipeline).
bah manifest create "$list" >/dev/null
for ref in "$@"; do
	echo "adding $ref"
	bah manifest add --tls-verify="$TLS_VERIFY" "$list" "docker://$ref" >/dev/null ||
		die "cannot add $ref to the index: the registry does not have it or refused to serve it (nothing was pushed)"
done
# buildah 1.28 (Debian 12's) has no manifest annotate --index; v1.40.1 has.
# All the annotations in one buildah: each buildah's start (its storage
# opened, its lock taken) costs about as much as the annotation.
annotate_index() {
	set --
	while IFS= read -r a; do
		set -- "$@" --annotation "$a"
	done <"$work/index-annotations"
	[ "$#" = 0 ] || bah manifest annotate --index "$@" "$list" >/dev/null
}
if bah manifest annotate --help 2>/dev/null | grep -q -- '--index'; then
	annotate_index ||
		die "cannot annotate the index with $(sed 's/=.*//' "$work/index-annotations" | tr '\n' ' ')(nothing was pushed)"
else
	echo "warning: $(bah --version) cannot annotate an index (no manifest annotate --index): the index gets no annotations; the images keep their labels"
fi
bah manifest inspect "$list" >"$work/local.json"
check "$work/local.json" "before push (nothing was pushed)"

echo "pushing index $IMAGE"
attempt=0
# buildah can exit 0 and leave the digest file empty when the registry
# dropped the connection of the index's write (measured with buildah 1.40.1,
# TestRealNode/faults): such a push counts as failed and goes again.
push_index() {
	rm -f "$work/digest"
	bah manifest push --all --tls-verify="$TLS_VERIFY" --digestfile "$work/digest" "$list" "docker://$IMAGE" || return 1
	grep -Eq '^sha256:[0-9a-f]{64}$' "$work/digest" 2>/dev/null && return 0
	echo "buildah reported the index pushed but wrote no digest: the registry may not have it"
	return 1
}
until push_index; do
	attempt=$((attempt + 1))
	[ "$attempt" -le "$PUSH_RETRIES" ] ||
		die "pushing the index $IMAGE failed after $PUSH_RETRIES retries: check that the registry is reachable, TLS_VERIFY, and the dockerconfig workspace's credentials"
	echo "push failed, retry $attempt of $PUSH_RETRIES in 2s"
	sleep 2
done
digest=$(cat "$work/digest")

# Read the index back from the registry, by digest, and check it again.
echo "reading back $repo@$digest from the registry"
pushed=$list-pushed
bah manifest create --tls-verify="$TLS_VERIFY" --all "$pushed" "docker://$repo@$digest" >/dev/null ||
	die "cannot read the pushed index $repo@$digest back from the registry"
bah manifest inspect "$pushed" >"$work/pushed.json"
check "$work/pushed.json" "pushed index $repo@$digest"

printf '%s' "$IMAGE" >"$RESULT_IMAGE_URL"
printf '%s' "$digest" >"$RESULT_IMAGE_DIGEST"
# IMAGES is the children only: Chains signs each entry, and the index
# through IMAGE_URL/IMAGE_DIGEST; it does not recurse into an index
# (tektoncd/chains#1070).
(
	IFS=,
	printf '%s' "$*"
) >"$RESULT_IMAGES"
echo "pushed $repo@$digest:"
sed 's/^/  /' "$work/entries"
