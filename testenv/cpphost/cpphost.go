// Package cpphost runs meshplug's compiled .wasm filters on proxy-wasm-cpp-host, the host
// library Envoy embeds for Wasm, and on testenv, from one scenario, so the two hosts'
// answers can be compared field by field.
//
// The cpp-host side is a small C++ program of ours (driver/driver.cc) linked with
// cpp-host and the WAMR engine at the commits Envoy pinned in its release eras;
// hack/cpphost.sh builds one per era into ~/.cache/meshplug/cpphost-<commit>. See
// README.md for the scenario format and what the driver does not model.
package cpphost

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/testenv"
)

// Host eras: the proxy-wasm-cpp-host commit Envoy pinned, and which Envoy / Istio
// releases carry it (docs/compatibility.md).
const (
	Host52a0291 = "52a0291" // Envoy 1.39+ (cpp-host #533: every WASI import, poll_oneoff works)
	Host3930b7b = "3930b7b" // Envoy 1.33–1.38 (#427 only: poll_oneoff answers ENOSYS)
	Host63cb9c1 = "63cb9c1" // Envoy ≤ 1.32 (before #427: no sched_yield, poll_oneoff)
)

// Hosts lists the eras, newest first.
var Hosts = []string{Host52a0291, Host3930b7b, Host63cb9c1}

// Scenario is what both hosts run: a chain of plugins, then steps (requests, clock
// advances). The JSON form is what the driver reads.
type Scenario struct {
	Plugins []Plugin `json:"plugins"`
	// Workers is the number of worker threads (default 1). Each worker has its own VM
	// per VM key and its own root context per plugin (Envoy's thread-local plugin:
	// cpp-host's getOrCreateThreadLocalPlugin on each worker thread); shared data and
	// queues are the host's, across workers. Step.Worker picks the worker of a request.
	Workers int `json:"workers,omitempty"`
	// LogLevel is the host's log level (abi.LogLevel; default info).
	LogLevel abi.LogLevel `json:"log_level"`
	// NodeID is the xds.node.id property (testenv's is testenv.NodeID).
	NodeID string `json:"node_id,omitempty"`
	// StartUnixNS is the scripted clock's start (wall time); default 2026-01-01T00:00:00Z.
	StartUnixNS int64 `json:"start_unix_ns,omitempty"`
	// Callouts answers HTTP callouts by cluster name.
	Callouts map[string]CalloutAnswer `json:"callouts,omitempty"`
	// GrpcCallouts answers gRPC calls and streams by cluster name (the service argument
	// of proxy_grpc_call / proxy_grpc_stream as a raw cluster name; testenv calls a
	// loopback gRPC server).
	GrpcCallouts map[string]GrpcAnswer `json:"grpc_callouts,omitempty"`
	Steps        []Step                `json:"steps"`
	// SeededSharedData lists shared-data key prefixes whose layout depends on a random
	// seed the module draws from the host (ratelimit's table: slots are chosen by a keyed
	// hash under a secret seed stored at "<prefix><groups>/seed"). Compare checks that each run
	// holds a 16-byte seed under the prefix, and no entry of the prefix byte by byte: two hosts
	// draw two seeds. The decisions, headers and metrics are compared as always.
	SeededSharedData []string `json:"-"`
	// SeededMetrics lists metrics whose value depends on that seeded layout
	// (ratelimit's keys_tracked: a bucket that is full again is dropped when another
	// key's write lands in its entry, and which keys share an entry depends on the
	// seed). Compare checks that both hosts have each, not its value.
	SeededMetrics []string `json:"-"`
	// PollOneoffENOSYS runs testenv as the 3930b7b era's host answers poll_oneoff
	// (testenv.Options.PollOneoffENOSYS); the driver ignores it (each build is its era).
	PollOneoffENOSYS bool `json:"-"`
	// AllowOnHeadersStopIteration is Envoy's allow_on_headers_stop_iteration of the
	// wasm filter (testenv.Options.AllowOnHeadersStopIteration; cpp-host's
	// ContextBase field of that name, which 63cb9c1 does not have): a headers Pause
	// stays StopIteration, so the plugin still gets the body and holds the headers
	// until a body or trailers callback continues.
	AllowOnHeadersStopIteration bool `json:"allow_on_headers_stop_iteration,omitempty"`
}

// Plugin is one filter of the chain.
type Plugin struct {
	Name     string `json:"name"`
	RootID   string `json:"root_id"`
	VMID     string `json:"vm_id"`
	VMConfig string `json:"vm_config,omitempty"`
	Config   string `json:"config"`
	// Wasm is the module's path (testenv reads the same file).
	Wasm     string `json:"wasm"`
	FailOpen bool   `json:"fail_open,omitempty"`
	// FailReload is Envoy's failure_policy FAIL_RELOAD (1.34+; testenv.FailReload): a
	// later stream reloads a VM that failed at run time once ReloadBackoffMS (Envoy's
	// reload_config.backoff.base_interval, default 1000) passed on the scripted clock
	// since the worker's plugin was last loaded.
	FailReload      bool  `json:"fail_reload,omitempty"`
	ReloadBackoffMS int64 `json:"reload_backoff_ms,omitempty"`
	// Env is the VM's environment (Envoy's vm_config.environment_variables, Istio's
	// WasmPlugin vmConfig.env; testenv.Plugin.Env), which the guest reads through WASI
	// environ_get (the driver hands it to cpp-host's WasmBase, whose environ_get serves
	// it). A VM shared by vm_id keeps the environment of the plugin that created it.
	Env map[string]string `json:"env,omitempty"`
}

// CalloutAnswer is the response to an HTTP callout.
type CalloutAnswer struct {
	Status  int         `json:"status"`
	Headers [][2]string `json:"headers,omitempty"`
	Body    string      `json:"body,omitempty"`
	// Failure, instead of an answer, makes the callout fail as Envoy's async client
	// reports it: "timeout" (the router's 504 "upstream request timeout" once the
	// callout's timeout passed; testenv's server holds the request until then),
	// "connect" (503 "upstream connect error or disconnect/reset before headers. reset
	// reason: connection failure": testenv's server drops the connection), "reset"
	// (the response breaks off after its headers: the callback gets no headers, body
	// or trailers, and proxy_get_status answers BrokenConnection "reset").
	Failure string `json:"failure,omitempty"`
}

// GrpcAnswer is the answer to a gRPC call (or stream, see Messages): the response message (Code 0), or a
// non-OK status with its message (proxy_on_grpc_close, the message in
// proxy_get_status).
type GrpcAnswer struct {
	Code     uint32 `json:"code"`
	Message  string `json:"message,omitempty"`
	Response []byte `json:"-"`
	// ResponseHex carries Response to the driver.
	ResponseHex string `json:"response_hex,omitempty"`
	// Failure "timeout": the service answers nothing and the call's timeout passes
	// (testenv's server holds the call until the deadline, real time); Envoy's async
	// client then closes the call with grpc-status 14 "upstream request timeout" (its
	// router's 504, Grpc::Utility::httpToGrpcStatus).
	Failure string `json:"failure,omitempty"`
	// A gRPC stream (proxy_grpc_stream) is answered, after the client's first message,
	// with InitialMetadata, each of Messages (then no Response), TrailingMetadata, and
	// the status Code / Message (a unary call has no metadata callbacks in Envoy's
	// Wasm context).
	InitialMetadata  [][2]string `json:"initial_metadata,omitempty"`
	Messages         [][]byte    `json:"-"`
	TrailingMetadata [][2]string `json:"trailing_metadata,omitempty"`
	// MessagesHex carries Messages to the driver.
	MessagesHex []string `json:"messages_hex,omitempty"`
}

// noGrpcAnswer is what a gRPC cluster answers outside the steps that give its answer.
var noGrpcAnswer = GrpcAnswer{Code: 14, Message: "no answer in this step"}

// Step is a request (with the upstream's answer) or a clock advance.
type Step struct {
	Request   *Request  `json:"request,omitempty"`
	Upstream  *Upstream `json:"upstream,omitempty"`
	AdvanceMS int64     `json:"advance_ms,omitempty"`
	// Repeat sends the request this many times; the result is the last one's, with
	// counts (Result.Repeat).
	Repeat int `json:"repeat,omitempty"`
	// WaitMetric lets the callouts in flight finish: the driver answers them at once;
	// testenv, whose callouts go to real loopback servers, waits until the metric
	// reaches the value (a guest's own signal that the answer was handled).
	WaitMetric *MetricAtLeast `json:"wait_metric,omitempty"`
	// Worker is the worker (0 … Workers-1) that runs the request.
	Worker int `json:"worker,omitempty"`
	// Reconfigure delivers a new configuration to a plugin of the chain, as an xDS
	// update does (testenv.Host.Reconfigure; the driver's createWasm + thread-local
	// plugin for the new configuration, the old root context shut down). Whether it
	// was taken is Outcome.Reconfigures.
	Reconfigure *Reconfigure `json:"reconfigure,omitempty"`
	// Callouts replace the scenario's callout answers (by cluster) while this step
	// runs, e.g. an authorization service's answer per request.
	Callouts map[string]CalloutAnswer `json:"callouts,omitempty"`
	// GrpcCallouts replace the scenario's gRPC answers while this step runs (outside
	// the steps that name it, a cluster answers UNAVAILABLE "no answer in this step").
	GrpcCallouts map[string]GrpcAnswer `json:"grpc_callouts,omitempty"`
}

// Reconfigure is a new configuration for the plugin at index Plugin of the chain.
type Reconfigure struct {
	Plugin int    `json:"plugin"`
	Config string `json:"config"`
}

// MetricAtLeast names a metric and the value it must reach.
type MetricAtLeast struct {
	Name    string `json:"name"`
	AtLeast int64  `json:"at_least"`
}

// Request is a downstream request.
type Request struct {
	Method    string      `json:"method,omitempty"`
	Path      string      `json:"path,omitempty"`
	Authority string      `json:"authority,omitempty"`
	Scheme    string      `json:"scheme,omitempty"`
	Headers   [][2]string `json:"headers,omitempty"`
	// Body is sent in one piece; both hosts hand it to the filters in 16 KiB chunks, as
	// Envoy's HTTP/2 codec does with default frames (testenv.DefaultChunkSize).
	Body string `json:"body,omitempty"`
	// BodyChunks, instead of Body, is the body as the scenario chunks it: each chunk
	// is one body callback (the last with end_of_stream, unless Trailers follow).
	BodyChunks []string `json:"body_chunks,omitempty"`
	// Trailers end the request after its body.
	Trailers      [][2]string       `json:"trailers,omitempty"`
	SourceAddress string            `json:"source_address,omitempty"`
	Properties    map[string]string `json:"properties,omitempty"`
	// ClockStepMS moves the scripted clock this far while the request is in flight:
	// ticks run, so a plugin that paused the request waiting for one (fault's delay)
	// resumes or answers it (the driver moves the clock when a plugin pauses the
	// request at its headers, or after the request completed).
	ClockStepMS int64 `json:"clock_step_ms,omitempty"`
}

// Upstream is the upstream's response (default 200, no headers, empty body). Its body
// reaches the filters in 16 KiB chunks on both hosts.
type Upstream struct {
	Status   int         `json:"status,omitempty"`
	Headers  [][2]string `json:"headers,omitempty"`
	Body     string      `json:"body,omitempty"`
	Trailers [][2]string `json:"trailers,omitempty"`
}

// Result is what the client got for one request step.
type Result struct {
	Status     int         `json:"status"`
	Headers    [][2]string `json:"headers"`
	Body       string      `json:"body"`
	Trailers   [][2]string `json:"trailers,omitempty"`
	LocalReply bool        `json:"local_reply"`
	Details    string      `json:"details,omitempty"`
	GrpcStatus *int        `json:"grpc_status,omitempty"`
	Reset      bool        `json:"reset"`
	Paused     bool        `json:"paused,omitempty"`
	// Upstream is what reached the upstream (nil: nothing did).
	Upstream *Sent  `json:"upstream"`
	Repeat   *Stats `json:"repeat,omitempty"`
}

// Sent is the request as it reached the upstream.
type Sent struct {
	Headers  [][2]string `json:"headers"`
	Body     string      `json:"body"`
	Trailers [][2]string `json:"trailers,omitempty"`
}

// Callout is one callout request a guest made: an HTTP call, a gRPC call, a gRPC stream
// opened or a message sent on it (testenv.CalloutRequest's fields).
type Callout struct {
	// Step is the index of the step it was made in (-1: while the plugins started).
	Step int `json:"step"`
	// Worker is the worker whose VM made it (-1: the base VM or configuration canary).
	Worker int `json:"worker"`
	// Kind is "http", "grpc", "grpc_stream" or "grpc_send".
	Kind    string `json:"kind"`
	Cluster string `json:"cluster"`
	// Headers are an HTTP call's headers or a gRPC call's or stream's initial metadata,
	// in the guest's order.
	Headers  [][2]string `json:"headers,omitempty"`
	Trailers [][2]string `json:"trailers,omitempty"`
	// BodyHex is the HTTP body or the gRPC message, in hex.
	BodyHex   string `json:"body_hex,omitempty"`
	Service   string `json:"service,omitempty"`
	Method    string `json:"method,omitempty"`
	TimeoutMS int64  `json:"timeout_ms,omitempty"`
	EndStream bool   `json:"end_stream,omitempty"`
}

// Body returns the HTTP body or gRPC message.
func (c Callout) Body() string {
	b, _ := hex.DecodeString(c.BodyHex)
	return string(b)
}

// Header returns the values of the header (or metadata) name, in order.
func (c Callout) Header(name string) []string {
	var out []string
	for _, h := range c.Headers {
		if h[0] == name {
			out = append(out, h[1])
		}
	}
	return out
}

// CalloutsIn returns the callouts made in step i (by a worker, not at the canary).
func (o *Outcome) CalloutsIn(i int) []Callout {
	var out []Callout
	for _, c := range o.Callouts {
		if c.Step == i && c.Worker >= 0 {
			out = append(out, c)
		}
	}
	return out
}

// Stats counts a repeated step's outcomes.
type Stats struct {
	Count    int            `json:"count"`
	Statuses map[string]int `json:"statuses"`
	// FirstFailure is the index of the first request answered by a failed VM
	// (details wasm_fail_stream), -1 if none was.
	FirstFailure int `json:"first_failure"`
}

// Load says whether a plugin loaded (createWasm + canary) and started on the worker.
type Load struct {
	Name    string `json:"name"`
	Loaded  bool   `json:"loaded"`
	Started bool   `json:"started"`
	Errors  string `json:"errors"`
}

// Log is one log line.
type Log struct {
	Level   abi.LogLevel `json:"level"`
	Plugin  string       `json:"plugin"`
	Message string       `json:"message"`
	// Worker is the worker whose VM logged the line (-1: the main thread's base VM and
	// configuration canary, Phase "base").
	Worker int `json:"worker"`
	// Host marks the host's own report of a VM failure (a trap, a failed call), whose
	// text is the engine's (wazero's "wasm trap: wasm error: unreachable…", WAMR's
	// "Function: … failed: Exception: unreachable"): Compare checks that both hosts
	// report one, not the text.
	Host bool `json:"host,omitempty"`
	// Phase is "base" for lines logged while createWasm ran: the base VM and its
	// configuration canary (cpp-host's WasmHandleBase::canary starts and configures
	// the plugin in a throwaway clone), which testenv does not run.
	Phase string `json:"phase,omitempty"`
}

// Outcome is everything a run produced.
type Outcome struct {
	Host    string   `json:"host"`
	Loads   []Load   `json:"loads"`
	Results []Result `json:"results"`
	// Reconfigures says, per Reconfigure step, whether the configuration was taken.
	Reconfigures []bool           `json:"reconfigures"`
	Logs         []Log            `json:"logs"`
	Metrics      map[string]int64 `json:"metrics"` // counters and gauges
	// Histograms counts the samples recorded per histogram (cpp-host runs).
	Histograms map[string]int               `json:"histograms"`
	SharedData map[string]map[string]string `json:"shared_data"` // vm_id → key → hex of the value (cpp-host runs)
	VMFailed   bool                         `json:"vm_failed"`
	// Callouts are the callout requests the guests made and the host accepted, as
	// each guest passed them to the host (the driver's httpCall / grpcCall / grpcStream
	// / grpcSend; testenv's Options.OnCallout at the same ABI calls), in order.
	Callouts []Callout `json:"sent"`
	// sharedGet reads testenv's shared data (testenv lists no keys: Compare looks up
	// the keys the cpp-host run reported).
	sharedGet func(vmID, key string) (string, bool)
	// histGet reads testenv's histogram samples.
	histGet func(name string) []uint64
	// seeded is the scenario's SeededSharedData (testenv runs).
	seeded []string
	// seededMetrics is the scenario's SeededMetrics (testenv runs).
	seededMetrics []string
}

// Loaded reports whether every plugin loaded and started.
func (o *Outcome) Loaded() bool {
	for _, l := range o.Loads {
		if !l.Loaded || !l.Started {
			return false
		}
	}
	return len(o.Loads) > 0
}

// Statuses returns each result's status, in step order.
func (o *Outcome) Statuses() []int {
	var s []int
	for _, r := range o.Results {
		s = append(s, r.Status)
	}
	return s
}

// Shared returns the shared data value under key in vmID's namespace, from either host's
// run.
func (o *Outcome) Shared(vmID, key string) (string, bool) {
	if o.sharedGet != nil {
		return o.sharedGet(vmID, key)
	}
	h, ok := o.SharedData[vmID][key]
	if !ok {
		return "", false
	}
	b, err := hex.DecodeString(h)
	return string(b), err == nil
}

// repoRoot is the repository's root (this file is testenv/cpphost/cpphost.go).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// DriverHash is the hash hack/cpphost.sh records for the driver's sources (driver.cc
// files, then the script), so a stale build is not used.
func DriverHash() (string, error) {
	root := repoRoot()
	files, err := filepath.Glob(filepath.Join(root, "testenv", "cpphost", "driver", "*.cc"))
	if err != nil {
		return "", err
	}
	slices.Sort(files)
	files = append(files, filepath.Join(root, "hack", "cpphost.sh"))
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CacheDir is where hack/cpphost.sh puts the hosts.
func CacheDir() string {
	if d := os.Getenv("MESHPLUG_CPPHOST_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "meshplug")
}

// Binary returns the driver built for host, or why there is none usable.
func Binary(host string) (string, error) {
	dir := filepath.Join(CacheDir(), "cpphost-"+host)
	bin := filepath.Join(dir, "meshplug-cpphost")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("cpp-host %s is not built (%v): run hack/cpphost.sh", host, err)
	}
	inputs, err := os.ReadFile(filepath.Join(dir, "inputs"))
	if err != nil {
		return "", fmt.Errorf("cpp-host %s: %v: run hack/cpphost.sh", host, err)
	}
	want, err := DriverHash()
	if err != nil {
		return "", err
	}
	if !strings.Contains(string(inputs), "driver="+want) {
		return "", fmt.Errorf("cpp-host %s was built from other driver sources: run hack/cpphost.sh", host)
	}
	return bin, nil
}

// RequireBinary returns host's driver; without one the test is skipped, or fails
// under CI=true (CI must build the hosts: .ci/run, make test-deps).
func RequireBinary(t testing.TB, host string) string {
	t.Helper()
	bin, err := Binary(host)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %v", err)
		}
		t.Skip(err)
	}
	return bin
}

// RunCppHost runs sc on host's driver.
func RunCppHost(t testing.TB, host string, sc Scenario) Outcome {
	t.Helper()
	bin := RequireBinary(t, host)
	if sc.NodeID == "" {
		sc.NodeID = testenv.NodeID
	}
	if sc.LogLevel == 0 {
		sc.LogLevel = abi.LogInfo // testenv's default, Envoy's --log-level info
	}
	sc.GrpcCallouts = withHex(sc.GrpcCallouts)
	steps := slices.Clone(sc.Steps)
	for i := range steps {
		steps[i].GrpcCallouts = withHex(steps[i].GrpcCallouts)
	}
	sc.Steps = steps
	in, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cpp-host %s driver: %v\nstderr: %s", host, err, tail(stderr.String()))
	}
	var out Outcome
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("cpp-host %s driver output: %v\n%s", host, err, tail(stdout.String()))
	}
	return out
}

// withHex returns a copy of m whose answers carry their responses in hex.
func withHex(m map[string]GrpcAnswer) map[string]GrpcAnswer {
	if m == nil {
		return nil
	}
	out := make(map[string]GrpcAnswer, len(m))
	for k, a := range m {
		a.ResponseHex = hex.EncodeToString(a.Response)
		a.MessagesHex = nil
		for _, m := range a.Messages {
			a.MessagesHex = append(a.MessagesHex, hex.EncodeToString(m))
		}
		out[k] = a
	}
	return out
}

func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}

// DefaultStart is the scripted clock's default start, as in the driver.
var DefaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// RunTestenv runs sc on testenv (one worker, a FakeClock at the scenario's start).
func RunTestenv(t testing.TB, sc Scenario) Outcome {
	t.Helper()
	start := DefaultStart
	if sc.StartUnixNS != 0 {
		start = time.Unix(0, sc.StartUnixNS).UTC()
	}
	clock := testenv.NewFakeClock(start)
	// One loopback server per cluster answers with the step's answer, else the
	// scenario's (steps run one at a time).
	var answerMu sync.Mutex
	var stepAnswers map[string]CalloutAnswer
	var stepGrpc map[string]GrpcAnswer
	answer := func(cluster string) (CalloutAnswer, bool) {
		answerMu.Lock()
		defer answerMu.Unlock()
		if a, ok := stepAnswers[cluster]; ok {
			return a, true
		}
		a, ok := sc.Callouts[cluster]
		return a, ok
	}
	clusters := map[string]string{}
	stop := make(chan struct{})
	var stopOnce sync.Once
	addCluster := func(name string) {
		if _, ok := clusters[name]; ok {
			return
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a, _ := answer(name)
			switch a.Failure {
			case "timeout":
				// The callout's timeout cancels the request (the server notices the
				// closed connection once the body was read); the run's end frees it.
				_, _ = io.Copy(io.Discard, r.Body)
				select {
				case <-r.Context().Done():
				case <-stop:
				}
				return
			case "connect", "reset":
				conn, buf, err := hijack(w)
				if err != nil {
					return
				}
				if a.Failure == "reset" {
					_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
					_ = buf.Flush()
				}
				_ = conn.Close()
				return
			}
			// Exactly the answer's headers, in its order, then content-length, as the
			// driver answers (net/http would sort them and add Date and a sniffed
			// Content-Type): written on the hijacked connection, which then closes.
			_, _ = io.Copy(io.Discard, r.Body)
			conn, buf, err := hijack(w)
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", a.Status, http.StatusText(a.Status))
			for _, h := range a.Headers {
				if !strings.EqualFold(h[0], "content-length") {
					fmt.Fprintf(buf, "%s: %s\r\n", h[0], h[1])
				}
			}
			fmt.Fprintf(buf, "Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(a.Body), a.Body)
			_ = buf.Flush()
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { stopOnce.Do(func() { close(stop) }) }) // runs before srv.Close
		clusters[name] = strings.TrimPrefix(srv.URL, "http://")
	}
	grpcAnswer := func(cluster string) GrpcAnswer {
		answerMu.Lock()
		defer answerMu.Unlock()
		if a, ok := stepGrpc[cluster]; ok {
			return a
		}
		if a, ok := sc.GrpcCallouts[cluster]; ok {
			return a
		}
		return noGrpcAnswer
	}
	addGrpc := func(name string) {
		if _, ok := clusters[name]; ok {
			return
		}
		clusters[name] = grpcServer(t, func() GrpcAnswer { return grpcAnswer(name) })
	}
	for name := range sc.GrpcCallouts {
		addGrpc(name)
	}
	for _, st := range sc.Steps {
		for name := range st.GrpcCallouts {
			addGrpc(name)
		}
	}
	for name := range sc.Callouts {
		addCluster(name)
	}
	for _, st := range sc.Steps {
		for name := range st.Callouts {
			addCluster(name)
		}
	}
	var plugins []testenv.Plugin
	for _, p := range sc.Plugins {
		wasm, err := os.ReadFile(p.Wasm)
		if err != nil {
			t.Fatal(err)
		}
		tp := testenv.Plugin{Name: p.Name, RootID: p.RootID, VMID: p.VMID, Wasm: wasm,
			Config: []byte(p.Config), VMConfig: []byte(p.VMConfig), Env: p.Env}
		if p.FailOpen {
			tp.FailurePolicy = testenv.FailOpen
		}
		if p.FailReload {
			tp.FailurePolicy = testenv.FailReload
			tp.ReloadBackoff = time.Duration(p.ReloadBackoffMS) * time.Millisecond
		}
		plugins = append(plugins, tp)
	}
	level := sc.LogLevel
	if level == 0 {
		level = abi.LogInfo
	}
	out := Outcome{Host: "testenv", Metrics: map[string]int64{}, SharedData: map[string]map[string]string{}}
	// The upstream answers with the current step's Upstream (one worker, one stream at
	// a time).
	var current *Upstream
	upstream := func(*testenv.UpstreamRequest) *testenv.UpstreamResponse {
		up := current
		if up == nil {
			up = &Upstream{}
		}
		status := up.Status
		if status == 0 {
			status = 200
		}
		return &testenv.UpstreamResponse{Status: status, Headers: up.Headers, Body: []byte(up.Body), Trailers: up.Trailers}
	}
	// The callout requests as the guest passed them to the host, each with the step
	// running when it was made (-1 while the plugins start).
	var sentMu sync.Mutex
	step := -1
	var sent []Callout
	onCallout := func(c testenv.CalloutRequest) {
		sentMu.Lock()
		defer sentMu.Unlock()
		sent = append(sent, Callout{Step: step, Worker: c.Worker, Kind: c.Kind, Cluster: c.Cluster,
			Headers: pairs(c.Headers), Trailers: pairs(c.Trailers), BodyHex: hex.EncodeToString(c.Body),
			Service: c.Service, Method: c.Method, TimeoutMS: c.TimeoutMS, EndStream: c.EndStream})
	}
	h, err := testenv.New(context.Background(), testenv.Options{Workers: max(sc.Workers, 1), Clock: clock, Clusters: clusters,
		LogLevel: level, Upstream: upstream, PollOneoffENOSYS: sc.PollOneoffENOSYS,
		AllowOnHeadersStopIteration: sc.AllowOnHeadersStopIteration, OnCallout: onCallout}, plugins...)
	for _, p := range sc.Plugins {
		l := Load{Name: p.Name, Loaded: err == nil, Started: err == nil}
		if err != nil {
			l.Errors = err.Error()
		}
		out.Loads = append(out.Loads, l)
	}
	if err != nil {
		return out
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	ctx := context.Background()
	// Work one worker posted to another (a shared queue's proxy_on_queue_ready) is
	// done by the end of each step, as the driver's settle does.
	h.Settle()
	for i, st := range sc.Steps {
		sentMu.Lock()
		step = i
		sentMu.Unlock()
		if st.AdvanceMS > 0 {
			clock.Advance(time.Duration(st.AdvanceMS) * time.Millisecond)
			h.Settle()
			continue
		}
		if w := st.WaitMetric; w != nil {
			waitMetric(t, h, w)
			h.Settle()
			continue
		}
		if rc := st.Reconfigure; rc != nil {
			out.Reconfigures = append(out.Reconfigures, h.Reconfigure(ctx, rc.Plugin, []byte(rc.Config)) == nil)
			h.Settle()
			continue
		}
		if st.Request == nil {
			continue
		}
		current = st.Upstream
		answerMu.Lock()
		stepAnswers, stepGrpc = st.Callouts, st.GrpcCallouts
		answerMu.Unlock()
		n := max(st.Repeat, 1)
		var last Result
		stats := &Stats{Count: n, Statuses: map[string]int{}, FirstFailure: -1}
		for i := range n {
			last = testenvRequest(ctx, t, h, clock, st)
			stats.Statuses[strconv.Itoa(last.Status)]++
			if stats.FirstFailure < 0 && last.Details == "wasm_fail_stream" {
				stats.FirstFailure = i
			}
		}
		if n > 1 {
			last.Repeat = stats
		}
		out.Results = append(out.Results, last)
		h.Settle()
		answerMu.Lock()
		stepAnswers, stepGrpc = nil, nil
		answerMu.Unlock()
	}
	for _, l := range h.Logs() {
		if l.Level >= level {
			host := l.Level == abi.LogCritical && (strings.HasPrefix(l.Message, "wasm trap: ") ||
				strings.HasPrefix(l.Message, "wasm vm exited"))
			lg := Log{Level: l.Level, Plugin: l.Plugin, Message: l.Message, Worker: l.Worker, Host: host}
			if l.Worker < 0 {
				lg.Phase = "base" // the configuration canary of a Reconfigure
			}
			out.Logs = append(out.Logs, lg)
		}
	}
	out.Metrics = h.Metrics()
	sentMu.Lock()
	out.Callouts = sent
	sentMu.Unlock()
	out.histGet = h.Histogram
	out.sharedGet = func(vmID, key string) (string, bool) {
		v, _, ok := h.SharedData(vmID, key)
		return string(v), ok
	}
	out.seeded = sc.SeededSharedData
	out.seededMetrics = sc.SeededMetrics
	return out
}

func testenvRequest(ctx context.Context, t testing.TB, h *testenv.Host, clock *testenv.FakeClock, st Step) Result {
	t.Helper()
	r := st.Request
	req := testenv.Request{Method: r.Method, Path: r.Path, Authority: r.Authority, Scheme: r.Scheme,
		Headers: r.Headers, SourceAddress: r.SourceAddress, Worker: st.Worker}
	if r.Body != "" {
		req.Body = []byte(r.Body)
	}
	if len(r.Properties) > 0 {
		req.Properties = map[string][]byte{}
		for k, v := range r.Properties {
			req.Properties[k] = []byte(v)
		}
	}
	var resp *testenv.Response
	var err error
	if chunked := len(r.BodyChunks) > 0 || len(r.Trailers) > 0; chunked || r.ClockStepMS > 0 {
		if chunked {
			// The scenario's chunking: each chunk is its own frame (Stream.Data).
			req.Body, req.OpenBody = nil, true
		}
		s := h.Start(req)
		chunks := r.BodyChunks
		if len(chunks) == 0 && r.Body != "" {
			chunks = []string{r.Body}
		}
		for i, c := range chunks {
			if !chunked {
				break
			}
			s.Data([]byte(c), i == len(chunks)-1 && len(r.Trailers) == 0)
		}
		if len(r.Trailers) > 0 {
			s.Trailers(r.Trailers)
		}
		if r.ClockStepMS > 0 {
			clock.Advance(time.Duration(r.ClockStepMS) * time.Millisecond)
		}
		resp, err = s.Wait(ctx)
	} else {
		resp, err = h.Do(ctx, req)
	}
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	res := Result{Status: resp.Status, Body: string(resp.Body), LocalReply: resp.LocalReply,
		Details: resp.Details, Reset: resp.Reset, Headers: pairs(resp.Headers)}
	if len(resp.Trailers) > 0 {
		res.Trailers = pairs(resp.Trailers)
	}
	if resp.GrpcStatus != nil {
		g := int(*resp.GrpcStatus)
		res.GrpcStatus = &g
	}
	if resp.Upstream != nil {
		u := resp.Upstream
		hs := append([][2]string{{":authority", u.Authority}, {":path", u.Path}, {":method", u.Method},
			{":scheme", u.Scheme}}, pairs(u.Headers)...)
		res.Upstream = &Sent{Headers: hs, Body: string(u.Body)}
		if len(u.Trailers) > 0 {
			res.Upstream.Trailers = pairs(u.Trailers)
		}
	}
	return res
}

func pairs(h testenv.Headers) [][2]string {
	out := make([][2]string, 0, len(h))
	for _, p := range h {
		out = append(out, [2]string{p.Key, p.Value})
	}
	return out
}

// waitMetric polls testenv until the metric reaches its value; it gives up after
// 5,000 polls 1 ms apart (a loopback callout takes well under that), failing the test.
func waitMetric(t testing.TB, h *testenv.Host, w *MetricAtLeast) {
	t.Helper()
	for range 5000 {
		if v, ok := h.Metric(w.Name); ok && v >= w.AtLeast {
			return
		}
		time.Sleep(time.Millisecond)
	}
	v, _ := h.Metric(w.Name)
	t.Fatalf("testenv: metric %s stayed at %d, want at least %d", w.Name, v, w.AtLeast)
}

// hijack takes over the loopback HTTP/1.1 server's connection, so that an answer is
// written byte for byte (or the connection dropped) as the scenario says.
func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("cpphost: no hijacker")
	}
	return hj.Hijack()
}
