package realbuild

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// AttachedSBOM reads the SBOM attached to repo@digest the way cosign
// download sbom finds it: the tag sha256-<hex>.sbom, one text/spdx+json
// layer. It returns the document and the attachment's own digest.
func AttachedSBOM(ctx context.Context, repo, digest string) (doc []byte, attachment string, err error) {
	tag := repo + ":sha256-" + strings.TrimPrefix(digest, "sha256:") + ".sbom"
	raw, err := RawManifest(ctx, tag)
	if err != nil {
		return nil, "", err
	}
	var m struct {
		Layers []struct{ MediaType, Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil || len(m.Layers) != 1 || m.Layers[0].MediaType != "text/spdx+json" {
		return nil, "", fmt.Errorf("%s: %s (%v): want one text/spdx+json layer", tag, raw, err)
	}
	doc, err = Blob(ctx, repo, m.Layers[0].Digest)
	return doc, fmt.Sprintf("sha256:%x", sha256.Sum256(raw)), err
}

type spdxRelationship struct {
	From string `json:"spdxElementId"`
	Type string `json:"relationshipType"`
	To   string `json:"relatedSpdxElement"`
}

type spdxExternalDoc struct {
	ID       string `json:"externalDocumentId"`
	Document string `json:"spdxDocument"`
	Checksum struct{ Algorithm, ChecksumValue string }
}

// CheckIndexSBOM reads the SBOM attached to the index repo@index and checks
// that it is what the manifest Task's sbom-index step promises: an SPDX 2.3
// document that describes the index by digest, contains exactly the images
// children names (platform -> digest), and links each to the SBOM attached
// to that image (its attachment digest, and the document's namespace and
// SHA1 as SPDX's externalDocumentRefs say), which must be sboms[platform].
// It returns a summary for the test's log.
func CheckIndexSBOM(ctx context.Context, repo, index string, children, sboms map[string]string) (string, error) {
	doc, attachment, err := AttachedSBOM(ctx, repo, index)
	if err != nil {
		return "", err
	}
	var spdx struct {
		SPDXVersion  string            `json:"spdxVersion"`
		ExternalRefs []spdxExternalDoc `json:"externalDocumentRefs"`
		Packages     []struct {
			SPDXID       string `json:"SPDXID"`
			VersionInfo  string `json:"versionInfo"`
			Comment      string `json:"comment"`
			ExternalRefs []struct {
				Category string `json:"referenceCategory"`
				Type     string `json:"referenceType"`
				Locator  string `json:"referenceLocator"`
			} `json:"externalRefs"`
		} `json:"packages"`
		Relationships []spdxRelationship `json:"relationships"`
	}
	if err := json.Unmarshal(doc, &spdx); err != nil {
		return "", fmt.Errorf("the index's SBOM is not JSON: %v\n%s", err, doc)
	}
	if spdx.SPDXVersion != "SPDX-2.3" {
		return "", fmt.Errorf("the index's SBOM is %q, want SPDX-2.3:\n%s", spdx.SPDXVersion, doc)
	}
	has := func(from, typ, to string) bool {
		return slices.ContainsFunc(spdx.Relationships, func(r spdxRelationship) bool {
			return r.From == from && r.Type == typ && r.To == to
		})
	}
	var index0 string
	images := map[string]string{} // SPDXID -> digest
	sbomOf := map[string]string{} // SPDXID -> attached SBOM ref
	for _, p := range spdx.Packages {
		if has("SPDXRef-DOCUMENT", "DESCRIBES", p.SPDXID) {
			index0 = p.VersionInfo
			continue
		}
		images[p.SPDXID] = p.VersionInfo
		for _, r := range p.ExternalRefs {
			if r.Category == "OTHER" && r.Type == "sbom" {
				sbomOf[p.SPDXID] = r.Locator
			}
		}
	}
	if index0 != index {
		return "", fmt.Errorf("the index's SBOM describes %q, not the index %s:\n%s", index0, index, doc)
	}
	if len(images) != len(children) {
		return "", fmt.Errorf("the index's SBOM lists %d images, the index has %d (%v):\n%s", len(images), len(children), children, doc)
	}
	var lines []string
	for platform, digest := range children {
		id := "SPDXRef-Image-" + strings.ReplaceAll(platform, "/", "-")
		docRef := "DocumentRef-" + strings.ReplaceAll(platform, "/", "-")
		if images[id] != digest || !has("SPDXRef-Index", "CONTAINS", id) || !has(id, "DESCRIBED_BY", docRef+":SPDXRef-DOCUMENT") {
			return "", fmt.Errorf("the index's SBOM does not list %s as %s (%s), contained in the index and described by %s:\n%s", platform, id, digest, docRef, doc)
		}
		own, ownAttachment, err := AttachedSBOM(ctx, repo, digest)
		if err != nil {
			return "", fmt.Errorf("the SBOM attached to %s (%s): %v", platform, digest, err)
		}
		if want := repo + "@" + ownAttachment; sbomOf[id] != want || want != sboms[platform] {
			return "", fmt.Errorf("the index's SBOM names %q as %s's SBOM; attached to that image: %s; the build reported %s", sbomOf[id], platform, want, sboms[platform])
		}
		var ns struct {
			Namespace string `json:"documentNamespace"`
		}
		if err := json.Unmarshal(own, &ns); err != nil {
			return "", err
		}
		sum := sha1.Sum(own)
		ok := slices.ContainsFunc(spdx.ExternalRefs, func(r spdxExternalDoc) bool {
			return r.ID == docRef && r.Document == ns.Namespace && r.Checksum.Algorithm == "SHA1" && r.Checksum.ChecksumValue == hex.EncodeToString(sum[:])
		})
		if !ok {
			return "", fmt.Errorf("the index's SBOM has no externalDocumentRef %s to %s's SBOM (namespace %s, SHA1 %x):\n%s", docRef, platform, ns.Namespace, sum, doc)
		}
		lines = append(lines, fmt.Sprintf("%s %s -> SBOM %s (%s)", platform, digest, sbomOf[id], ns.Namespace))
	}
	slices.Sort(lines)
	return fmt.Sprintf("the index's SBOM %s@%s (%d bytes) describes %s and lists: %s", repo, attachment, len(doc), index, strings.Join(lines, "; ")), nil
}
