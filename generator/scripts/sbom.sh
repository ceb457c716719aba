#!/busybox/sh
# Make the SBOM of the image the build step just pushed: syft scans that
# image in the registry, by digest (never the source tree, never another
# architecture's image), into an SPDX JSON document, which must describe
# that very digest. The sbom-attach step then attaches it to the image.
# Runs in syft's debug image (anchore/syft:vX-debug: busybox at /busybox,
# no /bin/sh, syft at /syft, off PATH). Every input comes from the
# environment: Tekton params are never interpolated into this script.
#
#   SBOM                  "true": make it; "false": make none, say so
#   PUSH                  "false": the build pushed nothing, so there is
#                         nothing in a registry to scan or attach to: say so
#   PLATFORM              linux/ARCH[/VARIANT] the image was built for
#   TLS_VERIFY            "false": plain HTTP or unverified TLS (syft's
#                         registry insecure settings)
#   IMAGE_REF_FILE        the build step's IMAGE_REF result: repository@sha256:...
#   SBOM_FILE             where the SPDX JSON document goes
#   DOCKERCONFIG_BOUND, DOCKERCONFIG_PATH   registry credentials workspace
#   CA_BUNDLE_BOUND, CA_BUNDLE_PATH   optional workspace of PEM certificates
#   SYFT                  the syft binary (default: syft on PATH, else /syft)
set -eu

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

SBOM=${SBOM:-true}
PUSH=${PUSH:-true}
TLS_VERIFY=${TLS_VERIFY:-true}
: "${IMAGE_REF_FILE:?}" "${SBOM_FILE:?}" "${PLATFORM:?}"
case "$SBOM" in
true) ;;
false)
	echo "SBOM=false: no SBOM is made"
	exit 0
	;;
*) die "SBOM must be true or false, not '$SBOM'" ;;
esac
if [ "$PUSH" = false ]; then
	echo "no SBOM: PUSH=false, so no image is in a registry to scan or attach an SBOM to"
	exit 0
fi

ref=$(cat "$IMAGE_REF_FILE" 2>/dev/null) || ref=
case "$ref" in
*@sha256:*) ;;
*) die "the build step left no IMAGE_REF (repository@sha256:...) to make the SBOM of ('$ref')" ;;
esac
digest=${ref##*@}

if [ -z "${SYFT:-}" ]; then
	SYFT=$(PATH=$PATH:/ command -v syft) || die "no syft in this image (neither on PATH nor /syft)"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Credentials: syft reads a docker config.json from DOCKER_CONFIG.
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
	# syft takes one CA file: the first of the workspace's.
	for f in "${CA_BUNDLE_PATH:?}"/*.crt "$CA_BUNDLE_PATH"/*.pem; do
		[ -f "$f" ] || continue
		SYFT_REGISTRY_CA_CERT=$f
		export SYFT_REGISTRY_CA_CERT
		break
	done
	[ -n "${SYFT_REGISTRY_CA_CERT:-}" ] || die "workspace ca-bundle is bound but has no *.crt or *.pem key"
fi
if [ "$TLS_VERIFY" = false ]; then
	SYFT_REGISTRY_INSECURE_USE_HTTP=true
	SYFT_REGISTRY_INSECURE_SKIP_TLS_VERIFY=true
	export SYFT_REGISTRY_INSECURE_USE_HTTP SYFT_REGISTRY_INSECURE_SKIP_TLS_VERIFY
fi
# No network calls of syft's own: no update check.
SYFT_CHECK_FOR_APP_UPDATE=false
export SYFT_CHECK_FOR_APP_UPDATE

echo "making the SBOM of $ref ($PLATFORM) with $("$SYFT" version 2>/dev/null | sed -n 's/^Version:[[:space:]]*/syft /p')"
rc=0
"$SYFT" scan "registry:$ref" --platform "$PLATFORM" -o "spdx-json=$SBOM_FILE" >"$tmp/syft.log" 2>&1 || rc=$?
if [ "$rc" != 0 ]; then
	cat "$tmp/syft.log" >&2
	die "syft could not scan $ref (exit $rc, its output is above): check that the registry is reachable from this node, TLS_VERIFY, and the credentials in the dockerconfig workspace"
fi

# The document must be SPDX and describe this digest: syft's root package of
# an image carries the manifest digest it scanned as its version.
[ -s "$SBOM_FILE" ] || die "syft wrote no SBOM for $ref"
grep -q '"spdxVersion":"SPDX-2\.' "$SBOM_FILE" || die "syft's output for $ref is not an SPDX 2 JSON document"
root=$(sed -n 's/.*"spdxElementId":"SPDXRef-DOCUMENT","relatedSpdxElement":"\([^"]*\)","relationshipType":"DESCRIBES".*/\1/p' "$SBOM_FILE")
[ -n "$root" ] || die "the SBOM of $ref names no package it DESCRIBES"
grep -q "\"SPDXID\":\"$root\",\"versionInfo\":\"$digest\"" "$SBOM_FILE" ||
	die "the SBOM describes $root, which is not the image $digest that was pushed"
packages=$(grep -o '"SPDXID":"SPDXRef-Package-' "$SBOM_FILE" | wc -l)
echo "SBOM of $ref: $(wc -c <"$SBOM_FILE") bytes of SPDX JSON, $packages packages"
