// Package version tells which meshplug this binary is: the release version and the
// commit it was built from.
//
// Release builds (make image, make release, make install) set both at link time:
//
//	-ldflags "-X github.com/meshplug/meshplug/internal/version.version=v0.3.0
//	          -X github.com/meshplug/meshplug/internal/version.commit=<sha>[-dirty]"
//
// A plain `go build` or `go install` falls back to what the Go toolchain stamps into the
// build information: the main module's version (a pseudo-version from the checkout, or
// "(devel)") and the vcs.revision / vcs.modified settings. A commit built from a tree
// with uncommitted changes always ends in "-dirty".
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set with -ldflags -X (see the package comment); empty otherwise.
var (
	version = ""
	commit  = ""
)

// Info is what `meshplug version` prints, the controller logs at start and its
// meshplug_build_info metric carries.
type Info struct {
	// Version is the release version ("v0.3.0", "v0.3.0-2-gb691700-dirty") or the
	// module version Go stamped ("(devel)" when it knows none).
	Version string `json:"version"`
	// Commit is the git commit, with "-dirty" when the tree had uncommitted changes;
	// "unknown" when the binary was built outside a checkout (or with -buildvcs=false).
	Commit string `json:"commit"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"goVersion"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

// Get returns this binary's Info.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, bi)
}

// resolve prefers the link-time values and falls back to the build information.
func resolve(ldVersion, ldCommit string, bi *debug.BuildInfo) Info {
	in := Info{Version: ldVersion, Commit: ldCommit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if in.Version == "" && bi.Main.Version != "" {
			in.Version = bi.Main.Version
		}
		if in.Commit == "" {
			var rev string
			var modified bool
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value == "true"
				}
			}
			if rev != "" {
				in.Commit = rev
				if modified {
					in.Commit += "-dirty"
				}
			}
		}
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
	}
	if in.Version == "" {
		in.Version = "(devel)"
	}
	if in.Commit == "" {
		in.Commit = "unknown"
	}
	return in
}

// String is the one line `meshplug version` prints:
// "meshplug v0.3.0 commit 0a1b2c… go1.26.8 linux/amd64".
func (i Info) String() string {
	return fmt.Sprintf("meshplug %s commit %s %s %s", i.Version, i.Commit, i.GoVersion, i.Platform)
}
