package release

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// VersionPackage is where -ldflags -X sets the version and commit.
const VersionPackage = "github.com/meshplug/meshplug/internal/version"

// GitInfo is what a build takes from the checkout.
type GitInfo struct {
	// Version is `git describe --tags --match 'v[0-9]*'` (v0.3.0, or v0.3.0-2-gb691700
	// after the tag), "v0.0.0-<12 hex of the commit>" when no tag is reachable, with
	// "-dirty" appended when the tree has uncommitted changes.
	Version string
	// Commit is the full commit hash, with "-dirty" when the tree has uncommitted
	// changes (tracked or untracked files, as Go's vcs.modified counts them).
	Commit string
	// Dirty tells whether the tree has uncommitted changes.
	Dirty bool
	// Time is the commit time: the images' created time.
	Time time.Time
}

// Git reads GitInfo from the checkout at dir.
func Git(ctx context.Context, dir string) (GitInfo, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		var errb bytes.Buffer
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
		}
		return strings.TrimSpace(string(out)), nil
	}
	var g GitInfo
	var err error
	if g.Commit, err = git("rev-parse", "HEAD"); err != nil {
		return g, err
	}
	ct, err := git("log", "-1", "--format=%ct", "HEAD")
	if err != nil {
		return g, err
	}
	sec, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return g, fmt.Errorf("commit time %q: %w", ct, err)
	}
	g.Time = time.Unix(sec, 0).UTC()
	if g.Version, err = git("describe", "--tags", "--match", "v[0-9]*"); err != nil {
		g.Version = "v0.0.0-" + g.Commit[:12]
	}
	st, err := git("status", "--porcelain")
	if err != nil {
		return g, err
	}
	if st != "" {
		g.Dirty = true
		g.Version += "-dirty"
		g.Commit += "-dirty"
	}
	return g, nil
}

// BinaryOptions build the meshplug binary for the image.
type BinaryOptions struct {
	// Dir is the module root (the repository).
	Dir string
	// Out is the file to write.
	Out string
	// Arch is the GOARCH (GOOS is linux).
	Arch string
	// Version and Commit are linked into internal/version.
	Version, Commit string
}

// LDFlags are the linker flags of a release build: stripped, version and commit set.
func LDFlags(version, commit string) string {
	return fmt.Sprintf("-s -w -X %s.version=%s -X %s.commit=%s", VersionPackage, version, VersionPackage, commit)
}

// BuildBinary runs `go build` for ./cmd/meshplug: CGO_ENABLED=0 (static, no libc
// needed in the image), GOOS=linux, -trimpath (no build machine paths), LDFlags. The
// same source and toolchain give the same bytes.
func BuildBinary(ctx context.Context, o BinaryOptions) error {
	for _, v := range []string{o.Version, o.Commit} {
		if v == "" || strings.ContainsAny(v, " \t\n'\"") {
			return fmt.Errorf("version and commit must be single words, got %q", v)
		}
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", LDFlags(o.Version, o.Commit), "-o", o.Out, "./cmd/meshplug")
	cmd.Dir = o.Dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.Arch, "GOFLAGS=-mod=readonly")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cmd/meshplug: %v\n%s", err, out)
	}
	return nil
}
