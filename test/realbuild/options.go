package realbuild

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestCA is a certificate authority the test makes, and the server
// certificate for 127.0.0.1 it signed.
type TestCA struct {
	CertPEM []byte // the CA's certificate, as a ca-bundle workspace holds it
	Pool    *x509.CertPool
	// ServerCert, ServerKey are PEM files for a server on 127.0.0.1.
	ServerCert, ServerKey string
}

// NewTestCA makes a CA and a server certificate for 127.0.0.1 (ECDSA P-256,
// a day long) in dir.
func NewTestCA(tb testing.TB, dir string) *TestCA {
	tb.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tekton-multiarch test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca := &TestCA{
		CertPEM:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		Pool:       x509.NewCertPool(),
		ServerCert: filepath.Join(dir, "server.crt"),
		ServerKey:  filepath.Join(dir, "server.key"),
	}
	ca.Pool.AddCert(caCert)
	if err := os.WriteFile(ca.ServerCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(ca.ServerKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return ca
}

// StartTLSRegistry starts a registry serving HTTPS with ca's server
// certificate.
func StartTLSRegistry(tb testing.TB, dir string, ca *TestCA) *Registry {
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	return startRegistry(tb, dir, &registryTLS{certFile: ca.ServerCert, keyFile: ca.ServerKey, client: client})
}

// Contents lists every repository of the registry with its tags: what a
// build-only run must leave as it found it.
func (r *Registry) Contents() (map[string][]string, error) {
	resp, err := r.client.Get(r.base + "/v2/_catalog?n=1000")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var cat struct {
		Repositories []string `json:"repositories"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cat); err != nil {
		return nil, fmt.Errorf("_catalog: %w", err)
	}
	out := map[string][]string{}
	for _, repo := range cat.Repositories {
		if out[repo], err = r.Tags(repo); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// OptionsFixture is the repository the build options' tests build: a
// Dockerfile FROM scratch (two architectures), a multi-stage one, one that
// reads a build secret and one FROM a base named by the BASE build arg.
type OptionsFixture struct {
	Name, URL, Commit string
}

// StagesDockerfile has two named stages, each leaving its own file.
const StagesDockerfile = `FROM scratch AS one
COPY stage.txt /stage-one
FROM scratch AS two
COPY stage.txt /stage-two
`

// SecretDockerfile proves it read the secret token by writing its hash;
// buildah mounts it at /run/secrets/token for that step only.
const SecretDockerfile = `ARG BASE
FROM ${BASE}
RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -d' ' -f1 >/token.sha256
`

// FromBaseDockerfile pulls its base from the registry BASE names.
const FromBaseDockerfile = `ARG BASE
FROM ${BASE}
COPY stage.txt /from-base
`

// Options makes the options fixture repository and serves it.
func (w *World) Options(tb testing.TB) *OptionsFixture {
	tb.Helper()
	commit := MakeGitRepo(tb, w.gitBase, "options", map[string]string{
		"Dockerfile":          "FROM scratch\nCOPY stage.txt /hello\n",
		"Dockerfile.stages":   StagesDockerfile,
		"Dockerfile.secret":   SecretDockerfile,
		"Dockerfile.frombase": FromBaseDockerfile,
		"stage.txt":           "options fixture\n",
	})
	f := &OptionsFixture{Name: "options.git", Commit: commit}
	f.URL = w.Git.URL(f.Name)
	w.Git.WaitReady(tb, f.URL)
	return f
}

// Labels reads an image's config labels from the registry.
func Labels(ctx context.Context, ref string) (map[string]string, error) {
	b, err := Skopeo(ctx, "inspect", "--config", "--raw", "--tls-verify=false", "docker://"+ref)
	if err != nil {
		return nil, err
	}
	var c struct {
		Config struct {
			Labels map[string]string `json:"Labels"`
		} `json:"config"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("config of %s: %w", ref, err)
	}
	return c.Config.Labels, nil
}

// IndexAnnotations reads an index's own annotations from the registry.
func IndexAnnotations(ctx context.Context, ref string) (map[string]string, error) {
	raw, err := RawManifest(ctx, ref)
	if err != nil {
		return nil, err
	}
	var ix struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &ix); err != nil {
		return nil, fmt.Errorf("index %s: %w", ref, err)
	}
	return ix.Annotations, nil
}

// ImageHolds lists the blobs of an image (its config and every layer,
// uncompressed) whose bytes contain needle: file contents and names alike.
func ImageHolds(ctx context.Context, ref, tmp string, needle []byte) ([]string, error) {
	dir, layers, err := copyImage(ctx, ref, tmp)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var found []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			gz, err := gzip.NewReader(bufio.NewReader(bytes.NewReader(b)))
			if err != nil {
				return nil, err
			}
			if b, err = io.ReadAll(gz); err != nil {
				return nil, err
			}
		}
		if bytes.Contains(b, needle) {
			found = append(found, e.Name())
		}
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("%s has no layers to scan", ref)
	}
	sort.Strings(found)
	return found, nil
}

// NodeBuildah extracts the buildah of the node images'
// (test/cluster/build-images.sh: the catalog's v1.40.1) into a directory
// of its own and returns that directory.
func NodeBuildah(ctx context.Context, tb testing.TB, repo string) string {
	tb.Helper()
	imgs := BuildNodeImages(tb, repo)
	b := imageFile(ctx, tb, imgs.Archive("BUILDAH_IMAGE"), "usr/bin/buildah")
	bin := filepath.Join(tb.TempDir(), "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "buildah"), b, 0o755); err != nil {
		tb.Fatal(err)
	}
	return bin
}

// imageFile reads the file at path (relative to /) from an image archive.
func imageFile(ctx context.Context, tb testing.TB, archive, path string) []byte {
	tb.Helper()
	dir, layers, err := copyToDir(ctx, "oci-archive:"+archive, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	for i := len(layers) - 1; i >= 0; i-- {
		b, ok, err := fileFromLayer(filepath.Join(dir, strings.TrimPrefix(layers[i], "sha256:")), path)
		if err != nil {
			tb.Fatal(err)
		}
		if ok {
			return b
		}
	}
	tb.Fatalf("the image %s has no /%s", archive, path)
	return nil
}
