package realbuild

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Blob reads one blob of repo (host:port/name) from a plain-HTTP registry
// such as the tests' loopback ones (with RegistryClient), and checks its digest: skopeo reads
// manifests and images, not a lone blob such as an attached SBOM.
func Blob(ctx context.Context, repo, digest string) ([]byte, error) {
	host, name, _ := strings.Cut(repo, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/"+name+"/blobs/"+digest, nil)
	if err != nil {
		return nil, err
	}
	resp, err := RegistryClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET blob %s of %s: %s", digest, repo, resp.Status)
	}
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(b)); got != digest {
		return nil, fmt.Errorf("blob %s of %s has digest %s", digest, repo, got)
	}
	return b, nil
}
