package version

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestResolve(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/meshplug/meshplug", Version: "v0.0.0-20261206174200-b691700aaaaa"}}
		if rev != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.revision", Value: rev})
		}
		if modified != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.modified", Value: modified})
		}
		return bi
	}
	for _, tc := range []struct {
		name                string
		ldVersion, ldCommit string
		bi                  *debug.BuildInfo
		version, commit     string
	}{
		{"ldflags win", "v0.3.0", "abc123", vcs("def456", "true"), "v0.3.0", "abc123"},
		{"ldflags dirty kept", "v0.3.0-dirty", "abc123-dirty", vcs("abc123", "false"), "v0.3.0-dirty", "abc123-dirty"},
		{"clean checkout", "", "", vcs("def456", "false"), "v0.0.0-20261206174200-b691700aaaaa", "def456"},
		{"dirty checkout", "", "", vcs("def456", "true"), "v0.0.0-20261206174200-b691700aaaaa", "def456-dirty"},
		{"version only from ldflags", "v1.0.0", "", vcs("def456", "true"), "v1.0.0", "def456-dirty"},
		{"no vcs", "", "", vcs("", ""), "v0.0.0-20261206174200-b691700aaaaa", "unknown"},
		{"no build info", "", "", nil, "(devel)", "unknown"},
		{"devel", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "(devel)", "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := resolve(tc.ldVersion, tc.ldCommit, tc.bi)
			assert.Equal(t, tc.version, in.Version)
			assert.Equal(t, tc.commit, in.Commit)
			assert.Equal(t, runtime.GOOS+"/"+runtime.GOARCH, in.Platform)
			assert.Equal(t, "meshplug "+tc.version+" commit "+tc.commit+" "+in.GoVersion+" "+in.Platform, in.String())
		})
	}
}
