package cpphost

// fault's decision table on proxy-wasm-cpp-host.

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// faultRow is one request of fault's decision table and what filters/fault/README.md
// says the client gets.
type faultRow struct {
	name string
	cfg  string
	step Step
	// status is the HTTP status; grpc the grpc-status of a trailers-only reply (-1:
	// none); upstream whether the request reaches the upstream (no abort).
	status   int
	grpc     int
	upstream bool
	// body is the reply body ("" with upstream: not checked), headers must be on the
	// reply.
	body    string
	headers map[string]string
	// delayed: the request waited for a delay; overflow: faults refused by
	// max_active_faults (README: twice when both its delay and abort were refused).
	delayed  bool
	overflow int
}

const faultJSONBody = `{"error":"fault_filter_abort","message":"fault filter abort"}`

var grpcCT = [2]string{"content-type", "application/grpc"}

// faultRows is fault's decision table, derived from filters/fault/README.md (matchers,
// targets, header-controlled faults and their bounds, gRPC aborts, replies, delays
// with the scripted clock, max_active_faults) and the engine's decision order
// (filters/fault/engine: first matching rule, delay before abort, a fresh abort
// decision after the delay).
func faultRows() []faultRow {
	pass := func(name, cfg string, st Step) faultRow {
		return faultRow{name: name, cfg: cfg, step: st, status: 200, grpc: -1, upstream: true}
	}
	abort := func(name, cfg string, st Step, status int, body string, h ...string) faultRow {
		r := faultRow{name: name, cfg: cfg, step: st, status: status, grpc: -1, body: body, headers: map[string]string{}}
		for i := 0; i+1 < len(h); i += 2 {
			r.headers[h[i]] = h[i+1]
		}
		return r
	}
	grpcAbort := func(name, cfg string, st Step, code int, msg string, h ...string) faultRow {
		r := abort(name, cfg, st, 200, "", append([]string{"grpc-message", msg, "content-type", "application/grpc"}, h...)...)
		r.grpc = code
		return r
	}
	delayed := func(r faultRow, ms int64) faultRow {
		r.delayed = true
		r.step.Request.ClockStepMS = ms
		return r
	}
	req := func(method, path string, h ...[2]string) Step {
		s := get(path, h...)
		s.Request.Method = method
		return s
	}
	hdr := func(h ...[2]string) Step { return get("/", h...) }
	withProps := func(s Step, kv ...string) Step {
		s.Request.Properties = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Request.Properties[kv[i]] = kv[i+1]
		}
		return s
	}
	jsonCT := []string{"content-type", "application/json"}

	// Header matchers, first matching rule wins (a rule at 0 % still stops the search).
	matchers := `{"faults": [
  {"name": "exact", "headers": [{"name": "x-f", "string_match": {"exact": "abort"}}],
   "abort": {"http_status": 503, "percentage": {"numerator": 100}}},
  {"name": "prefix-ignore-case", "headers": [{"name": "x-f", "string_match": {"prefix": "teapot", "ignore_case": true}}],
   "abort": {"http_status": 418, "body": "short and stout", "response_headers": [{"name": "x-fault", "value": "teapot"}],
             "percentage": {"numerator": 100}}},
  {"name": "suffix", "headers": [{"name": "x-f", "string_match": {"suffix": "-grpc"}}],
   "abort": {"grpc_status": 8, "percentage": {"numerator": 100}}},
  {"name": "never", "headers": [{"name": "x-f", "contains_match": "half"}],
   "abort": {"http_status": 500, "percentage": {"numerator": 0}}},
  {"name": "regex", "headers": [{"name": "x-f", "safe_regex_match": {"regex": "r[0-9]+"}}],
   "abort": {"http_status": 502, "percentage": {"numerator": 1000000, "denominator": "MILLION"}}},
  {"name": "regex-string-match", "headers": [{"name": "x-g", "string_match": {"safe_regex": {"regex": "g[0-9]+"}}}],
   "abort": {"http_status": 507, "percentage": {"numerator": 100}}},
  {"name": "inverted", "headers": [{"name": "x-canary", "exact_match": "yes", "invert_match": true}],
   "abort": {"http_status": 500, "percentage": {"numerator": 10000, "denominator": "TEN_THOUSAND"}}},
  {"name": "present", "headers": [{"name": "x-debug", "present_match": true}],
   "abort": {"http_status": 504, "percentage": {"numerator": 100}}}
]}`
	// Targets: upstream cluster and route, :method / :path (canonical form, every
	// reading) / :authority.
	targets := `{"faults": [
  {"name": "cluster-route", "upstream_cluster": "reviews", "route_name": "r1",
   "abort": {"http_status": 503, "percentage": {"numerator": 100}}},
  {"name": "items", "headers": [{"name": ":method", "exact_match": "DELETE"}, {"name": ":path", "prefix_match": "/items/"}],
   "abort": {"http_status": 409, "percentage": {"numerator": 100}}},
  {"name": "authority", "headers": [{"name": ":authority", "string_match": {"exact": "chaos.example.com"}}],
   "abort": {"grpc_status": 14, "percentage": {"numerator": 100}}}
]}`
	// Header-controlled faults for the chaos and qa nodes, delays capped at 2 s.
	headerCtl := `{"faults": [{
  "downstream_nodes": ["chaos", "qa"],
  "delay": {"header_delay": {"max_delay": "2s"}, "percentage": {"numerator": 100}},
  "abort": {"header_abort": {}, "percentage": {"numerator": 100}}
}]}`
	// A configured percentage the headers cannot raise.
	capped := `{"faults": [{
  "abort": {"header_abort": {}, "percentage": {"numerator": 0}}
}]}`
	// Delays: fixed by consumer (auth's x-consumer), then a delay and an abort.
	delays := `{"faults": [
  {"name": "jason", "headers": [{"name": "x-consumer", "exact_match": "jason"}],
   "delay": {"fixed_delay": "1500ms", "percentage": {"numerator": 100}}},
  {"name": "slow-then-fail", "headers": [{"name": "x-consumer", "exact_match": "mallory"}],
   "delay": {"fixed_delay": "250ms", "percentage": {"numerator": 100}},
   "abort": {"http_status": 503, "percentage": {"numerator": 100}}}
]}`
	// No slot for any fault: every fault is skipped and counted.
	noSlots := `{"max_active_faults": 0, "faults": [
  {"name": "both", "headers": [{"name": "x-f", "exact_match": "both"}],
   "delay": {"fixed_delay": "1s", "percentage": {"numerator": 100}},
   "abort": {"http_status": 503, "percentage": {"numerator": 100}}},
  {"name": "abort", "abort": {"http_status": 503, "percentage": {"numerator": 100}}}
]}`

	node := func(n string) [2]string { return [2]string{"x-envoy-downstream-service-node", n} }
	abortH := func(v string) [2]string { return [2]string{"x-envoy-fault-abort-request", v} }
	grpcH := func(v string) [2]string { return [2]string{"x-envoy-fault-abort-grpc-request", v} }
	delayH := func(v string) [2]string { return [2]string{"x-envoy-fault-delay-request", v} }
	chaos := node("chaos")
	textCT := []string{"content-type", "text/plain; charset=utf-8", "x-fault", "teapot"}
	grpcReq := func(h ...[2]string) Step { return req("POST", "/pkg.Svc/Get", append([][2]string{grpcCT}, h...)...) }
	return []faultRow{
		abort("exact", matchers, hdr([2]string{"x-f", "abort"}), 503, faultJSONBody, jsonCT...),
		// A repeated header is its values joined by ",": not "abort" (nor r[0-9]+).
		pass("repeated header joined", matchers, hdr([2]string{"x-f", "abort"}, [2]string{"x-f", "abort"})),
		abort("prefix ignoring case, own body and headers", matchers, hdr([2]string{"x-f", "TeaPot-1"}), 418, "short and stout", textCT...),
		grpcAbort("own body as grpc-message, 418 mapped to UNKNOWN", matchers, grpcReq([2]string{"x-f", "teapot"}), 2, "short and stout", "x-fault", "teapot"),
		// grpc_status on a plain HTTP request: HTTP 200 with the body.
		abort("grpc_status on HTTP", matchers, hdr([2]string{"x-f", "a-grpc"}), 200, faultJSONBody, jsonCT...),
		grpcAbort("grpc_status on gRPC", matchers, grpcReq([2]string{"x-f", "a-grpc"}), 8, "fault filter abort"),
		grpcAbort("grpc_status on application/grpc+proto", matchers,
			req("POST", "/pkg.Svc/Get", [2]string{"content-type", "application/grpc+proto"}, [2]string{"x-f", "a-grpc"}), 8, "fault filter abort"),
		// grpc-web and application/grpc;charset=… are not gRPC to Envoy: the HTTP reply.
		abort("grpc-web gets HTTP", matchers, req("POST", "/pkg.Svc/Get", [2]string{"content-type", "application/grpc-web"}, [2]string{"x-f", "abort"}), 503, faultJSONBody, jsonCT...),
		abort("grpc;charset gets HTTP", matchers, req("POST", "/pkg.Svc/Get", [2]string{"content-type", "application/grpc;charset=utf-8"}, [2]string{"x-f", "abort"}), 503, faultJSONBody, jsonCT...),
		pass("first match at 0 %: no fault, no later rule", matchers, hdr([2]string{"x-f", "r1-half"})),
		abort("regex matches the whole value", matchers, hdr([2]string{"x-f", "r12"}), 502, faultJSONBody, jsonCT...),
		pass("regex not on part of the value", matchers, hdr([2]string{"x-f", "xr12"}, [2]string{"x-canary", "yes"})),
		abort("string_match regex", matchers, hdr([2]string{"x-g", "g7"}), 507, faultJSONBody, jsonCT...),
		pass("string_match regex not on part of the value", matchers, hdr([2]string{"x-g", "g7x"}, [2]string{"x-canary", "yes"})),
		abort("inverted: another value", matchers, hdr([2]string{"x-canary", "no"}), 500, faultJSONBody, jsonCT...),
		pass("inverted: the value", matchers, hdr([2]string{"x-canary", "yes"})),
		pass("inverted: missing header matches no value matcher", matchers, hdr()),
		abort("present", matchers, hdr([2]string{"x-debug", "1"}, [2]string{"x-canary", "yes"}), 504, faultJSONBody, jsonCT...),

		abort("cluster and route", targets, withProps(hdr(), "xds.cluster_name", "reviews", "xds.route_name", "r1"), 503, faultJSONBody, jsonCT...),
		pass("another route", targets, withProps(hdr(), "xds.cluster_name", "reviews", "xds.route_name", "r2")),
		pass("another cluster", targets, withProps(hdr(), "xds.cluster_name", "ratings", "xds.route_name", "r1")),
		abort("method and path", targets, req("DELETE", "/items/1"), 409, faultJSONBody, jsonCT...),
		abort("path: merged slashes", targets, req("DELETE", "//items/1"), 409, faultJSONBody, jsonCT...),
		abort("path: decoded unreserved", targets, req("DELETE", "/%69tems/1"), 409, faultJSONBody, jsonCT...),
		abort("path: dot segments", targets, req("DELETE", "/x/../items/1"), 409, faultJSONBody, jsonCT...),
		abort("path: %2F read as /", targets, req("DELETE", "/items%2F1"), 409, faultJSONBody, jsonCT...),
		pass("path: GET", targets, req("GET", "/items/1")),
		pass("path: another prefix", targets, req("DELETE", "/itemsx/1")),
		abort("authority, HTTP request", targets, Step{Request: &Request{Path: "/", Authority: "chaos.example.com"}}, 200, faultJSONBody, jsonCT...),
		grpcAbort("authority, gRPC request", targets, Step{Request: &Request{Method: "POST", Path: "/pkg.Svc/Get", Authority: "chaos.example.com",
			Headers: [][2]string{grpcCT}}}, 14, "fault filter abort"),

		abort("header abort", headerCtl, hdr(chaos, abortH("503")), 503, faultJSONBody, jsonCT...),
		abort("header abort: another listed node", headerCtl, hdr(node("qa"), abortH("429")), 429, faultJSONBody, jsonCT...),
		pass("header abort: node not listed", headerCtl, hdr(node("other"), abortH("503"))),
		pass("header abort: no node", headerCtl, hdr(abortH("503"))),
		abort("header abort: spaces and +", headerCtl, hdr(chaos, abortH(" +429 ")), 429, faultJSONBody, jsonCT...),
		abort("header abort: first value only", headerCtl, hdr(chaos, abortH("503"), abortH("429")), 503, faultJSONBody, jsonCT...),
		pass("header abort: 600 ignored", headerCtl, hdr(chaos, abortH("600"))),
		pass("header abort: 199 ignored", headerCtl, hdr(chaos, abortH("199"))),
		pass("header abort: not a number", headerCtl, hdr(chaos, abortH("5O3"))),
		grpcAbort("header gRPC abort", headerCtl, grpcReq(chaos, grpcH("14")), 14, "fault filter abort"),
		grpcAbort("header gRPC abort after an invalid HTTP one", headerCtl, grpcReq(chaos, abortH("600"), grpcH("4")), 4, "fault filter abort"),
		abort("header gRPC abort on HTTP", headerCtl, hdr(chaos, grpcH("14")), 200, faultJSONBody, jsonCT...),
		grpcAbort("header HTTP abort on gRPC: mapped", headerCtl, grpcReq(chaos, abortH("503")), 14, "fault filter abort"),
		pass("header gRPC abort: 17 ignored", headerCtl, grpcReq(chaos, grpcH("17"))),
		pass("header abort: percentage header 0", headerCtl, hdr(chaos, abortH("503"), [2]string{"x-envoy-fault-abort-request-percentage", "0"})),
		abort("header abort: percentage header above the configured", headerCtl, hdr(chaos, abortH("503"),
			[2]string{"x-envoy-fault-abort-request-percentage", "1000"}), 503, faultJSONBody, jsonCT...),
		delayed(pass("header delay", headerCtl, hdr(chaos, delayH("1500"))), 1500),
		delayed(pass("header delay capped by max_delay", headerCtl, hdr(chaos, delayH("60000"))), 2000),
		pass("header delay 0: none", headerCtl, hdr(chaos, delayH("0"))),
		pass("header delay not a number: none", headerCtl, hdr(chaos, delayH("1.5"))),
		pass("header delay: percentage header 0", headerCtl, hdr(chaos, delayH("1000"), [2]string{"x-envoy-fault-delay-request-percentage", "0"})),
		delayed(abort("header delay then abort", headerCtl, hdr(chaos, delayH("500"), abortH("503")), 503, faultJSONBody, jsonCT...), 500),
		pass("configured 0 % not raised by the header", capped, hdr(abortH("503"), [2]string{"x-envoy-fault-abort-request-percentage", "100"})),

		delayed(pass("fixed delay by consumer", delays, hdr([2]string{"x-consumer", "jason"})), 1500),
		pass("other consumer", delays, hdr([2]string{"x-consumer", "alice"})),
		delayed(pass("the body held during the delay", delays, Step{Request: &Request{Method: "POST", Path: "/",
			Headers: [][2]string{{"x-consumer", "jason"}}, BodyChunks: []string{"a", "b"}}, Upstream: &Upstream{Status: 200}}), 1500),
		delayed(abort("fixed delay then abort", delays, hdr([2]string{"x-consumer", "mallory"}), 503, faultJSONBody, jsonCT...), 250),

		{name: "no slot for a delay and an abort", cfg: noSlots, step: hdr([2]string{"x-f", "both"}), status: 200, grpc: -1, upstream: true, overflow: 2},
		{name: "no slot for an abort", cfg: noSlots, step: hdr(), status: 200, grpc: -1, upstream: true, overflow: 1},
	}
}

// TestFaultDecisionTable: fault's decision table (faultRows) as one scenario, the
// plugin reconfigured between rows that need another configuration (and once with a
// configuration it must refuse: response_rate_limit, which leaves the previous one
// serving), through fault.wasm and the bundle meshplug.wasm (root id fault). Each row
// is checked against the README on every host, then the hosts are compared field by
// field (the differential harness, the compat-rewritten module on every era
// included).
func TestFaultDecisionTable(t *testing.T) {
	rows := faultRows()
	var configs []string
	var steps []Step
	for _, r := range rows {
		configs = append(configs, r.cfg)
		steps = append(steps, r.step)
	}
	var wantDelays, wantAborts, wantOverflow int64
	for _, r := range rows {
		if r.delayed {
			wantDelays++
		}
		if !r.upstream {
			wantAborts++
		}
		wantOverflow += int64(r.overflow)
	}
	for _, p := range modules(t, "fault") {
		t.Run(moduleName(p), func(t *testing.T) {
			sc := tableScenario(p, configs, steps)
			// A refused configuration (README "Limits": response_rate_limit) after the
			// first row: the first configuration goes on serving the next row.
			refused := Step{Reconfigure: &Reconfigure{Config: `{"faults": [{"abort": {"http_status": 503, "percentage": {"numerator": 100}},
  "response_rate_limit": {"fixed_limit": {"limit_kbps": 1}, "percentage": {"numerator": 100}}}]}`}}
			sc.Steps = append(sc.Steps[:1], append([]Step{refused}, sc.Steps[1:]...)...)
			check := func(t *testing.T, o Outcome) {
				require.True(t, o.Loaded(), "loads: %+v", o.Loads)
				require.NotEmpty(t, o.Reconfigures)
				assert.False(t, o.Reconfigures[0], "response_rate_limit is refused")
				for _, ok := range o.Reconfigures[1:] {
					require.True(t, ok, "every configuration of the table is taken")
				}
				require.Len(t, o.Results, len(rows))
				for i, row := range rows {
					checkFaultRow(t, fmt.Sprintf("row %d (%s)", i, row.name), row, o.Results[i])
				}
				assert.Equal(t, wantDelays, o.Metrics["meshplug.fault.delays_injected"], "delays injected")
				assert.Equal(t, wantAborts, o.Metrics["meshplug.fault.aborts_injected"], "aborts injected")
				assert.Equal(t, wantOverflow, o.Metrics["meshplug.fault.faults_overflow"], "faults refused by max_active_faults")
				assert.Zero(t, o.Metrics["meshplug.fault.active_faults"], "every slot given back")
			}
			want := RunTestenv(t, sc)
			check(t, want)
			tableDifferential(t, sc, want, check)
		})
	}
}

func checkFaultRow(t *testing.T, name string, row faultRow, r Result) {
	t.Helper()
	assert.Equal(t, row.status, r.Status, "%s: status", name)
	if row.upstream {
		assert.NotNil(t, r.Upstream, "%s: reaches the upstream", name)
		assert.False(t, r.LocalReply, "%s: no local reply", name)
		if r.Upstream != nil && len(row.step.Request.BodyChunks) > 0 {
			assert.Equal(t, "ab", r.Upstream.Body, "%s: the body held with the headers goes on", name)
		}
		return
	}
	assert.Nil(t, r.Upstream, "%s: does not reach the upstream", name)
	assert.True(t, r.LocalReply, "%s: a local reply", name)
	assert.Equal(t, "fault_filter_abort", r.Details, "%s: details", name)
	headers := map[string]string{}
	for _, h := range r.Headers {
		headers[h[0]] = h[1]
	}
	if row.grpc >= 0 {
		assert.Equal(t, fmt.Sprint(row.grpc), headers["grpc-status"], "%s: grpc-status", name)
		assert.Empty(t, r.Body, "%s: trailers-only", name)
	} else {
		_, isGrpc := headers["grpc-status"]
		assert.False(t, isGrpc, "%s: no grpc-status", name)
		assert.Equal(t, row.body, r.Body, "%s: body", name)
	}
	for k, v := range row.headers {
		assert.Equal(t, v, headers[k], "%s: header %s", name, k)
	}
}
