package envoyfilters

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	"github.com/meshplug/meshplug/internal/wasmoci"
)

// NewModule is the Module that makes Istio's agent load wasm from url: for https:// and
// http:// the module's own sha256 (the agent hashes the downloaded file); for oci://
// the digest of the image manifest `meshplug push` makes of wasm (the agent compares the
// sha256 with the manifest it pulled, never with the module, and substitutes a deny-all
// or allow-all filter when they differ). An oci:// url that pins a digest
// (`…@sha256:<hex>`) must pin that same image: any other digest is a module the agent
// would refuse.
func NewModule(rawURL string, wasm []byte) (Module, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return Module{}, fmt.Errorf("module url %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "http", "https":
		sum := sha256.Sum256(wasm)
		return Module{URL: rawURL, SHA256: hex.EncodeToString(sum[:])}, nil
	case "oci":
		img, err := wasmoci.Pack(wasm)
		if err != nil {
			return Module{}, err
		}
		m := Module{URL: rawURL, SHA256: img.Manifest.Digest.Encoded()}
		if pinned, ok := ociPinnedDigest(rawURL); ok && pinned != m.SHA256 {
			return Module{}, fmt.Errorf("module url %q pins image sha256:%s, but the image meshplug push makes of this module is sha256:%s: "+
				"Istio's agent would pull the pinned image and refuse it (push with meshplug push and use the digest it prints, or a tag)", rawURL, pinned, m.SHA256)
		}
		return m, nil
	}
	return Module{}, fmt.Errorf("module url must start with oci://, https:// or http://, got %q", rawURL)
}

// ociPinnedDigest is the hex sha256 an oci:// url pins with `@sha256:`.
func ociPinnedDigest(rawURL string) (string, bool) {
	if !strings.HasPrefix(rawURL, "oci://") {
		return "", false
	}
	_, d, ok := strings.Cut(rawURL, "@")
	if !ok {
		return "", false
	}
	h, ok := strings.CutPrefix(d, "sha256:")
	return h, ok
}
