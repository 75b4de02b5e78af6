//go:build wasip1

package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	pw "github.com/meshplug/meshplug/filters/proxywasm"
)

func init() { pw.SetVMContext(&vm{}) }

// garbage keeps the "alloc" op's allocation from being optimised away.
var garbage []byte

// vmStarts and pluginsCreated count OnVMStart and NewPluginContext calls in this VM:
// plugins that share a VM (same vm_id and module) see each other's.
var vmStarts, pluginsCreated int

// config is the plugin configuration of the conformance guest.
type config struct {
	TickMillis       uint32 `json:"tick_ms"`
	Queue            string `json:"queue"`
	FailConfigure    bool   `json:"fail_configure"`
	PanicOnConfigure bool   `json:"panic_on_configure"`
	FailClosed       bool   `json:"fail_closed"`
	// StopTickOnDone switches this root context's tick off in OnPluginDone.
	StopTickOnDone bool `json:"stop_tick_on_done"`
}

type vm struct {
	pw.DefaultVMContext
	vmConfig string
}

func (v *vm) OnVMStart(size int) bool {
	vmStarts++
	b, err := pw.VMConfiguration.Bytes()
	if err != nil {
		pw.LogCriticalf("reading vm configuration: %v", err)
		return false
	}
	v.vmConfig = string(b)
	return true
}

func (v *vm) NewPluginContext(id uint32) pw.PluginContext {
	pluginsCreated++
	return &plugin{vm: v, id: id}
}

// OnPluginDone records the configuration of each plugin (root context) shut down.
func (p *plugin) OnPluginDone() bool {
	old, _, _ := pw.GetSharedData("plugins_done")
	pw.SetSharedData("plugins_done", append(old, []byte(p.rawCfg+";")...), 0)
	if p.cfg.StopTickOnDone {
		if err := pw.SetTickPeriod(0); err != nil {
			pw.LogErrorf("stopping the tick: %v", err)
		}
	}
	return true
}

type plugin struct {
	pw.DefaultPluginContext
	vm       *vm
	id       uint32
	cfg      config
	rawCfg   string
	cfgPart  string // PluginConfiguration.Get(1, 3) during configure, and its status
	queueID  uint32
	ticks    pw.Counter
	requests pw.Counter
}

func (p *plugin) OnPluginStart(size int) bool {
	b, err := pw.PluginConfiguration.Bytes()
	if err != nil {
		pw.LogCriticalf("reading plugin configuration: %v", err)
		return false
	}
	p.rawCfg = string(b)
	part, err := pw.PluginConfiguration.Get(1, 3)
	p.cfgPart = string(part) + "/" + st(err)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &p.cfg); err != nil {
			pw.LogCriticalf("configuration: %v", err)
			return false
		}
	}
	if p.cfg.PanicOnConfigure {
		panic("configure panicked on purpose")
	}
	if p.cfg.FailConfigure {
		pw.LogCritical("configuration refused on purpose")
		return false
	}
	if p.cfg.FailClosed {
		pw.SetFailurePolicy(pw.FailClosed)
	}
	if p.ticks, err = pw.DefineCounter("conformance.ticks"); err != nil {
		return false
	}
	if p.requests, err = pw.DefineCounter("conformance.requests"); err != nil {
		return false
	}
	if p.cfg.TickMillis > 0 {
		if err := pw.SetTickPeriod(time.Duration(p.cfg.TickMillis) * time.Millisecond); err != nil {
			return false
		}
	}
	if p.cfg.Queue != "" {
		if p.queueID, err = pw.RegisterSharedQueue(p.cfg.Queue); err != nil {
			pw.LogCriticalf("register queue: %v", err)
			return false
		}
	}
	return true
}

func (p *plugin) OnTick() {
	p.ticks.Increment(1)
	pw.SetSharedData("last_tick_ns", []byte(strconv.FormatInt(pw.Now().UnixNano(), 10)), 0)
}

// OnQueueReady moves every queued item into shared data under "queue_items".
func (p *plugin) OnQueueReady(id uint32) {
	var items []string
	for {
		b, err := pw.DequeueSharedQueue(id)
		if err != nil {
			if !errors.Is(err, abi.StatusEmpty) {
				pw.LogErrorf("dequeue: %v", err)
			}
			break
		}
		items = append(items, string(b))
	}
	old, _, _ := pw.GetSharedData("queue_items")
	all := strings.Trim(string(old)+","+strings.Join(items, ","), ",")
	pw.SetSharedData("queue_items", []byte(all), 0)
}

func (p *plugin) NewHttpContext(id uint32) pw.HttpContext {
	return &stream{plugin: p, id: id, report: map[string]any{}}
}

type stream struct {
	pw.DefaultHttpContext
	plugin *plugin
	id     uint32
	op     string
	report map[string]any

	grpcStream pw.GrpcStream
	// resumed: the http-call op's callout resumed the request; bodyCalls counts the
	// request body callbacks seen until then (Envoy's StopAllIteration: none).
	resumed   bool
	bodyCalls int
	cluster   string
	bodySizes []string // body sizes seen by the body op's callbacks
	second    string   // double-reply op: send a second reply from the response path
}

// getHeader reads a header like pw.HeaderMap.Get but reports the host's exact status
// when there is no value (not found, bad argument, ...): the conformance suite checks
// the host's answers, which Get folds into ok == false.
func getHeader(m pw.HeaderMap, name string) (string, error) {
	if v, ok := m.Get(name); ok {
		return v, nil
	}
	var data, size uint32
	return "", abi.Status(rawGetHeaderMapValue(uint32(m), name, &data, &size))
}

//go:wasmimport env proxy_get_header_map_value
func rawGetHeaderMapValue(mapType uint32, key string, retData, retSize *uint32) uint32

// st records the status of a host call as its name ("ok", "not found", ...).
func st(err error) string {
	if err == nil {
		return "ok"
	}
	var s abi.Status
	if errors.As(err, &s) {
		return s.String()
	}
	return err.Error()
}

func (s *stream) reply() pw.Action {
	body, _ := json.Marshal(s.report)
	if err := pw.SendHttpResponse(200, "conformance_report",
		[]abi.Pair{{Key: "content-type", Value: "application/json"}}, body, abi.GrpcStatusNone); err != nil {
		pw.LogErrorf("reply: %v", err)
	}
	return pw.Pause
}

func (s *stream) OnHttpRequestHeaders(numHeaders int, endOfStream bool) pw.Action {
	s.plugin.requests.Increment(1)
	op, err := getHeader(pw.RequestHeaders, "x-op")
	if err != nil {
		return pw.Continue // no op: a plain pass-through request
	}
	s.op = op
	s.report["num_headers"] = numHeaders
	s.report["end_of_stream"] = endOfStream
	switch op {
	case "headers":
		return s.opHeaders()
	case "properties":
		return s.opProperties()
	case "shared-data":
		return s.opSharedData()
	case "queue":
		return s.opQueue()
	case "metrics":
		return s.opMetrics()
	case "log":
		return s.opLog()
	case "time":
		ns := pw.Now().UnixNano()
		s.report["now_ns"] = strconv.FormatInt(ns, 10)
		last, _, err := pw.GetSharedData("last_tick_ns")
		s.report["last_tick_ns"] = string(last)
		s.report["last_tick_status"] = st(err)
		return s.reply()
	case "environ":
		return s.opEnviron()
	case "config":
		s.report["plugin_config"] = s.plugin.rawCfg
		s.report["vm_config"] = s.plugin.vm.vmConfig
		s.report["root_id"] = s.plugin.id
		s.report["context_id"] = s.id
		s.report["vm_starts"] = vmStarts
		s.report["plugins"] = pluginsCreated
		return s.reply()
	case "local-reply":
		return s.opLocalReply()
	case "http-call":
		return s.opHttpCall()
	case "grpc-call":
		return s.opGrpcCall()
	case "grpc-stream":
		return s.opGrpcStream()
	case "effective-context":
		s.report["unknown"] = st(pw.SetEffectiveContext(999999))
		s.report["self"] = st(pw.SetEffectiveContext(s.id))
		return s.reply()
	case "alloc":
		// 256 KiB of garbage: a GC cycle every few requests. The yield lets the
		// runtime's background goroutines (sweeper, scavenger) run, as GC work under
		// load does; the scavenger arms a timer, which turns on Go's poller.
		garbage = make([]byte, 256<<10)
		runtime.Gosched()
		s.report["allocated"] = len(garbage)
		return s.reply()
	case "panic":
		panic("request headers panicked on purpose")
	case "exit":
		// proc_exit: Envoy's host logs it and returns (cpp-host's
		// wasi_unstable_proc_exit), so the guest goes on and reports it.
		os.Exit(3)
		s.report["exit_returned"] = true
		return s.reply()
	case "fatal":
		// A VM failure the binding cannot recover: a Go fatal error (the runtime
		// prints it, calls proc_exit, then traps), which the host sees as a runtime
		// failure of the VM.
		var mu sync.Mutex
		mu.Unlock()
	case "panic-response":
		return pw.Continue
	case "reset":
		s.report["close"] = st(pw.ResetHttpStream())
		return pw.Pause
	case "body":
		// Hold the headers until the body is seen, so the body callback may still
		// change them (Envoy: StopIteration on headers, data keeps flowing to us).
		return pw.Pause
	case "resp-call":
		s.cluster, _ = pw.RequestHeaders.Get("x-cluster") // gone by the response
		return pw.Continue
	case "trailers", "response", "log-phase", "body-set", "add-trailers", "resp-buffer", "buffer-body":
		return pw.Continue
	case "buffers":
		return s.opBuffers()
	case "route":
		return s.opRoute()
	case "double-reply":
		// Two replies in one callback: Envoy sends the first; the second finds the
		// response complete.
		s.second, _ = pw.RequestHeaders.Get("x-second")
		pw.SendHttpResponse(401, "first", nil, []byte("first"), abi.GrpcStatusNone)
		pw.SendHttpResponse(402, "same_callback", nil, []byte("same callback"), abi.GrpcStatusNone)
		return pw.Pause
	case "header-shape":
		// Envoy's header map: add on an inline header coalesces, on another header
		// adds an entry; replace moves the header to the end.
		pw.RequestHeaders.Add("user-agent", "added")
		pw.RequestHeaders.Add("x-plain", "2")
		pw.RequestHeaders.Replace("x-first", "moved")
		return pw.Continue
	}
	s.report["error"] = "unknown op " + op
	return s.reply()
}

func (s *stream) opHeaders() pw.Action {
	r := s.report
	v, err := getHeader(pw.RequestHeaders, "x-one")
	r["get"], r["get_status"] = v, st(err)
	v, err = getHeader(pw.RequestHeaders, "x-missing")
	r["get_missing"], r["get_missing_status"] = v, st(err)
	v, err = getHeader(pw.RequestHeaders, ":path")
	r["path"], r["path_status"] = v, st(err)
	v, _ = getHeader(pw.RequestHeaders, ":method")
	r["method"] = v
	v, _ = getHeader(pw.RequestHeaders, ":authority")
	r["authority"] = v
	v, _ = getHeader(pw.RequestHeaders, "x-mixed-case")
	r["lowercased"] = v
	all, err := pw.RequestHeaders.GetAll()
	r["all_status"] = st(err)
	var keys []string
	for _, p := range all {
		keys = append(keys, p.Key)
	}
	r["all_keys"] = keys
	size, err := pw.RequestHeaders.Size()
	r["size"], r["size_status"] = size, st(err)
	want := 0 // Envoy's HeaderMap::byteSize(): the keys' and values' lengths
	for _, p := range all {
		want += len(p.Key) + len(p.Value)
	}
	r["size_expected"] = want
	// Mutations: the upstream must see them.
	r["add"] = st(pw.RequestHeaders.Add("x-added", "a1"))
	pw.RequestHeaders.Add("x-added", "a2")
	r["replace"] = st(pw.RequestHeaders.Replace("x-one", "replaced"))
	r["replace_new"] = st(pw.RequestHeaders.Replace("x-new", "fresh"))
	r["remove"] = st(pw.RequestHeaders.Remove("x-two"))
	r["remove_missing"] = st(pw.RequestHeaders.Remove("x-not-there"))
	// Maps that do not exist during request headers.
	_, err = getHeader(pw.ResponseHeaders, "x-anything")
	r["response_map_during_request"] = st(err)
	_, err = getHeader(pw.HttpCallResponseHeaders, ":status")
	r["http_call_map_outside_callback"] = st(err)
	if q, _ := getHeader(pw.RequestHeaders, "x-set-all"); q == "1" {
		r["set_all"] = st(pw.RequestHeaders.SetAll([]abi.Pair{
			{Key: ":method", Value: "GET"}, {Key: ":path", Value: "/rewritten"},
			{Key: ":authority", Value: "example.com"}, {Key: ":scheme", Value: "http"},
			{Key: "x-only", Value: "this"},
		}))
	}
	// Report through a header so the request can still reach the upstream.
	b, _ := json.Marshal(r)
	pw.RequestHeaders.Replace("x-report", string(b))
	return pw.Continue
}

// opRoute reads the route the host resolved, edits the request headers as
// x-route-set ("name=value", replaced) and x-route-del (a name, removed) ask, reads the
// route again and reports both through the x-report request header; the request goes on.
func (s *stream) opRoute() pw.Action {
	r := s.report
	v, err := pw.GetPropertyString("xds", "route_name")
	r["route_before"], r["route_before_status"] = v, st(err)
	if set, ok := pw.RequestHeaders.Get("x-route-set"); ok {
		k, val, _ := strings.Cut(set, "=")
		r["set"] = st(pw.RequestHeaders.Replace(k, val))
	}
	if del, ok := pw.RequestHeaders.Get("x-route-del"); ok {
		r["del"] = st(pw.RequestHeaders.Remove(del))
	}
	v, err = pw.GetPropertyString("xds", "route_name")
	r["route_after"], r["route_after_status"] = v, st(err)
	v, err = pw.GetPropertyString("xds", "cluster_name")
	r["cluster_after"], r["cluster_after_status"] = v, st(err)
	b, _ := json.Marshal(r)
	pw.RequestHeaders.Replace("x-report", string(b))
	return pw.Continue
}

func (s *stream) opProperties() pw.Action {
	r := s.report
	for _, path := range []string{
		"request.path", "request.url_path", "request.host", "request.scheme", "request.method",
		"request.id", "request.protocol", "request.useragent", "request.headers.x-one",
		"source.address", "destination.address", "plugin_name", "plugin_root_id", "plugin_vm_id",
		"node.id", "xds.node.id", "xds.node.metadata.REGION", "request.headers.x-multi",
		"connection.requested_server_name", "no.such.property", "upstream.address",
	} {
		v, err := pw.GetPropertyString(strings.Split(path, ".")...)
		r[path] = v
		r[path+"#status"] = st(err)
	}
	for _, path := range []string{"source.port", "destination.port", "connection.id", "request.time", "request.size"} {
		b, err := pw.GetProperty(strings.Split(path, ".")...)
		r[path+"#status"] = st(err)
		if len(b) == 8 {
			r[path] = strconv.FormatInt(int64(binary.LittleEndian.Uint64(b)), 10)
		} else {
			r[path+"#len"] = len(b)
		}
	}
	b, err := pw.GetProperty("connection", "mtls")
	r["connection.mtls#status"], r["connection.mtls#bytes"] = st(err), fmt.Sprint(b)
	r["set"] = st(pw.SetProperty([]string{"wasm", "conformance"}, []byte("stored")))
	v, err := pw.GetPropertyString("wasm", "conformance")
	r["get_after_set"], r["get_after_set#status"] = v, st(err)
	return s.reply()
}

func (s *stream) opSharedData() pw.Action {
	r := s.report
	key, _ := getHeader(pw.RequestHeaders, "x-key")
	_, _, err := pw.GetSharedData(key)
	r["get_missing"] = st(err)
	r["set_unconditional"] = st(pw.SetSharedData(key, []byte("v1"), 0))
	v, cas1, err := pw.GetSharedData(key)
	r["get1"], r["get1_status"], r["cas1_nonzero"] = string(v), st(err), cas1 != 0
	r["set_with_cas"] = st(pw.SetSharedData(key, []byte("v2"), cas1))
	v, cas2, _ := pw.GetSharedData(key)
	r["get2"], r["cas_changed"] = string(v), cas2 != cas1
	r["set_stale_cas"] = st(pw.SetSharedData(key, []byte("v3"), cas1))
	v, _, _ = pw.GetSharedData(key)
	r["after_stale"] = string(v)
	buf := append(make([]byte, 0, 16), "pre:"...)
	v, cas3, err := pw.AppendSharedData(buf, key)
	r["append"], r["append_status"], r["append_cas_same"] = string(v), st(err), cas3 == cas2
	v, _, err = pw.AppendSharedData(buf, key+".missing")
	r["append_missing"], r["append_missing_status"] = string(v), st(err)
	r["set_empty"] = st(pw.SetSharedData(key+".empty", nil, 0))
	v, _, err = pw.GetSharedData(key + ".empty")
	r["get_empty"], r["get_empty_status"] = string(v), st(err)
	return s.reply()
}

func (s *stream) opQueue() pw.Action {
	r := s.report
	name, _ := getHeader(pw.RequestHeaders, "x-queue")
	vmID, _ := getHeader(pw.RequestHeaders, "x-vm-id")
	id, err := pw.ResolveSharedQueue(vmID, name)
	r["resolve"] = st(err)
	if err == nil {
		item, _ := getHeader(pw.RequestHeaders, "x-item")
		r["enqueue"] = st(pw.EnqueueSharedQueue(id, []byte(item)))
	}
	_, err = pw.ResolveSharedQueue(vmID, "no-such-queue")
	r["resolve_missing"] = st(err)
	r["enqueue_unknown"] = st(pw.EnqueueSharedQueue(987654, []byte("x")))
	_, err = pw.DequeueSharedQueue(987654)
	r["dequeue_unknown"] = st(err)
	own, err := pw.RegisterSharedQueue("conformance-private")
	r["register"] = st(err)
	_, err = pw.DequeueSharedQueue(own)
	r["dequeue_empty"] = st(err)
	return s.reply()
}

func (s *stream) opMetrics() pw.Action {
	r := s.report
	c, err := pw.DefineCounter("conformance.counter")
	r["define_counter"] = st(err)
	// Defining a name again gives a new id for the same stat (as in Envoy).
	c2, _ := pw.DefineCounter("conformance.counter")
	r["inc"] = st(c.Increment(5))
	r["inc_second_id"] = st(c2.Increment(1))
	v, err := c.Value()
	r["counter_value"], r["counter_get"] = v, st(err)
	g, err := pw.DefineGauge("conformance.gauge")
	r["define_gauge"] = st(err)
	r["gauge_set"] = st(g.Set(10))
	r["gauge_add"] = st(g.Add(-3))
	gv, _ := g.Value()
	r["gauge_value"] = gv
	h, err := pw.DefineHistogram("conformance.histogram")
	r["define_histogram"] = st(err)
	r["record"] = st(h.Record(42))
	r["record2"] = st(h.Record(7))
	r["get_unknown"] = st(func() error { _, err := pw.Counter(1 << 20).Value(); return err }())
	return s.reply()
}

func (s *stream) opLog() pw.Action {
	l, err := pw.LogLevel()
	s.report["level"], s.report["level_status"] = l.String(), st(err)
	for lvl := abi.LogTrace; lvl <= abi.LogCritical; lvl++ {
		pw.Log(lvl, "conformance log at "+lvl.String())
	}
	// The formatted variants, one per level (they format only when the host keeps it).
	for i, logf := range []func(string, ...any){pw.LogTracef, pw.LogDebugf, pw.LogInfof,
		pw.LogWarnf, pw.LogErrorf, pw.LogCriticalf} {
		logf("conformance logf at %s", abi.LogLevel(i))
	}
	fmt.Println("conformance stdout line") // WASI fd_write to stdout
	return s.reply()
}

func (s *stream) opLocalReply() pw.Action {
	grpc := uint32(abi.GrpcStatusNone)
	if g, err := getHeader(pw.RequestHeaders, "x-grpc-status"); err == nil {
		n, _ := strconv.Atoi(g)
		grpc = uint32(n)
	}
	err := pw.SendHttpResponse(418, "conformance_teapot",
		[]abi.Pair{{Key: "x-local", Value: "yes"}, {Key: "content-type", Value: "text/plain"}},
		[]byte("short and stout"), grpc)
	if err != nil {
		pw.LogErrorf("local reply: %v", err)
	}
	return pw.Pause
}

func (s *stream) opBuffers() pw.Action {
	r := s.report
	r["plugin"], r["plugin_part"], r["vm"] = s.plugin.rawCfg, s.plugin.cfgPart, s.plugin.vm.vmConfig
	// Outside proxy_on_configure Envoy no longer exposes the plugin configuration.
	for name, b := range map[string]pw.Buffer{"plugin_in_stream": pw.PluginConfiguration, "vm_in_stream": pw.VMConfiguration} {
		v, err := b.Bytes()
		r[name] = fmt.Sprintf("%d/%s", len(v), st(err))
	}
	return s.reply()
}

func (s *stream) OnHttpRequestBody(size int, end bool) pw.Action {
	if s.op == "add-trailers" {
		if end {
			err := pw.RequestTrailers.Add("x-added-trailer", "t1")
			pw.RequestBody.Append([]byte("|add:" + st(err)))
		} else {
			_, err := getHeader(pw.RequestTrailers, "x-any")
			pw.RequestBody.Append([]byte("|early:" + st(err)))
		}
		return pw.Continue
	}
	if s.op == "buffer-body" {
		// Buffer the body (headers went on): each callback sees all of it so far; at
		// the end, the sizes seen are appended to what goes upstream. A body above
		// the host's buffer limit gets the host's 413 instead.
		s.bodySizes = append(s.bodySizes, strconv.Itoa(size))
		if !end {
			return pw.Pause
		}
		pw.RequestBody.Append([]byte("|sizes=" + strings.Join(s.bodySizes, ",")))
		return pw.Continue
	}
	if s.op == "http-call" || s.op == "resp-call" {
		s.bodyCalls++
		pw.RequestBody.Append([]byte("|body-callback resumed=" + strconv.FormatBool(s.resumed)))
		return pw.Continue
	}
	if s.op != "body" {
		return pw.Continue
	}
	s.bodySizes = append(s.bodySizes, strconv.Itoa(size))
	if !end {
		return pw.Pause // buffer until the whole body is there
	}
	pw.RequestHeaders.Replace("x-body-calls", strings.Join(s.bodySizes, ","))
	body, err := pw.RequestBody.Get(0, size)
	if err != nil {
		pw.LogErrorf("body: %v", err)
	}
	part, _ := pw.RequestBody.Get(2, 3)
	n, _, _ := pw.RequestBody.Status()
	pw.RequestHeaders.Replace("x-body-seen", string(body))
	pw.RequestHeaders.Replace("x-body-part", string(part))
	pw.RequestHeaders.Replace("x-body-size", strconv.Itoa(size)+"/"+strconv.Itoa(n))
	pw.RequestBody.Replace([]byte("REPLACED:" + string(body)))
	pw.RequestBody.Append([]byte(":APPENDED"))
	return pw.Continue
}

func (s *stream) OnHttpRequestTrailers(n int) pw.Action {
	if s.op != "trailers" {
		return pw.Continue
	}
	v, err := getHeader(pw.RequestTrailers, "x-trailer")
	pw.RequestTrailers.Add("x-trailer-seen", v+"/"+st(err)+"/"+strconv.Itoa(n))
	return pw.Continue
}

func (s *stream) OnHttpResponseHeaders(n int, end bool) pw.Action {
	if s.op == "panic-response" {
		panic("response headers panicked on purpose")
	}
	status, _ := getHeader(pw.ResponseHeaders, ":status")
	pw.ResponseHeaders.Add("x-response-seen", s.op+"/"+status)
	if s.op == "resp-call" {
		return s.responseCall()
	}
	if s.op == "resp-buffer" {
		return pw.Pause // hold the headers until the body is buffered (see the body callback)
	}
	if s.op == "double-reply" && s.second == "1" && status == "401" {
		// A reply while the first local reply goes through the response callbacks,
		// before its headers reached the client: it replaces it.
		pw.SendHttpResponse(403, "second", nil, []byte("second"), abi.GrpcStatusNone)
		return pw.Pause
	}
	if s.op == "response" {
		_, err := getHeader(pw.RequestHeaders, ":path")
		pw.ResponseHeaders.Add("x-request-map-in-response", st(err))
		// Properties read from the request header map are gone with it (findValue).
		_, err = pw.GetPropertyString("request", "path")
		pw.ResponseHeaders.Add("x-request-path-prop", st(err))
		_, err = pw.GetPropertyString("request", "time")
		pw.ResponseHeaders.Add("x-request-time-prop", st(err))
		v, err := pw.GetPropertyString("upstream", "address")
		pw.ResponseHeaders.Add("x-upstream-address-prop", v+"/"+st(err))
		v, err = pw.GetPropertyString("response", "headers", "x-up")
		pw.ResponseHeaders.Add("x-response-header-prop", v+"/"+st(err))
	}
	return pw.Continue
}

// responseCall pauses the response headers on an HTTP callout to x-cluster and
// resumes the response from its callback.
func (s *stream) responseCall() pw.Action {
	_, err := pw.DispatchHttpCall(s.cluster, []abi.Pair{{Key: ":method", Value: "GET"}, {Key: ":path", Value: "/"},
		{Key: ":authority", Value: "backend"}}, nil, nil, 2*time.Second,
		func(int, int, int) {
			n, _, err := pw.ResponseBody.Status()
			pw.ResponseHeaders.Replace("x-paused-body", strconv.Itoa(n)+"/"+st(err)+"/calls="+strconv.Itoa(s.bodyCalls))
			s.resumed = true
			if err := pw.ResumeHttpResponse(); err != nil {
				pw.LogErrorf("resume: %v", err)
			}
		})
	if err != nil {
		pw.LogErrorf("dispatch: %v", err)
		return pw.Continue
	}
	return pw.Pause
}

func (s *stream) OnHttpResponseBody(size int, end bool) pw.Action {
	if s.op == "resp-call" {
		s.bodyCalls++
		pw.ResponseBody.Append([]byte("|body-callback resumed=" + strconv.FormatBool(s.resumed)))
		return pw.Continue
	}
	if s.op == "resp-buffer" {
		if !end {
			return pw.Pause
		}
		return pw.Continue
	}
	if s.op == "add-trailers" {
		if end {
			r := pw.ResponseTrailers.Add("x-added-trailer", "r1")
			pw.ResponseBody.Append([]byte("|add:" + st(r)))
		}
		return pw.Continue
	}
	if s.op == "body-set" {
		// Envoy's copyFrom: start 0 drains length bytes, then prepends.
		pw.ResponseBody.Set(0, 3, []byte("AB"))
		err := pw.ResponseBody.Set(2, 1, []byte("middle"))
		pw.ResponseBody.Append([]byte("|middle:" + st(err)))
		return pw.Continue
	}
	if s.op != "response" {
		return pw.Continue
	}
	if !end {
		return pw.Pause
	}
	body, _ := pw.ResponseBody.Get(0, size)
	pw.ResponseBody.Replace([]byte(strings.ToUpper(string(body))))
	return pw.Continue
}

// OnHttpStreamLog records, for op "log-phase", what the access-log phase can read.
func (s *stream) OnHttpStreamLog() {
	if s.op != "log-phase" {
		return
	}
	path, err1 := getHeader(pw.RequestHeaders, ":path")
	status, err2 := getHeader(pw.ResponseHeaders, ":status")
	add := pw.ResponseHeaders.Add("x-too-late", "1")
	pw.SetSharedData("log_seen", []byte(path+"/"+st(err1)+" "+status+"/"+st(err2)+" add:"+st(add)), 0)
}

func (s *stream) OnHttpStreamDone() {
	if s.op == "" {
		return
	}
	old, _, _ := pw.GetSharedData("done_ops")
	pw.SetSharedData("done_ops", append(old, []byte(s.op+";")...), 0)
}

// opHttpCall calls the cluster named by x-cluster and answers with what came back.
func (s *stream) opHttpCall() pw.Action {
	cluster, _ := getHeader(pw.RequestHeaders, "x-cluster")
	path, _ := getHeader(pw.RequestHeaders, "x-call-path")
	timeout := 2 * time.Second
	if t, err := getHeader(pw.RequestHeaders, "x-timeout-ms"); err == nil {
		n, _ := strconv.Atoi(t)
		timeout = time.Duration(n) * time.Millisecond
	}
	headers := []abi.Pair{{Key: ":method", Value: "POST"}, {Key: ":path", Value: path},
		{Key: ":authority", Value: "backend"}, {Key: "x-from-guest", Value: "1"}}
	if m, _ := getHeader(pw.RequestHeaders, "x-no-method"); m == "1" {
		headers = headers[1:]
	}
	resume, _ := getHeader(pw.RequestHeaders, "x-resume")
	_, err := pw.DispatchHttpCall(cluster, headers, []byte("ping"), nil, timeout,
		func(numHeaders, bodySize, numTrailers int) {
			r := s.report
			r["num_headers"], r["body_size"], r["num_trailers"] = numHeaders, bodySize, numTrailers
			status, err := getHeader(pw.HttpCallResponseHeaders, ":status")
			r["status"], r["status_status"] = status, st(err)
			echo, _ := getHeader(pw.HttpCallResponseHeaders, "x-echo")
			r["echo"] = echo
			body, err := pw.HttpCallResponseBody.Get(0, bodySize)
			r["body"], r["body_status"] = string(body), st(err)
			if resume == "1" {
				pw.RequestHeaders.Replace("x-call-status", status)
				pw.RequestHeaders.Replace("x-call-body", string(body))
				n, _, err := pw.RequestBody.Status()
				pw.RequestHeaders.Replace("x-paused-body", strconv.Itoa(n)+"/"+st(err)+"/calls="+strconv.Itoa(s.bodyCalls))
				s.resumed = true
				if err := pw.ResumeHttpRequest(); err != nil {
					pw.LogErrorf("resume: %v", err)
				}
				return
			}
			s.reply()
		})
	s.report["dispatch"] = st(err)
	if err != nil {
		return s.reply()
	}
	return pw.Pause
}

// opGrpcCall calls grpc.health.v1.Health/Check on x-cluster with the service name in
// x-service and answers with the raw response.
func (s *stream) opGrpcCall() pw.Action {
	cluster, _ := getHeader(pw.RequestHeaders, "x-cluster")
	svc, _ := getHeader(pw.RequestHeaders, "x-service")
	method, _ := getHeader(pw.RequestHeaders, "x-method")
	if method == "" {
		method = "Check"
	}
	timeout := 2 * time.Second
	if t, err := getHeader(pw.RequestHeaders, "x-timeout-ms"); err == nil {
		n, _ := strconv.Atoi(t)
		timeout = time.Duration(n) * time.Millisecond
	}
	_, err := pw.DispatchGrpcCall(cluster, "grpc.health.v1.Health", method, nil, healthRequest(svc), timeout,
		func(status uint32, message string, response []byte) {
			s.report["grpc_status"], s.report["grpc_message"] = status, message
			s.report["response_hex"] = fmt.Sprintf("%x", response)
			s.reply()
		})
	s.report["dispatch"] = st(err)
	if err != nil {
		return s.reply()
	}
	return pw.Pause
}

// healthRequest encodes grpc.health.v1.HealthCheckRequest{service: svc} by hand.
func healthRequest(svc string) []byte {
	if svc == "" {
		return nil
	}
	return append([]byte{0x0a, byte(len(svc))}, svc...)
}

type watch struct {
	s        *stream
	messages []string
	events   []string
}

func (w *watch) OnInitialMetadata(n int) {
	w.events = append(w.events, "initial_metadata")
}

func (w *watch) OnMessage(size int) {
	b, err := pw.GrpcReceiveBuffer.Get(0, size)
	w.events = append(w.events, "message")
	w.messages = append(w.messages, fmt.Sprintf("%x/%s", b, st(err)))
	if len(w.messages) == 1 {
		// One message is enough: close our side.
		w.s.report["cancel"] = st(w.s.grpcStream.Cancel())
		w.finish(0, "cancelled by guest")
	}
}

func (w *watch) OnTrailingMetadata(n int) { w.events = append(w.events, "trailing_metadata") }

func (w *watch) OnClose(status uint32, message string) {
	w.events = append(w.events, "close")
	w.finish(status, message)
}

func (w *watch) finish(status uint32, message string) {
	w.s.report["messages"], w.s.report["events"] = w.messages, w.events
	w.s.report["close_status"], w.s.report["close_message"] = status, message
	w.s.reply()
}

// opGrpcStream opens grpc.health.v1.Health/Watch and answers after the first message.
func (s *stream) opGrpcStream() pw.Action {
	cluster, _ := getHeader(pw.RequestHeaders, "x-cluster")
	svc, _ := getHeader(pw.RequestHeaders, "x-service")
	st0, err := pw.OpenGrpcStream(cluster, "grpc.health.v1.Health", "Watch", nil, &watch{s: s})
	s.report["open"] = st(err)
	if err != nil {
		return s.reply()
	}
	s.grpcStream = st0
	s.report["send"] = st(st0.Send(healthRequest(svc), true))
	return pw.Pause
}

// opEnviron reports the VM's environment (WASI environ_get: Envoy's
// vm_config.environment_variables) as Go's runtime read it at start: os.Environ
// sorted, os.LookupEnv of the x-env header's name, and the GC percent in force (Go
// reads GOGC from the environment at start; 100 without it).
func (s *stream) opEnviron() pw.Action {
	env := os.Environ()
	slices.Sort(env)
	s.report["environ"] = env
	if name, err := getHeader(pw.RequestHeaders, "x-env"); err == nil {
		v, ok := os.LookupEnv(name)
		s.report["getenv"] = v
		s.report["getenv_set"] = ok
	}
	gc := debug.SetGCPercent(100)
	debug.SetGCPercent(gc)
	s.report["gc_percent"] = gc
	return s.reply()
}
