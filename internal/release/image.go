// Package release builds what a meshplug release ships, without a Docker engine: the
// controller image (the static meshplug binary and the filters' .wasm modules on a
// minimal base made here), the modules as Istio Wasm OCI images, and the manifests that
// refer to both by digest. hack/release is its command line (make image, make release).
//
// Every output is reproducible: the same inputs (source tree, Go toolchain, modules,
// CA bundle, commit time) give the same bytes and so the same digests. Files in the
// layers have fixed owners, modes and times; the image's created time is the commit's.
package release

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where things are in the controller image.
const (
	// BinaryPath is the image's entrypoint.
	BinaryPath = "/usr/local/bin/meshplug"
	// ModulesDir holds <filter>.wasm (the controller's --wasm-dir).
	ModulesDir = "/modules"
	// CACertsPath is where Go's crypto/x509 looks first on Linux.
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	// DebianCACerts is the bundle Debian's ca-certificates package writes on the build
	// machine; the image copies it (DefaultCACerts).
	DebianCACerts = "/etc/ssl/certs/ca-certificates.crt"
	// UID and GID of the image's user, "nonroot" (as distroless and ko use).
	UID = 65532
	GID = 65532
)

// OCI annotation and label keys (image-spec annotations.md).
const (
	LabelSource   = "org.opencontainers.image.source"
	LabelRevision = "org.opencontainers.image.revision"
	LabelVersion  = "org.opencontainers.image.version"
	LabelCreated  = "org.opencontainers.image.created"
	LabelTitle    = "org.opencontainers.image.title"
	LabelRefName  = "org.opencontainers.image.ref.name"
)

// SourceURL is the repository the images name as their source.
const SourceURL = "https://github.com/meshplug/meshplug"

// ImageOptions are the inputs of the controller image.
type ImageOptions struct {
	// Binary is meshplug built for linux/Arch, statically (BuildBinary).
	Binary []byte
	// Modules are the filters' .wasm by filter name, placed at /modules/<filter>.wasm.
	Modules map[string][]byte
	// CACerts is a PEM bundle placed at CACertsPath.
	CACerts []byte
	// Arch is the GOARCH of Binary ("amd64").
	Arch string
	// Version and Commit are the release version and git commit (labels and
	// annotations; the binary carries its own, linked in).
	Version, Commit string
	// Created is the time written into the config, the history and every file of the
	// layers: the commit's time, so that rebuilding a commit gives the same digest.
	Created time.Time
}

// Image builds the controller image: three layers (base: passwd, group, nsswitch.conf,
// CA certificates, the nonroot home and /tmp; the binary; the modules), user 65532,
// entrypoint BinaryPath, OCI labels and manifest annotations source, revision, version
// and created. Media types are OCI's.
func Image(o ImageOptions) (v1.Image, error) {
	switch {
	case len(o.Binary) == 0:
		return nil, fmt.Errorf("image: no binary")
	case len(o.Modules) == 0:
		return nil, fmt.Errorf("image: no modules")
	case len(o.CACerts) == 0:
		return nil, fmt.Errorf("image: no CA certificates")
	case o.Arch == "" || o.Version == "" || o.Commit == "":
		return nil, fmt.Errorf("image: arch, version and commit are required")
	}
	t := o.Created.UTC()
	base := []file{
		dir("etc/", 0o755, 0), dir("etc/ssl/", 0o755, 0), dir("etc/ssl/certs/", 0o755, 0),
		reg("etc/passwd", 0o644, 0, []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID))),
		reg("etc/group", 0o644, 0, []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID))),
		// Go's resolver reads it: files (/etc/hosts) before DNS.
		reg("etc/nsswitch.conf", 0o644, 0, []byte("hosts: files dns\n")),
		reg(CACertsPath[1:], 0o644, 0, o.CACerts),
		dir("home/", 0o755, 0), dir("home/nonroot/", 0o700, UID),
		dir("tmp/", 0o1777, 0),
	}
	bin := []file{dir("usr/", 0o755, 0), dir("usr/local/", 0o755, 0), dir("usr/local/bin/", 0o755, 0),
		reg(BinaryPath[1:], 0o755, 0, o.Binary)}
	mods := []file{dir(ModulesDir[1:]+"/", 0o755, 0)}
	names := make([]string, 0, len(o.Modules))
	for n := range o.Modules {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if n == "" || path.Base(n) != n {
			return nil, fmt.Errorf("image: bad module name %q", n)
		}
		mods = append(mods, reg(ModulesDir[1:]+"/"+n+".wasm", 0o644, 0, o.Modules[n]))
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var adds []mutate.Addendum
	for _, l := range []struct {
		files []file
		by    string
	}{
		{base, "meshplug base: passwd, group, nsswitch.conf, CA certificates, /home/nonroot, /tmp"},
		{bin, "meshplug " + o.Version + " at " + BinaryPath},
		{mods, "filter modules in " + ModulesDir + ": " + fmt.Sprint(names)},
	} {
		layer, err := tarLayer(l.files, t)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: t}, CreatedBy: l.by}})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	labels := map[string]string{
		LabelSource:   SourceURL,
		LabelRevision: o.Commit,
		LabelVersion:  o.Version,
		LabelCreated:  t.Format(time.RFC3339),
		LabelTitle:    "meshplug",
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = o.Arch, "linux"
	cf.Created = v1.Time{Time: t}
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", UID, GID),
		Entrypoint: []string{BinaryPath},
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=" + CACertsPath},
		Labels:     labels,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, labels).(v1.Image), nil
}

type file struct {
	name string
	mode int64
	uid  int
	typ  byte
	data []byte
}

func dir(name string, mode int64, uid int) file { return file{name, mode, uid, tar.TypeDir, nil} }
func reg(name string, mode int64, uid int, b []byte) file {
	return file{name, mode, uid, tar.TypeReg, b}
}

// tarLayer writes files into a gzip layer with fixed headers: owner uid:uid, the given
// mode, time t, no user or group names, PAX format.
func tarLayer(files []file, t time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.uid, Typeflag: f.typ,
			Size: int64(len(f.data)), ModTime: t, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// WriteLayout writes img as a fresh OCI image layout in dir (removed first), its
// index entry annotated with refName (org.opencontainers.image.ref.name), and returns
// the manifest digest.
func WriteLayout(dir string, img v1.Image, refName string) (v1.Hash, error) {
	if err := os.RemoveAll(dir); err != nil {
		return v1.Hash{}, err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{LabelRefName: refName})); err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}

// ReadLayout returns the one image of the OCI layout in dir.
func ReadLayout(dir string) (v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("%s: want one image in the layout, got %d", dir, len(m.Manifests))
	}
	return idx.Image(m.Manifests[0].Digest)
}

// DefaultCACerts reads the build machine's Debian CA bundle (the ca-certificates
// package, installed on Debian and its derivatives).
func DefaultCACerts() ([]byte, error) {
	b, err := os.ReadFile(DebianCACerts)
	if err != nil {
		return nil, fmt.Errorf("CA certificates for the image: %w (apt-get install ca-certificates)", err)
	}
	return b, nil
}
