// Package archcheck checks a multi-platform OCI image archive (what
// `buildah manifest push --all REF oci-archive:FILE:REF` writes): its one
// reference is an image index with exactly the platforms asked for, each
// platform's config names that platform, and every ELF file in each
// platform's layers is built for that platform's machine (an arm64 image
// holds EM_AARCH64 binaries, not amd64 ones). test/cluster/build-images.sh
// runs it (cmd/archcheck) on every image it makes and fails when it fails.
package archcheck

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
)

// Machines maps a GOARCH-style architecture (as OCI platforms name them)
// to the ELF e_machine its binaries carry.
var Machines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,  // 62
	"arm64":   elf.EM_AARCH64, // 183
	"arm":     elf.EM_ARM,     // 40
	"386":     elf.EM_386,     // 3
	"ppc64le": elf.EM_PPC64,   // 21
	"s390x":   elf.EM_S390,    // 22
	"riscv64": elf.EM_RISCV,   // 243
}

// ELFMachine reads an ELF header's e_machine from the start of a file: ok is
// false when hdr does not start with the ELF magic or is too short to hold
// e_machine (bytes 18-19, in the byte order EI_DATA names).
func ELFMachine(hdr []byte) (m elf.Machine, ok bool) {
	if len(hdr) < 20 || !bytes.Equal(hdr[:4], []byte(elf.ELFMAG)) {
		return 0, false
	}
	switch elf.Data(hdr[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		return elf.Machine(uint16(hdr[18]) | uint16(hdr[19])<<8), true
	case elf.ELFDATA2MSB:
		return elf.Machine(uint16(hdr[19]) | uint16(hdr[18])<<8), true
	}
	return 0, false
}

// Platform is what the check found for one platform of the index.
type Platform struct {
	OS, Architecture, Variant string
	Digest                    string // the platform's image manifest
	Layers                    int
	ELFs                      int                 // ELF regular files in its layers
	Wrong                     map[string]string   // path -> its machine, for ELF files of another machine
	machines                  map[elf.Machine]int // e_machine -> files
}

// Name is os/arch[/variant].
func (p *Platform) Name() string {
	n := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		n += "/" + p.Variant
	}
	return n
}

// Report is the check of one archive.
type Report struct {
	Ref       string // the index's org.opencontainers.image.ref.name
	Index     string // the index's digest
	Platforms []*Platform
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant,omitempty"`
	} `json:"platform,omitempty"`
}

type index struct {
	MediaType string       `json:"mediaType"`
	Manifests []descriptor `json:"manifests"`
}

type manifest struct {
	MediaType string       `json:"mediaType"`
	Config    descriptor   `json:"config"`
	Layers    []descriptor `json:"layers"`
}

const (
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	// Blobs up to this size are read into memory on the first pass (index,
	// manifests, configs); layers are streamed on the second.
	smallBlob = 4 << 20
)

// CheckArchive checks the OCI archive at path against the platforms wanted
// ("linux/amd64", "linux/arm64"). The error lists every problem found; the
// report is complete as far as the archive could be read.
func CheckArchive(path string, want []string) (*Report, error) {
	small := map[string][]byte{} // blob digest -> content, for small blobs
	var top []byte
	err := walkTar(path, func(name string, size int64, r io.Reader) error {
		if name == "index.json" {
			b, err := io.ReadAll(r)
			top = b
			return err
		}
		if d, ok := blobDigest(name); ok && size <= smallBlob {
			b, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			small[d] = b
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if top == nil {
		return nil, fmt.Errorf("%s: no index.json (not an OCI archive)", path)
	}
	var layout index
	if err := json.Unmarshal(top, &layout); err != nil {
		return nil, fmt.Errorf("%s: index.json: %w", path, err)
	}
	if len(layout.Manifests) != 1 {
		return nil, fmt.Errorf("%s: index.json has %d references, want one (the image index)", path, len(layout.Manifests))
	}
	rep := &Report{Ref: layout.Manifests[0].Annotations["org.opencontainers.image.ref.name"], Index: layout.Manifests[0].Digest}
	if mt := layout.Manifests[0].MediaType; mt != mediaIndex {
		return nil, fmt.Errorf("%s: its reference %s is a %s, want an image index (%s)", path, rep.Ref, mt, mediaIndex)
	}
	var idx index
	if err := readJSON(small, rep.Index, &idx); err != nil {
		return nil, fmt.Errorf("%s: the image index: %w", path, err)
	}
	var problems []string
	layerOf := map[string][]*Platform{} // layer digest -> platforms with it
	seen := map[string]bool{}
	for _, d := range idx.Manifests {
		if d.Platform == nil {
			problems = append(problems, fmt.Sprintf("manifest %s has no platform", d.Digest))
			continue
		}
		p := &Platform{OS: d.Platform.OS, Architecture: d.Platform.Architecture, Variant: d.Platform.Variant,
			Digest: d.Digest, Wrong: map[string]string{}, machines: map[elf.Machine]int{}}
		rep.Platforms = append(rep.Platforms, p)
		name := p.OS + "/" + p.Architecture
		if seen[name] {
			problems = append(problems, fmt.Sprintf("%s appears twice in the index", name))
		}
		seen[name] = true
		if d.MediaType != mediaManifest {
			problems = append(problems, fmt.Sprintf("%s: %s is a %s, want %s", name, d.Digest, d.MediaType, mediaManifest))
		}
		var m manifest
		if err := readJSON(small, d.Digest, &m); err != nil {
			problems = append(problems, fmt.Sprintf("%s: manifest: %v", name, err))
			continue
		}
		var cfg struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
			Variant      string `json:"variant"`
		}
		if err := readJSON(small, m.Config.Digest, &cfg); err != nil {
			problems = append(problems, fmt.Sprintf("%s: config: %v", name, err))
		} else if cfg.OS != p.OS || cfg.Architecture != p.Architecture {
			problems = append(problems, fmt.Sprintf("%s: the index says %s but its config says %s/%s", d.Digest, name, cfg.OS, cfg.Architecture))
		}
		p.Layers = len(m.Layers)
		for _, l := range m.Layers {
			layerOf[l.Digest] = append(layerOf[l.Digest], p)
		}
	}
	for _, w := range want {
		if !seen[w] {
			problems = append(problems, fmt.Sprintf("the index has no %s", w))
		}
	}
	for s := range seen {
		if !slices.Contains(want, s) {
			problems = append(problems, fmt.Sprintf("the index has %s, which was not asked for", s))
		}
	}
	found := map[string]bool{}
	err = walkTar(path, func(name string, _ int64, r io.Reader) error {
		d, ok := blobDigest(name)
		if !ok || layerOf[d] == nil {
			return nil
		}
		found[d] = true
		if err := scanLayer(r, layerOf[d]); err != nil {
			return fmt.Errorf("layer %s: %w", d, err)
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	for d := range layerOf {
		if !found[d] {
			problems = append(problems, fmt.Sprintf("layer %s is not in the archive", d))
		}
	}
	for _, p := range rep.Platforms {
		want, known := Machines[p.Architecture]
		switch {
		case !known:
			problems = append(problems, fmt.Sprintf("%s: no ELF machine known for %s", p.Name(), p.Architecture))
		case p.ELFs == 0:
			problems = append(problems, fmt.Sprintf("%s: no ELF file in its %d layers", p.Name(), p.Layers))
		}
		for m, n := range p.machines {
			if known && m != want {
				problems = append(problems, fmt.Sprintf("%s: %d ELF files for %s (e_machine %d), want %s (%d): %s",
					p.Name(), n, m, uint16(m), want, uint16(want), p.wrongOf(m)))
			}
		}
	}
	sort.Slice(rep.Platforms, func(i, j int) bool { return rep.Platforms[i].Name() < rep.Platforms[j].Name() })
	if len(problems) > 0 {
		sort.Strings(problems)
		return rep, fmt.Errorf("%s:\n  %s", path, strings.Join(problems, "\n  "))
	}
	return rep, nil
}

// Summary is one line: the platform, its manifest, and what its ELF files
// are built for.
func (p *Platform) Summary() string {
	var ms []string
	for m, n := range p.machines {
		ms = append(ms, fmt.Sprintf("%d %s (%d)", n, m, uint16(m)))
	}
	sort.Strings(ms)
	return fmt.Sprintf("%s %s: %d layers, %d ELF files: %s", p.Name(), p.Digest, p.Layers, p.ELFs, strings.Join(ms, ", "))
}

// wrongOf lists up to three paths of machine m.
func (p *Platform) wrongOf(m elf.Machine) string {
	var paths []string
	for path, mm := range p.Wrong {
		if mm == m.String() {
			paths = append(paths, path)
		}
	}
	sort.Strings(paths)
	if len(paths) > 3 {
		paths = append(paths[:3], "...")
	}
	return strings.Join(paths, " ")
}

// scanLayer reads a layer (a tar, gzip-compressed or not) and counts its ELF
// regular files' machines for each platform that has the layer.
func scanLayer(r io.Reader, ps []*Platform) error {
	br := bufio.NewReader(r)
	var lr io.Reader = br
	if magic, _ := br.Peek(4); bytes.Equal(magic[:min(2, len(magic))], []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return err
		}
		defer gz.Close()
		lr = gz
	} else if bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		return errors.New("zstd layers are not supported")
	}
	tr := tar.NewReader(lr)
	hdr := make([]byte, 20)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg || h.Size < int64(len(hdr)) {
			continue
		}
		if _, err := io.ReadFull(tr, hdr); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		m, ok := ELFMachine(hdr)
		if !ok {
			continue
		}
		for _, p := range ps {
			p.ELFs++
			p.machines[m]++
			if want, known := Machines[p.Architecture]; known && m != want {
				p.Wrong["/"+strings.TrimPrefix(h.Name, "./")] = m.String()
			}
		}
	}
}

// walkTar calls fn for each regular file of the tar at path, in order.
func walkTar(path string, fn func(name string, size int64, r io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if err := fn(strings.TrimPrefix(h.Name, "./"), h.Size, tr); err != nil {
			return fmt.Errorf("%s: %s: %w", path, h.Name, err)
		}
	}
}

// blobDigest maps blobs/sha256/<hex> to sha256:<hex>.
func blobDigest(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "blobs/")
	if !ok {
		return "", false
	}
	alg, hexd, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(hexd, "/") {
		return "", false
	}
	return alg + ":" + hexd, true
}

// readJSON decodes a small blob, checking it against its digest.
func readJSON(small map[string][]byte, digest string, v any) error {
	b, ok := small[digest]
	if !ok {
		return fmt.Errorf("blob %s is not in the archive", digest)
	}
	if alg, want, _ := strings.Cut(digest, ":"); alg == "sha256" {
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != want {
			return fmt.Errorf("blob %s has digest sha256:%s", digest, got)
		}
	}
	return json.Unmarshal(b, v)
}
