package cpphost

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/testenv"
)

// BuildGuest builds the guest in pkgDir (testenv.MustBuildGuest, memoized) and writes
// it to a file both hosts read.
func BuildGuest(t testing.TB, pkgDir string) string {
	t.Helper()
	wasm := testenv.MustBuildGuest(t, pkgDir)
	path := filepath.Join(t.TempDir(), filepath.Base(pkgDir)+".wasm")
	require.NoError(t, os.WriteFile(path, wasm, 0o644))
	return path
}

// Compare asserts that got (a cpp-host run) agrees with want (the testenv run) field by
// field: loads, then per request the decision (status, local reply, details,
// grpc-status), the response headers and body, what reached the upstream; then the
// metrics and the log messages.
func Compare(t testing.TB, want, got Outcome) {
	t.Helper()
	require.Len(t, got.Loads, len(want.Loads), "plugins")
	for i := range want.Loads {
		assert.Equal(t, want.Loads[i].Loaded && want.Loads[i].Started, got.Loads[i].Loaded && got.Loads[i].Started,
			"plugin %d loaded (cpp-host errors: %s)", i, got.Loads[i].Errors)
	}
	assert.Equal(t, fmt.Sprint(want.Reconfigures), fmt.Sprint(got.Reconfigures), "reconfigurations taken")
	require.Len(t, got.Results, len(want.Results), "results")
	for i := range want.Results {
		w, g := want.Results[i], got.Results[i]
		assert.Equal(t, w.Status, g.Status, "request %d: status", i)
		assert.Equal(t, w.LocalReply, g.LocalReply, "request %d: local reply", i)
		assert.Equal(t, w.Details, g.Details, "request %d: details", i)
		assert.Equal(t, w.GrpcStatus, g.GrpcStatus, "request %d: grpc-status", i)
		assert.Equal(t, w.Reset, g.Reset, "request %d: reset", i)
		assert.Equal(t, digest(w.Body), digest(g.Body), "request %d: body", i)
		assert.Equal(t, w.Headers, g.Headers, "request %d: response headers", i)
		assert.Equal(t, w.Trailers, g.Trailers, "request %d: response trailers", i)
		if assert.Equal(t, w.Upstream == nil, g.Upstream == nil, "request %d: reached the upstream", i) && w.Upstream != nil {
			assert.Equal(t, normalize(w.Upstream.Headers), normalize(g.Upstream.Headers), "request %d: upstream headers", i)
			assert.Equal(t, digest(w.Upstream.Body), digest(g.Upstream.Body), "request %d: upstream body", i)
			assert.Equal(t, w.Upstream.Trailers, g.Upstream.Trailers, "request %d: upstream trailers", i)
		}
		assert.Equal(t, w.Repeat, g.Repeat, "request %d: repeat counts", i)
	}
	wantMetrics, gotMetrics := maps.Clone(want.Metrics), maps.Clone(got.Metrics)
	for _, name := range want.seededMetrics {
		_, inWant := wantMetrics[name]
		_, inGot := gotMetrics[name]
		assert.True(t, inWant && inGot, "seeded metric %s on both hosts (testenv %v, cpp-host %v)", name, inWant, inGot)
		delete(wantMetrics, name)
		delete(gotMetrics, name)
	}
	assert.Equal(t, wantMetrics, gotMetrics, "metrics")
	assert.Equal(t, calloutLines(want.Callouts), calloutLines(got.Callouts), "callout requests")
	for name, n := range got.Histograms {
		assert.Len(t, want.histGet(name), n, "histogram %s: samples", name)
	}
	assert.Equal(t, messages(want.Logs), messages(got.Logs), "log messages")
	assert.Equal(t, hostFailures(want.Logs), hostFailures(got.Logs), "workers whose VM failure the host reported")
	require.NotNil(t, want.sharedGet, "want must come from RunTestenv")
	for _, prefix := range want.seeded {
		seeds := 0
		for vmID, kv := range got.SharedData {
			for k, v := range kv {
				if !strings.HasPrefix(k, prefix) || !strings.HasSuffix(k, "/seed") {
					continue
				}
				seeds++
				assert.Len(t, v, 2*16, "shared data %s/%s: a 16-byte seed (hex)", vmID, k)
				w, ok := want.sharedGet(vmID, k)
				if assert.True(t, ok, "shared data %s/%s is on cpp-host only", vmID, k) {
					assert.Len(t, w, 16, "shared data %s/%s on testenv", vmID, k)
				}
			}
		}
		assert.NotZero(t, seeds, "no seed under seeded shared data prefix %s", prefix)
	}
	for vmID, kv := range got.SharedData {
		for k, v := range kv {
			if slices.ContainsFunc(want.seeded, func(p string) bool { return strings.HasPrefix(k, p) }) {
				continue // layout depends on each host's random seed (Scenario.SeededSharedData)
			}
			w, ok := want.sharedGet(vmID, k)
			if assert.True(t, ok, "shared data %s/%s is on cpp-host only", vmID, k) {
				assert.Equal(t, hex.EncodeToString([]byte(w)), v, "shared data %s/%s (hex)", vmID, k)
			}
		}
	}
}

// messages is the sorted list of log lines, each with the worker that logged it,
// without those of the base VM and its configuration canary (Log.Phase "base"), which
// testenv does not run.
func messages(logs []Log) []string {
	out := []string{}
	for _, l := range logs {
		if l.Phase == "base" || l.Host {
			continue
		}
		msg := l.Message
		if strings.Contains(msg, "goroutine ") {
			// A Go stack trace's argument words (addresses on the goroutine's stack or
			// heap) depend on the guest's allocation and stack-growth history, which the
			// hosts' calls into the guest (proxy_on_memory_allocate for each buffer
			// they hand over) shape differently: compared without them.
			msg = traceArgs.ReplaceAllString(msg, "0x…")
		}
		out = append(out, fmt.Sprintf("w%d %s %s", l.Worker, l.Level, msg))
	}
	slices.Sort(out)
	return out
}

// calloutLines are the callout requests the workers' VMs made (those of the base VM
// and its configuration canary, worker -1, left out as for log lines), one line each:
// the step, then the request as the guest passed it. Requests of one step are sorted:
// work of several workers settled at the end of a step may interleave in another order.
func calloutLines(cs []Callout) []string {
	out := []string{}
	for _, c := range cs {
		if c.Worker < 0 {
			continue
		}
		line := fmt.Sprintf("step %04d w%d %s %q", c.Step, c.Worker, c.Kind, c.Cluster)
		if c.Service != "" || c.Method != "" {
			line += fmt.Sprintf(" %s/%s", c.Service, c.Method)
		}
		line += fmt.Sprintf(" timeout=%dms headers=%q", c.TimeoutMS, c.Headers)
		if len(c.Trailers) > 0 {
			line += fmt.Sprintf(" trailers=%q", c.Trailers)
		}
		line += fmt.Sprintf(" body=%q end_stream=%v", digest(c.Body()), c.EndStream)
		out = append(out, line)
	}
	slices.Sort(out)
	return out
}

// traceArgs matches the hex words of a Go stack trace's frames.
var traceArgs = regexp.MustCompile(`0x[0-9a-f]+`)

// normalize puts the pseudo-headers first, sorted (testenv reports them as fields of the
// upstream request, not in map order); regular headers keep their order.
func normalize(h [][2]string) [][2]string {
	var pseudo, regular [][2]string
	for _, p := range h {
		if len(p[0]) > 0 && p[0][0] == ':' {
			pseudo = append(pseudo, p)
		} else {
			regular = append(regular, p)
		}
	}
	slices.SortFunc(pseudo, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return append(pseudo, regular...)
}

// digest is a body as compared: itself up to 1 KiB, else its size, sha256 and ends (a
// failure must not print megabytes).
func digest(b string) string {
	if len(b) <= 1024 {
		return b
	}
	return fmt.Sprintf("%d bytes, sha256 %x, %q … %q", len(b), sha256.Sum256([]byte(b)), b[:64], b[len(b)-64:])
}

// hostFailures lists the workers whose VM failure the host reported (Log.Host), once
// each.
func hostFailures(logs []Log) []int {
	out := []int{}
	for _, l := range logs {
		if l.Host && l.Phase != "base" && !slices.Contains(out, l.Worker) {
			out = append(out, l.Worker)
		}
	}
	slices.Sort(out)
	return out
}
