package release

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGit reads the version and commit of a scratch repository through its history:
// no tag, a tag, commits after it, and trees with changes (tracked or untracked),
// which make both the version and the commit say -dirty.
func TestGit(t *testing.T) {
	dir := t.TempDir()
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
			"GIT_COMMITTER_EMAIL=t@example.com", "GIT_COMMITTER_DATE=2026-12-01T10:00:00Z", "GIT_AUTHOR_DATE=2026-12-01T10:00:00Z")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %v: %s", args, out)
		return string(out[:len(out)-min(1, len(out))])
	}
	write := func(name, s string) { require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644)) }
	ctx := context.Background()

	_, err := Git(ctx, dir)
	assert.ErrorContains(t, err, "git rev-parse HEAD", "not a checkout")

	git("init", "-q")
	write("a", "1")
	git("add", "a")
	git("commit", "-q", "-m", "one")
	head := git("rev-parse", "HEAD")
	for _, tc := range []struct {
		name            string
		do              func()
		version, commit string
		dirty           bool
	}{
		{"no tag", func() {}, "v0.0.0-" + head[:12], head, false},
		{"untracked file", func() { write("b", "new") }, "v0.0.0-" + head[:12] + "-dirty", head + "-dirty", true},
		{"tagged", func() { require.NoError(t, os.Remove(filepath.Join(dir, "b"))); git("tag", "v1.2.3") }, "v1.2.3", head, false},
		{"changed file", func() { write("a", "2") }, "v1.2.3-dirty", head + "-dirty", true},
		{"staged change", func() { git("add", "a") }, "v1.2.3-dirty", head + "-dirty", true},
		{"commit after the tag", func() { git("commit", "-q", "-m", "two"); head = git("rev-parse", "HEAD") }, "", "", false},
		{"other tags are not versions", func() { git("tag", "release-candidate") }, "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.do()
			g, err := Git(ctx, dir)
			require.NoError(t, err)
			if tc.version == "" {
				tc.version, tc.commit = "v1.2.3-1-g"+head[:7], head
			}
			assert.Equal(t, tc.version, g.Version)
			assert.Equal(t, tc.commit, g.Commit)
			assert.Equal(t, tc.dirty, g.Dirty)
			assert.True(t, g.Time.Equal(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)), g.Time)
		})
	}
}

func TestBuildBinaryRefusesOddVersions(t *testing.T) {
	for _, v := range []string{"", "v1 -X main.evil=1", "v1'", "a\nb"} {
		err := BuildBinary(context.Background(), BinaryOptions{Dir: "../..", Out: filepath.Join(t.TempDir(), "x"), Arch: "amd64", Version: v, Commit: "c"})
		assert.ErrorContains(t, err, "single words", v)
	}
}
