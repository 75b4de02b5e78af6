// Command release builds meshplug's release artifacts without a Docker engine (see
// internal/release): `make image` and `make release` run it.
//
//	go run ./hack/release image   [-wasm-dir build] [-out build/oci/meshplug] [-arch amd64]
//	go run ./hack/release push    -layout build/oci/meshplug -ref ghcr.io/acme/meshplug:v0.3.0 [-insecure]
//	go run ./hack/release release [-wasm-dir build] [-out build/release] [-image-repo R] [-module-repo R]
//
// The version and commit come from the checkout (git describe, "-dirty" when the tree
// has uncommitted changes); VERSION overrides the version. The images' created time is
// the commit's, so rebuilding a commit gives the same digests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/controller"
	"github.com/meshplug/meshplug/internal/regauth"
	"github.com/meshplug/meshplug/internal/release"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: release image|push|release [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	wasmDir := fs.String("wasm-dir", "build", "directory holding the bundle meshplug.wasm and the filters' <filter>.wasm (make build)")
	arch := fs.String("arch", runtime.GOARCH, "GOARCH of the image")
	switch args[0] {
	case "image":
		out := fs.String("out", "build/oci/meshplug", "OCI layout to write")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		b, err := build(ctx, *wasmDir, *arch)
		if err != nil {
			return err
		}
		d, err := release.WriteLayout(*out, b.img, b.git.Version)
		if err != nil {
			return err
		}
		fmt.Printf("meshplug %s (%s, linux/%s) %s -> %s\n", b.git.Version, b.git.Commit, *arch, d, *out)
		return nil
	case "push":
		layout := fs.String("layout", "build/oci/meshplug", "OCI layout holding the image (make image)")
		ref := fs.String("ref", "", "registry/repository:tag to push to (required)")
		insecure := fs.Bool("insecure", false, "plain HTTP to the registry")
		config := fs.String("registry-config", "", "docker config file with the credentials (default: docker's)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *ref == "" {
			return errors.New("push: -ref is required")
		}
		img, err := release.ReadLayout(*layout)
		if err != nil {
			return err
		}
		store, err := regauth.Store(regauth.Options{ConfigPath: *config})
		if err != nil {
			return err
		}
		byDigest, err := release.PushImage(ctx, img, *ref, *insecure, regauth.Keychain(store))
		if err != nil {
			return err
		}
		fmt.Println(byDigest)
		return nil
	case "release":
		out := fs.String("out", "build/release", "directory to write the release into (replaced)")
		imageRepo := fs.String("image-repo", release.DefaultImageRepo, "repository the controller image is published to")
		moduleRepo := fs.String("module-repo", release.DefaultModuleRepo, "repository prefix the modules are published under (<prefix>/<filter>)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		b, err := build(ctx, *wasmDir, *arch)
		if err != nil {
			return err
		}
		r, err := release.Write(ctx, release.Options{Dir: *out, Repo: ".", Image: b.img, Modules: b.modules,
			Version: b.git.Version, Commit: b.git.Commit, ImageRepo: *imageRepo, ModuleRepo: *moduleRepo})
		if err != nil {
			return err
		}
		fmt.Print(r.Digests())
		return nil
	}
	return fmt.Errorf("unknown command %q: image, push or release", args[0])
}

type built struct {
	git     release.GitInfo
	img     v1.Image
	modules map[string][]byte
}

// filterNames are the filters of v1alpha1.Sections, whose <filter>.wasm a release
// carries beside the bundle meshplug.wasm.
func filterNames() []string {
	var names []string
	for _, s := range v1alpha1.Sections {
		names = append(names, s.Filter)
	}
	return names
}

func build(ctx context.Context, wasmDir, arch string) (*built, error) {
	g, err := release.Git(ctx, ".")
	if err != nil {
		return nil, err
	}
	if v := os.Getenv("VERSION"); v != "" {
		g.Version = v
	}
	mods, err := controller.LoadModules(wasmDir)
	if err != nil {
		return nil, err
	}
	modules := map[string][]byte{}
	for _, name := range append([]string{controller.Bundle}, filterNames()...) {
		if m, ok := mods.Get(name); ok {
			modules[name] = m.Data
		}
	}
	tmp, err := os.MkdirTemp("", "meshplug-release-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "meshplug")
	if err := release.BuildBinary(ctx, release.BinaryOptions{Dir: ".", Out: bin, Arch: arch, Version: g.Version, Commit: g.Commit}); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	ca, err := release.DefaultCACerts()
	if err != nil {
		return nil, err
	}
	img, err := release.Image(release.ImageOptions{Binary: data, Modules: modules, CACerts: ca, Arch: arch,
		Version: g.Version, Commit: g.Commit, Created: g.Time})
	if err != nil {
		return nil, err
	}
	return &built{git: g, img: img, modules: modules}, nil
}
