package release

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"oras.land/oras-go/v2/content/oci"
	"sigs.k8s.io/yaml"

	"github.com/meshplug/meshplug/internal/wasmoci"
)

// Where a release is published by default (make release IMAGE_REPO=... MODULE_REPO=...).
const (
	DefaultImageRepo  = "ghcr.io/meshplug/meshplug"
	DefaultModuleRepo = "ghcr.io/meshplug/modules"
)

// Options of Write.
type Options struct {
	// Dir receives the release; it is replaced.
	Dir string
	// Repo is the repository root (deploy/ is read from it).
	Repo string
	// Image is the controller image (Image).
	Image v1.Image
	// Modules are the filters' .wasm by filter name (the same as in Image).
	Modules map[string][]byte
	// Version and Commit of the release.
	Version, Commit string
	// ImageRepo and ModuleRepo are where the image and the modules will be pushed:
	// the manifests name them.
	ImageRepo, ModuleRepo string
}

// Result is what Write wrote.
type Result struct {
	Version     string
	ImageRef    string            // <ImageRepo>:<version>@sha256:...
	ModuleRefs  map[string]string // filter -> oci://<ModuleRepo>/<filter>:<version>@sha256:...
	ImageDigest v1.Hash
}

// Digests is the release's digest list, one "name reference" line each, sorted.
func (r Result) Digests() string {
	var b strings.Builder
	fmt.Fprintf(&b, "image %s\n", r.ImageRef)
	names := make([]string, 0, len(r.ModuleRefs))
	for f := range r.ModuleRefs {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		fmt.Fprintf(&b, "module/%s %s\n", f, r.ModuleRefs[f])
	}
	return b.String()
}

// Write writes a release into o.Dir:
//
//	image/                 the controller image, an OCI layout (tag = version)
//	modules/<filter>/      each module as an Istio Wasm image (compat variant), an OCI layout
//	digests.txt            every image by digest (Result.Digests)
//	kustomize/             deploy/'s manifests with the image pinned by digest (kubectl apply -k)
//	helm-values.yaml       values for deploy/helm/meshplug pinning the image by digest
//
// Pushing is separate (hack/release push, meshplug push), so that what is pushed is
// exactly what was written and reviewed.
func Write(ctx context.Context, o Options) (Result, error) {
	r := Result{Version: o.Version, ModuleRefs: map[string]string{}}
	if err := os.RemoveAll(o.Dir); err != nil {
		return r, err
	}
	d, err := WriteLayout(filepath.Join(o.Dir, "image"), o.Image, o.Version)
	if err != nil {
		return r, err
	}
	r.ImageDigest = d
	r.ImageRef = o.ImageRepo + ":" + o.Version + "@" + d.String()
	for f, b := range o.Modules {
		img, err := wasmoci.Pack(b)
		if err != nil {
			return r, fmt.Errorf("module %s: %w", f, err)
		}
		store, err := oci.New(filepath.Join(o.Dir, "modules", f))
		if err != nil {
			return r, err
		}
		if err := wasmoci.Push(ctx, store, img, o.Version); err != nil {
			return r, fmt.Errorf("module %s: %w", f, err)
		}
		r.ModuleRefs[f] = "oci://" + o.ModuleRepo + "/" + f + ":" + o.Version + "@" + img.Manifest.Digest.String()
	}
	if err := os.WriteFile(filepath.Join(o.Dir, "digests.txt"), []byte(r.Digests()), 0o644); err != nil {
		return r, err
	}
	if err := writeKustomize(filepath.Join(o.Dir, "kustomize"), filepath.Join(o.Repo, "deploy"), o.ImageRepo, d); err != nil {
		return r, err
	}
	values, err := yaml.Marshal(map[string]any{
		"image": map[string]any{"repository": o.ImageRepo, "tag": o.Version, "digest": d.String()},
	})
	if err != nil {
		return r, err
	}
	head := fmt.Sprintf("# meshplug %s (commit %s): helm install meshplug deploy/helm/meshplug -f helm-values.yaml\n"+
		"# Modules from a registry instead of the controller: --set modules.source=oci,modules.oci.repository=%s\n", o.Version, o.Commit, o.ModuleRepo)
	return r, os.WriteFile(filepath.Join(o.Dir, "helm-values.yaml"), append([]byte(head), values...), 0o644)
}

// DeployImage is the image name deploy/controller/deployment.yaml uses; the release's
// kustomization replaces it.
const DeployImage = "ghcr.io/meshplug/meshplug"

// writeKustomize copies the resources of deploy/kustomization.yaml into dir and writes
// a kustomization listing them whose images transformer pins the controller image by
// digest.
func writeKustomize(dir, deploy, imageRepo string, d v1.Hash) error {
	kb, err := os.ReadFile(filepath.Join(deploy, "kustomization.yaml"))
	if err != nil {
		return err
	}
	var k map[string]any
	if err := yaml.UnmarshalStrict(kb, &k); err != nil {
		return fmt.Errorf("deploy/kustomization.yaml: %w", err)
	}
	res, _ := k["resources"].([]any)
	if len(res) == 0 {
		return fmt.Errorf("deploy/kustomization.yaml lists no resources")
	}
	for _, x := range res {
		p, ok := x.(string)
		if !ok || filepath.IsAbs(p) || strings.Contains(p, "..") {
			return fmt.Errorf("deploy/kustomization.yaml: resource %v: want a file under deploy/", x)
		}
		b, err := os.ReadFile(filepath.Join(deploy, p))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, p), b, 0o644); err != nil {
			return err
		}
	}
	k["images"] = []any{map[string]any{"name": DeployImage, "newName": imageRepo, "digest": d.String()}}
	out, err := yaml.Marshal(k)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "kustomization.yaml"), out, 0o644)
}
