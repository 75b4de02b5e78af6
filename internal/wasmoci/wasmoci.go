// Package wasmoci packs a proxy-wasm module as an OCI image that Istio's agent pulls
// for a WasmPlugin with an oci:// url, and pushes and pulls such images with oras-go.
//
// The image is the *compat* variant of the Wasm image specification (solo-io/wasm
// spec-compat.md): exactly one layer of media type
// application/vnd.oci.image.layer.v1.tar+gzip holding plugin.wasm, and the manifest
// annotation module.wasm.image/variant=compat. Istio tries this variant first
// (pkg/wasm/imagefetcher.go, extractOCIStandardImage), and standard registries and
// tools (docker, crane, oras) handle it without custom media types. The *oci* variant,
// whose layer is the raw module as application/vnd.module.wasm.content.layer.v1+wasm,
// Istio accepts only with exactly two layers (extractOCIArtifactImage); it is not
// produced here.
//
// For an OCI url, the WasmPlugin's sha256 is the image *manifest* digest (Istio
// compares it with the digest of the manifest it fetched), not the module's.
//
// References: https://github.com/solo-io/wasm/blob/master/spec/spec-compat.md,
// https://istio.io/latest/docs/reference/config/proxy_extensions/wasm-plugin/
package wasmoci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
)

// Media types and annotation of the compat variant.
const (
	LayerMediaType    = ocispec.MediaTypeImageLayerGzip // application/vnd.oci.image.layer.v1.tar+gzip
	VariantAnnotation = "module.wasm.image/variant"
	VariantCompat     = "compat"
	// FileName is the module's name inside the layer.
	FileName = "plugin.wasm"
)

// Image is a packed module: the blobs and the manifest, ready to push.
type Image struct {
	Config, Layer, Manifest ocispec.Descriptor
	blobs                   map[digest.Digest][]byte
}

// Pack builds the compat image of wasm. The bytes are deterministic (fixed tar header,
// no gzip name or time), so packing the same module twice gives the same digests.
func Pack(wasm []byte) (*Image, error) {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	if err := tw.WriteHeader(&tar.Header{Name: FileName, Mode: 0o644, Size: int64(len(wasm)),
		ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(wasm); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	img := &Image{blobs: map[digest.Digest][]byte{}}
	img.Layer = img.add(LayerMediaType, gz.Bytes())
	cfg, err := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{Architecture: "wasm", OS: "wasip1"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(tarBuf.Bytes())}},
	})
	if err != nil {
		return nil, err
	}
	img.Config = img.add(ocispec.MediaTypeImageConfig, cfg)
	man, err := json.Marshal(ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      img.Config,
		Layers:      []ocispec.Descriptor{img.Layer},
		Annotations: map[string]string{VariantAnnotation: VariantCompat},
	})
	if err != nil {
		return nil, err
	}
	img.Manifest = img.add(ocispec.MediaTypeImageManifest, man)
	return img, nil
}

func (img *Image) add(mediaType string, b []byte) ocispec.Descriptor {
	d := content.NewDescriptorFromBytes(mediaType, b)
	img.blobs[d.Digest] = b
	return d
}

// Push stores the image in dst (an oras target: a remote.Repository, an in-memory
// store) and tags its manifest with tag.
func Push(ctx context.Context, dst oras.Target, img *Image, tag string) error {
	for _, d := range []ocispec.Descriptor{img.Layer, img.Config, img.Manifest} {
		ok, err := dst.Exists(ctx, d)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		if err := dst.Push(ctx, d, bytes.NewReader(img.blobs[d.Digest])); err != nil {
			return fmt.Errorf("pushing %s %s: %w", d.MediaType, d.Digest, err)
		}
	}
	return dst.Tag(ctx, img.Manifest, tag)
}

// Pull fetches ref (a tag or digest) from src as Istio's agent reads a compat image:
// the manifest, its one gzip layer, and plugin.wasm in it. Every blob is verified
// against its digest (oras' content.FetchAll). It returns the module and the manifest
// descriptor.
func Pull(ctx context.Context, src oras.ReadOnlyTarget, ref string) ([]byte, ocispec.Descriptor, error) {
	desc, err := src.Resolve(ctx, ref)
	if err != nil {
		return nil, desc, err
	}
	mb, err := content.FetchAll(ctx, src, desc)
	if err != nil {
		return nil, desc, err
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(mb, &man); err != nil {
		return nil, desc, fmt.Errorf("manifest: %w", err)
	}
	if len(man.Layers) != 1 || man.Layers[0].MediaType != LayerMediaType {
		return nil, desc, fmt.Errorf("not a compat Wasm image: want one %s layer, got %v", LayerMediaType, man.Layers)
	}
	lb, err := content.FetchAll(ctx, src, man.Layers[0])
	if err != nil {
		return nil, desc, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(lb))
	if err != nil {
		return nil, desc, err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, desc, fmt.Errorf("%s not found in the layer", FileName)
		}
		if err != nil {
			return nil, desc, err
		}
		if h.Name == FileName {
			b, err := io.ReadAll(tr)
			return b, desc, err
		}
	}
}
