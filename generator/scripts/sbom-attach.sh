#!/busybox/sh
# Attach an SPDX JSON SBOM to an image the way `cosign attach sbom --type
# spdx` does (cosign v2.6): an OCI image manifest with one layer of media
# type text/spdx+json (the document, byte for byte), tagged
# sha256-<image digest hex>.sbom in the image's repository, which
# `cosign download sbom` reads. A tag, not an OCI referrer: every registry
# serves tags, many self-hosted ones no referrers API. Pushed with crane,
# in crane's debug image (busybox at /busybox, no /bin/sh). The attached
# artifact's URL and digest become results, which Tekton Chains signs (it
# signs every *IMAGE_URL/*IMAGE_DIGEST pair) with the key only Chains
# holds, never this pod. Every input comes from the environment.
#
#   SBOM                  "false": attach nothing; empty results
#   PUSH                  "false": nothing was pushed to attach to; empty results
#   TLS_VERIFY            "false": plain HTTP or unverified TLS (crane --insecure)
#   SUBJECT_URL_FILE      result file naming the image (repository[:tag])
#   SUBJECT_DIGEST_FILE   result file holding its digest (sha256:...)
#   SBOM_FILE             the SPDX JSON document; must exist when SBOM and
#                         PUSH are true
#   RESULT_SBOM_IMAGE_URL, RESULT_SBOM_IMAGE_DIGEST, RESULT_SBOM_IMAGE_REF
#                         result files: the attachment's tag, digest, and
#                         repository@digest
#   DOCKERCONFIG_BOUND, DOCKERCONFIG_PATH   registry credentials workspace
#   CA_BUNDLE_BOUND, CA_BUNDLE_PATH   optional workspace of PEM certificates
#   CRANE                 the crane binary (default: crane on PATH)
set -eu

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

SBOM=${SBOM:-true}
PUSH=${PUSH:-true}
TLS_VERIFY=${TLS_VERIFY:-true}
CRANE=${CRANE:-crane}
: "${SUBJECT_URL_FILE:?}" "${SUBJECT_DIGEST_FILE:?}" "${SBOM_FILE:?}"
: "${RESULT_SBOM_IMAGE_URL:?}" "${RESULT_SBOM_IMAGE_DIGEST:?}" "${RESULT_SBOM_IMAGE_REF:?}"

# Empty results rather than none: a Pipeline that passes them on fails on
# a result that was never written.
printf '' >"$RESULT_SBOM_IMAGE_URL"
printf '' >"$RESULT_SBOM_IMAGE_DIGEST"
printf '' >"$RESULT_SBOM_IMAGE_REF"
case "$SBOM|$PUSH" in
false\|*)
	echo "SBOM=false: no SBOM is attached"
	exit 0
	;;
true\|false)
	echo "no SBOM attached: PUSH=false, nothing was pushed to attach it to"
	exit 0
	;;
true\|true) ;;
*) die "SBOM and PUSH must be true or false, not '$SBOM' and '$PUSH'" ;;
esac

[ -s "$SBOM_FILE" ] || die "SBOM is true but there is no SBOM at $SBOM_FILE: the step that makes it did not run or failed"
url=$(cat "$SUBJECT_URL_FILE" 2>/dev/null) || url=
digest=$(cat "$SUBJECT_DIGEST_FILE" 2>/dev/null) || digest=
printf '%s' "$digest" | grep -Eq '^sha256:[0-9a-f]{64}$' || die "no digest of the pushed image to attach the SBOM to ('$digest')"
[ -n "$url" ] || die "no URL of the pushed image to attach the SBOM to"
repo=${url%@*}
case "${repo##*/}" in
*:*) repo=${repo%:*} ;;
esac
tag=$repo:sha256-${digest#sha256:}.sbom

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "${DOCKERCONFIG_BOUND:-false}" = true ]; then
	mkdir -p "$tmp/docker"
	if [ -f "${DOCKERCONFIG_PATH:?}/config.json" ]; then
		cp "$DOCKERCONFIG_PATH/config.json" "$tmp/docker/config.json"
	elif [ -f "$DOCKERCONFIG_PATH/.dockerconfigjson" ]; then
		cp "$DOCKERCONFIG_PATH/.dockerconfigjson" "$tmp/docker/config.json"
	else
		die "workspace dockerconfig is bound but holds neither config.json nor .dockerconfigjson"
	fi
	DOCKER_CONFIG=$tmp/docker
	export DOCKER_CONFIG
fi
if [ "${CA_BUNDLE_BOUND:-false}" = true ]; then
	SSL_CERT_DIR=${SSL_CERT_DIR:-/etc/ssl/certs}:${CA_BUNDLE_PATH:?}
	export SSL_CERT_DIR
fi

# The attachment as an OCI image layout, as cosign's static.NewFile makes
# it: an OCI config whose one diff_id is the document's digest, and one
# layer, the document itself, uncompressed.
layout=$tmp/layout
mkdir -p "$layout/blobs/sha256"
sha() { sha256sum "$1" | cut -d ' ' -f 1; }
# blob FILE: store FILE in the layout, print its hex digest.
blob() {
	h=$(sha "$1")
	cp "$1" "$layout/blobs/sha256/$h"
	echo "$h"
}
size() { wc -c <"$1" | tr -d ' '; }
layer=$(blob "$SBOM_FILE")
printf '{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"config":{}}' \
	"$layer" >"$tmp/config.json"
config=$(blob "$tmp/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":%s,"digest":"sha256:%s"},"layers":[{"mediaType":"text/spdx+json","size":%s,"digest":"sha256:%s"}]}' \
	"$(size "$tmp/config.json")" "$config" "$(size "$SBOM_FILE")" "$layer" >"$tmp/manifest.json"
manifest=$(blob "$tmp/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":%s,"digest":"sha256:%s"}]}' \
	"$(size "$tmp/manifest.json")" "$manifest" >"$layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

insecure=
[ "$TLS_VERIFY" = true ] || insecure=--insecure
echo "attaching the SBOM of $repo@$digest as $tag (text/spdx+json, $(size "$SBOM_FILE") bytes)"
rc=0
# shellcheck disable=SC2086 # $insecure is one flag or nothing
"$CRANE" push $insecure --image-refs "$tmp/pushed" "$layout" "$tag" >"$tmp/crane.log" 2>&1 || rc=$?
if [ "$rc" != 0 ]; then
	cat "$tmp/crane.log" >&2
	die "pushing the SBOM to $tag failed (crane exit $rc, its output is above): check that the registry is reachable and writable with the credentials in the dockerconfig workspace, and TLS_VERIFY"
fi
pushed=$(cat "$tmp/pushed")
[ "$pushed" = "$repo@sha256:$manifest" ] || die "crane pushed $pushed, not the attachment sha256:$manifest made here"

printf '%s' "$tag" >"$RESULT_SBOM_IMAGE_URL"
printf 'sha256:%s' "$manifest" >"$RESULT_SBOM_IMAGE_DIGEST"
printf '%s' "$pushed" >"$RESULT_SBOM_IMAGE_REF"
echo "attached the SBOM of $repo@$digest: $pushed (read it with: cosign download sbom $repo@$digest)"
