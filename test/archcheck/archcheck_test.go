package archcheck

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// elfHeader is the first 20 bytes of a 64-bit ELF executable for m, in the
// byte order given.
func elfHeader(m elf.Machine, data elf.Data) []byte {
	h := make([]byte, 64)
	copy(h, elf.ELFMAG)
	h[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h[elf.EI_DATA] = byte(data)
	h[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	if data == elf.ELFDATA2MSB {
		h[16], h[17] = 0, byte(elf.ET_EXEC)
		h[18], h[19] = byte(uint16(m)>>8), byte(m)
	} else {
		h[16], h[17] = byte(elf.ET_EXEC), 0
		h[18], h[19] = byte(m), byte(uint16(m)>>8)
	}
	return h
}

func TestELFMachine(t *testing.T) {
	for _, c := range []struct {
		name string
		hdr  []byte
		want elf.Machine
		ok   bool
	}{
		{"amd64", elfHeader(elf.EM_X86_64, elf.ELFDATA2LSB), elf.EM_X86_64, true},
		{"arm64", elfHeader(elf.EM_AARCH64, elf.ELFDATA2LSB), elf.EM_AARCH64, true},
		{"s390x, big-endian", elfHeader(elf.EM_S390, elf.ELFDATA2MSB), elf.EM_S390, true},
		{"a shell script", []byte("#!/bin/sh\necho not an ELF file at all\n"), 0, false},
		{"too short", elfHeader(elf.EM_AARCH64, elf.ELFDATA2LSB)[:19], 0, false},
		{"no byte order", func() []byte { h := elfHeader(elf.EM_AARCH64, elf.ELFDATA2LSB); h[elf.EI_DATA] = 0; return h }(), 0, false},
	} {
		m, ok := ELFMachine(c.hdr)
		if m != c.want || ok != c.ok {
			t.Errorf("%s: ELFMachine = %v (%d), %t; want %v (%d), %t", c.name, m, uint16(m), ok, c.want, uint16(c.want), c.ok)
		}
	}
	if uint16(elf.EM_AARCH64) != 183 || uint16(Machines["arm64"]) != 183 || uint16(Machines["amd64"]) != 62 {
		t.Errorf("EM_AARCH64 = %d, Machines[arm64] = %d, Machines[amd64] = %d; want 183, 183, 62", elf.EM_AARCH64, Machines["arm64"], Machines["amd64"])
	}
}

// TestELFMachineOfARealBinary reads this test's own executable, a real ELF
// file, as debug/elf does.
func TestELFMachineOfARealBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Skipf("the test binary is not ELF here: %v", err)
	}
	defer f.Close()
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := ELFMachine(b[:64]); !ok || m != f.Machine {
		t.Errorf("ELFMachine(%s) = %v, %t; debug/elf says %v", exe, m, ok, f.Machine)
	}
}

// archive writes an OCI archive as buildah manifest push --all writes one:
// index.json naming one image index, whose manifests each have a config and
// one gzip-compressed layer of the given files.
type archive struct {
	blobs map[string][]byte
}

func (a *archive) blob(b []byte) (digest string, size int64) {
	sum := sha256.Sum256(b)
	d := "sha256:" + hex.EncodeToString(sum[:])
	a.blobs[d] = b
	return d, int64(len(b))
}

type image struct {
	platform   string            // linux/arm64
	configArch string            // the config's architecture; the platform's if empty
	files      map[string][]byte // path -> content
}

func layer(t *testing.T, files map[string][]byte) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "./" + strings.TrimPrefix(name, "/"), Mode: 0o755, Size: int64(len(content))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(content); err != nil {
			t.Fatal(err)
		}
	}
	// A symbolic link to an ELF file is not read as one.
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "./bin/link", Linkname: "busybox"}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeArchive(t *testing.T, topMediaType string, images ...image) string {
	t.Helper()
	a := &archive{blobs: map[string][]byte{}}
	var manifests []descriptor
	var last descriptor
	for _, im := range images {
		os, arch, _ := strings.Cut(im.platform, "/")
		cfgArch := im.configArch
		if cfgArch == "" {
			cfgArch = arch
		}
		cfg, _ := json.Marshal(map[string]any{"os": os, "architecture": cfgArch, "rootfs": map[string]any{"type": "layers"}})
		cd, cs := a.blob(cfg)
		ld, ls := a.blob(layer(t, im.files))
		m, _ := json.Marshal(map[string]any{
			"schemaVersion": 2, "mediaType": mediaManifest,
			"config": descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: cd, Size: cs},
			"layers": []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: ld, Size: ls}},
		})
		md, ms := a.blob(m)
		d := descriptor{MediaType: mediaManifest, Digest: md, Size: ms}
		d.Platform = &struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
			Variant      string `json:"variant,omitempty"`
		}{OS: os, Architecture: arch}
		manifests = append(manifests, d)
		last = d
	}
	ref := descriptor{MediaType: mediaIndex, Annotations: map[string]string{"org.opencontainers.image.ref.name": "localhost/test/x:key"}}
	if topMediaType == mediaIndex {
		idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mediaIndex, "manifests": manifests})
		ref.Digest, ref.Size = a.blob(idx)
	} else {
		ref.MediaType, ref.Digest, ref.Size = last.MediaType, last.Digest, last.Size
	}
	top, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []descriptor{ref}})

	path := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	put := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	for d, b := range a.blobs {
		put("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), b)
	}
	put("index.json", top)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

var (
	amd64ELF = elfHeader(elf.EM_X86_64, elf.ELFDATA2LSB)
	arm64ELF = elfHeader(elf.EM_AARCH64, elf.ELFDATA2LSB)
	both     = []string{"linux/amd64", "linux/arm64"}
)

func TestCheckArchive(t *testing.T) {
	good := func() []image {
		return []image{
			{platform: "linux/amd64", files: map[string][]byte{"/ko-app/entrypoint": amd64ELF, "/bin/busybox": amd64ELF, "/etc/passwd": []byte("root:x:0:0::/:/bin/sh\n")}},
			{platform: "linux/arm64", files: map[string][]byte{"/ko-app/entrypoint": arm64ELF, "/bin/busybox": arm64ELF, "/etc/passwd": []byte("root:x:0:0::/:/bin/sh\n")}},
		}
	}
	t.Run("good", func(t *testing.T) {
		rep, err := CheckArchive(writeArchive(t, mediaIndex, good()...), both)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Ref != "localhost/test/x:key" || !strings.HasPrefix(rep.Index, "sha256:") || len(rep.Platforms) != 2 {
			t.Fatalf("report: %+v", rep)
		}
		for i, want := range []string{"linux/amd64", "linux/arm64"} {
			p := rep.Platforms[i]
			if p.Name() != want || p.ELFs != 2 || len(p.Wrong) != 0 || p.Layers != 1 {
				t.Errorf("platform %d: %s, %d ELF files, wrong %v, %d layers; want %s, 2, none, 1", i, p.Name(), p.ELFs, p.Wrong, p.Layers, want)
			}
		}
		if s := rep.Platforms[1].Summary(); !strings.Contains(s, "2 ELF files: 2 EM_AARCH64 (183)") {
			t.Errorf("arm64 summary %q", s)
		}
	})
	for _, c := range []struct {
		name   string
		top    string
		images func() []image
		want   []string
	}{
		{"amd64-binary-in-arm64", mediaIndex, func() []image {
			im := good()
			im[1].files["/ko-app/entrypoint"] = amd64ELF
			return im
		}, []string{"linux/arm64: 1 ELF files for EM_X86_64 (e_machine 62), want EM_AARCH64 (183): /ko-app/entrypoint"}},
		{"arm64-binary-in-amd64", mediaIndex, func() []image {
			im := good()
			im[0].files["/bin/busybox"] = arm64ELF
			return im
		}, []string{"linux/amd64: 1 ELF files for EM_AARCH64 (e_machine 183), want EM_X86_64 (62): /bin/busybox"}},
		{"config-says-amd64", mediaIndex, func() []image {
			im := good()
			im[1].configArch = "amd64"
			return im
		}, []string{"the index says linux/arm64 but its config says linux/amd64"}},
		{"one-platform", mediaIndex, func() []image { return good()[:1] }, []string{"the index has no linux/arm64"}},
		{"extra-platform", mediaIndex, func() []image {
			return append(good(), image{platform: "linux/s390x", files: map[string][]byte{"/bin/x": elfHeader(elf.EM_S390, elf.ELFDATA2MSB)}})
		}, []string{"the index has linux/s390x, which was not asked for"}},
		{"no-elf", mediaIndex, func() []image {
			im := good()
			im[1].files = map[string][]byte{"/etc/passwd": []byte("root:x:0:0::/:/bin/sh\n")}
			return im
		}, []string{"linux/arm64: no ELF file in its 1 layers"}},
		{"single-platform-archive", mediaManifest, good, []string{"want an image index"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := CheckArchive(writeArchive(t, c.top, c.images()...), both)
			if err == nil {
				t.Fatal("the check passed")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}
