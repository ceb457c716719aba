#!/busybox/sh
# Make the multi-arch index's SBOM: an SPDX 2.3 JSON document that
# describes the index (by digest) and lists each platform's image and that
# image's own SBOM, the one its build made from it and attached. It adds no
# package list of its own: what each platform holds is in its own SBOM,
# never one platform's SBOM standing for all. The sbom-attach step then
# attaches it to the index as it attaches each build's to its image.
#
# Each platform's SBOM is found by cosign's tag convention
# (repository:sha256-<image hex>.sbom) from the pushed index, and must be
# the one its build reported (an argument): a tag that moved since fails
# the step. The document is referenced as SPDX 2.3 says, with its
# namespace and SHA1 (externalDocumentRefs), and by its OCI digest.
# Runs in crane's debug image (busybox at /busybox, no /bin/sh). Every input
# comes from the environment or the arguments: Tekton params are never
# interpolated into this script.
#
#   SBOM                  "true": make it; "false": make none, say so
#   PUSH                  "false": no index was pushed: say so
#   TLS_VERIFY            "false": plain HTTP or unverified TLS (crane --insecure)
#   INDEX_URL_FILE        the manifest step's IMAGE_URL result: the index's tag
#   INDEX_DIGEST_FILE     the manifest step's IMAGE_DIGEST result: sha256:...
#   SBOM_FILE             where the index's SPDX JSON document goes
#   DOCKERCONFIG_BOUND, DOCKERCONFIG_PATH   registry credentials workspace
#   CA_BUNDLE_BOUND, CA_BUNDLE_PATH   optional workspace of PEM certificates
#   CRANE                 the crane binary (default: crane on PATH)
#   arguments             each build's SBOM_IMAGE_REF result
#                         (repository@sha256:...), in any order; empty ones
#                         (a build without SBOM) fail the step
set -eu

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

SBOM=${SBOM:-true}
PUSH=${PUSH:-true}
TLS_VERIFY=${TLS_VERIFY:-true}
CRANE=${CRANE:-crane}
: "${INDEX_URL_FILE:?}" "${INDEX_DIGEST_FILE:?}" "${SBOM_FILE:?}"
case "$SBOM|$PUSH" in
false\|*)
	echo "SBOM=false: no SBOM of the index is made"
	exit 0
	;;
true\|false)
	echo "no SBOM of the index: PUSH=false, no index was pushed"
	exit 0
	;;
true\|true) ;;
*) die "SBOM and PUSH must be true or false, not '$SBOM' and '$PUSH'" ;;
esac

url=$(cat "$INDEX_URL_FILE" 2>/dev/null) || url=
digest=$(cat "$INDEX_DIGEST_FILE" 2>/dev/null) || digest=
printf '%s' "$digest" | grep -Eq '^sha256:[0-9a-f]{64}$' || die "the manifest step left no index digest ('$digest')"
repo=${url%@*}
case "${repo##*/}" in
*:*) repo=${repo%:*} ;;
esac
[ -n "$repo" ] || die "the manifest step left no index URL"

reported=
for ref do
	case "$ref" in
	*@sha256:*) reported="$reported $ref" ;;
	'') die "a build reported no SBOM (an empty SBOM_IMAGE_REF): with SBOM=true every platform's build must attach one" ;;
	*) die "a build's SBOM_IMAGE_REF '$ref' is not repository@sha256:..." ;;
	esac
done

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
insecure=
[ "$TLS_VERIFY" = true ] || insecure=--insecure

# registry ARGS...: crane ARGS, its errors shown when it fails.
registry() {
	# shellcheck disable=SC2086 # $insecure is one flag or nothing
	"$CRANE" "$@" $insecure 2>"$tmp/crane.err" || {
		cat "$tmp/crane.err" >&2
		die "crane $1 $2 failed (its output is above): check that the registry is reachable with the credentials in the dockerconfig workspace, and TLS_VERIFY"
	}
}

# The index as pushed, one line per child: digest and platform.
registry manifest "$repo@$digest" >"$tmp/index.json"
# field NAME: the value of the JSON string field NAME in the line on stdin.
field() { sed -n 's/.*"'"$1"'":"\([^"]*\)".*/\1/p'; }
: >"$tmp/children"
# (The echo ends the last entry's line: read skips a line without one.)
{
	tr -d '\n' <"$tmp/index.json"
	echo
} | sed 's/},{/}\n{/g' >"$tmp/entries"
while IFS= read -r entry; do
	child=$(printf '%s' "$entry" | field digest)
	case "$child" in sha256:*) ;; *) continue ;; esac
	os=$(printf '%s' "$entry" | field os)
	arch=$(printf '%s' "$entry" | field architecture)
	variant=$(printf '%s' "$entry" | field variant)
	echo "$child $os/$arch${variant:+/$variant}" >>"$tmp/children"
done <"$tmp/entries"
[ -s "$tmp/children" ] || die "the index $repo@$digest lists no platform images"
created=$(sed -n 's/.*"org\.opencontainers\.image\.created":"\([^"]*\)".*/\1/p' "$tmp/index.json")
[ -n "$created" ] || created=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# Each child's SBOM, found by its tag, must be one a build reported.
: >"$tmp/refs"
: >"$tmp/packages"
: >"$tmp/relationships"
i=0
while read -r child platform; do
	i=$((i + 1))
	id=$(printf '%s' "$platform" | tr -c 'A-Za-z0-9\n' '-')
	tag=$repo:sha256-${child#sha256:}.sbom
	sbom_digest=$(registry digest "$tag")
	sbom_ref=$repo@$sbom_digest
	case " $reported " in
	*" $sbom_ref "*) ;;
	*) die "the SBOM attached to $platform ($tag, $sbom_digest) is none of those the builds reported:$reported" ;;
	esac
	registry manifest "$sbom_ref" >"$tmp/sbom-manifest.json"
	layer=$(tr -d '\n' <"$tmp/sbom-manifest.json" | sed -n 's/.*"layers":\[{[^]]*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p')
	[ -n "$layer" ] || die "the SBOM artifact $sbom_ref has no layer"
	registry blob "$repo@$layer" >"$tmp/doc"
	ns=$(sed -n 's/.*"documentNamespace":"\([^"]*\)".*/\1/p' "$tmp/doc" | head -n 1)
	[ -n "$ns" ] || die "the SBOM of $platform ($sbom_ref) is not an SPDX document: it has no documentNamespace"
	sha1=$(sha1sum "$tmp/doc" | cut -d ' ' -f 1)
	arch=${platform#*/}
	arch=${arch%%/*}
	sep=,
	[ "$i" = 1 ] && sep=
	printf '%s{"externalDocumentId":"DocumentRef-%s","spdxDocument":"%s","checksum":{"algorithm":"SHA1","checksumValue":"%s"}}' \
		"$sep" "$id" "$ns" "$sha1" >>"$tmp/refs"
	printf ',{"name":"%s","SPDXID":"SPDXRef-Image-%s","versionInfo":"%s","downloadLocation":"NOASSERTION","filesAnalyzed":false,"primaryPackagePurpose":"CONTAINER","comment":"%s image; its SBOM: %s","externalRefs":[{"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl","referenceLocator":"pkg:oci/%s@sha256%%3A%s?arch=%s&repository_url=%s"},{"referenceCategory":"OTHER","referenceType":"sbom","referenceLocator":"%s"}]}' \
		"$repo" "$id" "$child" "$platform" "$sbom_ref" "${repo##*/}" "${child#sha256:}" "$arch" "$repo" "$sbom_ref" >>"$tmp/packages"
	printf ',{"spdxElementId":"SPDXRef-Index","relationshipType":"CONTAINS","relatedSpdxElement":"SPDXRef-Image-%s"},{"spdxElementId":"SPDXRef-Image-%s","relationshipType":"DESCRIBED_BY","relatedSpdxElement":"DocumentRef-%s:SPDXRef-DOCUMENT"}' \
		"$id" "$id" "$id" >>"$tmp/relationships"
	echo "  $platform $repo@$child: SBOM $sbom_ref ($ns)"
done <"$tmp/children"
[ "$i" = "$(echo "$reported" | wc -w)" ] || die "the index has $i platform images but the builds reported $(echo "$reported" | wc -w) SBOMs:$reported"

printf '{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":"%s@%s","documentNamespace":"https://tekton-multiarch.dev/spdx/index/%s/%s","creationInfo":{"created":"%s","creators":["Tool: tekton-multiarch buildah-manifest"]},"externalDocumentRefs":[%s],"packages":[{"name":"%s","SPDXID":"SPDXRef-Index","versionInfo":"%s","downloadLocation":"NOASSERTION","filesAnalyzed":false,"primaryPackagePurpose":"CONTAINER","comment":"multi-arch image index of %s platforms","externalRefs":[{"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl","referenceLocator":"pkg:oci/%s@sha256%%3A%s?repository_url=%s"}]}%s],"relationships":[{"spdxElementId":"SPDXRef-DOCUMENT","relationshipType":"DESCRIBES","relatedSpdxElement":"SPDXRef-Index"}%s]}\n' \
	"$repo" "$digest" "$repo" "${digest#sha256:}" "$created" "$(cat "$tmp/refs")" "$repo" "$digest" "$i" "${repo##*/}" "${digest#sha256:}" "$repo" \
	"$(cat "$tmp/packages")" "$(cat "$tmp/relationships")" >"$SBOM_FILE"
echo "SBOM of the index $repo@$digest: $(wc -c <"$SBOM_FILE") bytes of SPDX JSON, $i platform images, each with its own SBOM"
