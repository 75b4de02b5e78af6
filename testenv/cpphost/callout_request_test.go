package cpphost

// What a callout sends, compared across hosts (Outcome.Callouts, Compare) and checked
// against the filters' READMEs on every host, so a bug both hosts share still fails:
// auth's ext_authz check request and ratelimit's global-mode RateLimitRequest.

import (
	"encoding/json"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

// TestAuthExtAuthzRequest: the check request auth sends (auth README "ext_authz"):
// the client's method, `path_prefix` + the path in canonical form (case kept, the query
// as sent), `:authority` from the configuration (default: the cluster name),
// `content-length: 0`, no body, the allowed request headers only (a client's copy of
// an identity header never), every Cookie line joined with "; ", the configured
// timeout (default 200 ms); a request refused before the check sends none.
func TestAuthExtAuthzRequest(t *testing.T) {
	const full = `{"ext_authz": {"http_service": {"cluster": "authz", "authority": "authz.internal",
    "path_prefix": "/check", "timeout": "1500ms"},
  "allowed_request_headers": ["x-tenant", "cookie"], "allowed_upstream_headers": ["x-user"]},
  "rules": [{"match": {"prefix": "/"}, "requires": ["ext_authz"]}]}`
	const defaults = `{"ext_authz": {"http_service": {"cluster": "authz"}, "allowed_request_headers": ["x-tenant"]},
  "rules": [{"match": {"prefix": "/"}, "requires": ["ext_authz"]}]}`
	allow := CalloutAnswer{Status: 200, Headers: [][2]string{{"x-user", "alice"}}}
	req := func(method, path string, h ...[2]string) Step {
		s := get(path, h...)
		s.Request.Method = method
		s.Callouts = map[string]CalloutAnswer{"authz": allow}
		return s
	}
	type row struct {
		name string
		step Step
		// want: the check request's pseudo-headers and content-length in this order,
		// then the allowed headers (any order); nil: no check request.
		head, allowed [][2]string
		timeoutMS     int64
	}
	pre := func(method, path, authority string) [][2]string {
		return [][2]string{{":method", method}, {":path", path}, {":authority", authority}, {"content-length", "0"}}
	}
	rows := []row{
		{name: "path_prefix, authority, timeout, an allowed header", step: req("GET", "/orders?id=1", [2]string{"x-tenant", "acme"}),
			head: pre("GET", "/check/orders?id=1", "authz.internal"), allowed: [][2]string{{"x-tenant", "acme"}}, timeoutMS: 1500},
		{name: "the path in canonical form, case kept, query as sent", step: req("GET", "/Orders/%61b//c?x=%2e&Y=1"),
			head: pre("GET", "/check/Orders/ab/c?x=%2e&Y=1", "authz.internal"), timeoutMS: 1500},
		{name: "Cookie lines joined, other and identity headers not sent", step: req("POST", "/orders",
			[2]string{"cookie", "a=1"}, [2]string{"x-other", "no"}, [2]string{"cookie", "b=2; c=3"}, [2]string{"x-user", "mallory"}),
			head: pre("POST", "/check/orders", "authz.internal"), allowed: [][2]string{{"cookie", "a=1; b=2; c=3"}}, timeoutMS: 1500},
		{name: "a repeated allowed header: refused, no check", step: req("GET", "/orders", [2]string{"x-tenant", "a"}, [2]string{"x-tenant", "b"})},
		{name: "reconfigure: defaults", step: Step{Reconfigure: &Reconfigure{Config: defaults}}},
		{name: "defaults: the cluster as authority, the path alone, 200 ms", step: req("DELETE", "/orders/7", [2]string{"x-tenant", "acme"}),
			head: pre("DELETE", "/orders/7", "authz"), allowed: [][2]string{{"x-tenant", "acme"}}, timeoutMS: 200},
	}
	var steps []Step
	for _, r := range rows {
		steps = append(steps, r.step)
	}
	check := func(t *testing.T, o Outcome) {
		require.True(t, o.Loaded(), "loads: %+v", o.Loads)
		for i, r := range rows {
			c, ok := oneCallout(t, &o, i, r.head != nil, r.name)
			if !ok {
				continue
			}
			assert.Equal(t, "http", c.Kind, r.name)
			assert.Equal(t, "authz", c.Cluster, "%s: cluster", r.name)
			assert.Equal(t, r.timeoutMS, c.TimeoutMS, "%s: timeout", r.name)
			assert.Empty(t, c.Body(), "%s: no body", r.name)
			if assert.GreaterOrEqual(t, len(c.Headers), len(r.head), "%s: headers %q", r.name, c.Headers) {
				assert.Equal(t, r.head, c.Headers[:len(r.head)], "%s: pseudo-headers and content-length", r.name)
				assert.ElementsMatch(t, r.allowed, c.Headers[len(r.head):], "%s: allowed headers", r.name)
			}
		}
	}
	for _, p := range modules(t, "auth") {
		t.Run(moduleName(p), func(t *testing.T) {
			p.Config = full
			sc := Scenario{Plugins: []Plugin{p}, Callouts: map[string]CalloutAnswer{"authz": {Status: 503}}, Steps: steps}
			want := RunTestenv(t, sc)
			check(t, want)
			assert.Equal(t, []int{200, 200, 200, 401, 200}, want.Statuses(), "testenv statuses (%+v)", want.Results)
			tableDifferential(t, sc, want, check)
		})
	}
}

// TestRatelimitGlobalRequest: the RateLimitRequest the global mode sends (ratelimit
// README "Global mode", "What is sent"): ShouldRateLimit of
// envoy.service.ratelimit.v3.RateLimitService on the configured cluster with its
// timeout, the domain, hits_addend 1, one descriptor per matching rule made of
// generic_key = the rule's name then the rule's entries with the request's values; a
// rule missing a value with missing_key deny sends nothing, one with allow sends no
// descriptor; a request no rule applies to does not call.
func TestRatelimitGlobalRequest(t *testing.T) {
	const cluster = "outbound|8081||ratelimit.shop.svc.cluster.local"
	cfg := `{"mode": "global", "domain": "checkout",
  "global": {"cluster": "` + cluster + `", "timeout": "1s"},
  "rules": [
    {"name": "per-user", "match": {"prefix": "/checkout"}, "descriptors": [{"key": "user", "header": "x-user-id"}],
     "limit": {"requests": 100, "unit": "minute"}, "missing_key": "deny"},
    {"name": "per-path", "descriptors": [{"key": "path", "path": true}, {"key": "method", "method": true}],
     "limit": {"requests": 1000, "unit": "minute"}},
    {"name": "per-plan", "descriptors": [{"key": "plan", "header": "x-plan"}],
     "limit": {"requests": 10, "unit": "second"}, "missing_key": "allow"}
  ]}`
	okResp, err := proto.Marshal(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK})
	require.NoError(t, err)
	req := func(method, path string, h ...[2]string) Step {
		s := get(path, h...)
		s.Request.Method = method
		s.GrpcCallouts = map[string]GrpcAnswer{cluster: {Response: okResp}}
		return s
	}
	type entry = [2]string
	rows := []struct {
		name string
		step Step
		// descriptors wanted, nil: no call
		descriptors [][]entry
	}{
		{"every rule", req("POST", "/checkout/cart", [2]string{"x-user-id", "alice"}, [2]string{"x-plan", "gold"}),
			[][]entry{{{"generic_key", "per-user"}, {"user", "alice"}},
				{{"generic_key", "per-path"}, {"path", "/checkout/cart"}, {"method", "POST"}},
				{{"generic_key", "per-plan"}, {"plan", "gold"}}}},
		{"missing_key allow: no descriptor for that rule", req("GET", "/checkout", [2]string{"x-user-id", "bob"}),
			[][]entry{{{"generic_key", "per-user"}, {"user", "bob"}},
				{{"generic_key", "per-path"}, {"path", "/checkout"}, {"method", "GET"}}}},
		{"the path as read in canonical form", req("GET", "/items//a/%2e%2e/b"),
			[][]entry{{{"generic_key", "per-path"}, {"path", "/items/b"}, {"method", "GET"}}}},
		{"missing_key deny: rejected without a call", req("GET", "/checkout", [2]string{"x-plan", "gold"}), nil},
	}
	var steps []Step
	for _, r := range rows {
		steps = append(steps, r.step)
	}
	check := func(t *testing.T, o Outcome) {
		require.True(t, o.Loaded(), "loads: %+v", o.Loads)
		for i, r := range rows {
			c, ok := oneCallout(t, &o, i, r.descriptors != nil, r.name)
			if !ok {
				continue
			}
			assert.Equal(t, "grpc", c.Kind, r.name)
			assert.Equal(t, cluster, c.Cluster, "%s: cluster", r.name)
			assert.Equal(t, "envoy.service.ratelimit.v3.RateLimitService", c.Service, "%s: service", r.name)
			assert.Equal(t, "ShouldRateLimit", c.Method, "%s: method", r.name)
			assert.Equal(t, (time.Second).Milliseconds(), c.TimeoutMS, "%s: timeout", r.name)
			var m rlsv3.RateLimitRequest
			if !assert.NoError(t, proto.Unmarshal([]byte(c.Body()), &m), "%s: a RateLimitRequest", r.name) {
				continue
			}
			assert.Equal(t, "checkout", m.GetDomain(), "%s: domain", r.name)
			assert.Equal(t, uint32(1), m.GetHitsAddend(), "%s: hits_addend", r.name)
			var got [][]entry
			for _, d := range m.GetDescriptors() {
				var es []entry
				for _, e := range d.GetEntries() {
					es = append(es, entry{e.GetKey(), e.GetValue()})
				}
				got = append(got, es)
			}
			assert.Equal(t, r.descriptors, got, "%s: descriptors", r.name)
		}
	}
	for _, p := range modules(t, "ratelimit") {
		t.Run(moduleName(p), func(t *testing.T) {
			p.Config = cfg
			sc := Scenario{Plugins: []Plugin{p}, Steps: steps}
			want := RunTestenv(t, sc)
			check(t, want)
			assert.Equal(t, []int{200, 200, 200, 429}, want.Statuses(), "testenv statuses")
			tableDifferential(t, sc, want, check)
		})
	}
}

// TestVMEnvironment: the VM's environment (Plugin.Env: Envoy's
// vm_config.environment_variables, Istio's WasmPlugin vmConfig.env) reaches the guest
// through WASI environ_get on both hosts (the driver hands it to cpp-host's WasmBase):
// the conformance guest's "environ" op reports os.Environ, os.LookupEnv and the GC
// percent Go's runtime took from GOGC at start. A VM shared by vm_id keeps the
// environment of the plugin that created it (Envoy's VM key has no environment).
func TestVMEnvironment(t *testing.T) {
	wasm := BuildGuest(t, "../conformance/guest")
	environ := func(name string) Step {
		return get("/op/environ", [2]string{"x-op", "environ"}, [2]string{"x-env", name})
	}
	type report struct {
		Environ   []string `json:"environ"`
		Getenv    string   `json:"getenv"`
		GetenvSet bool     `json:"getenv_set"`
		GCPercent int      `json:"gc_percent"`
	}
	for _, tc := range []struct {
		name    string
		plugins []Plugin
		step    Step
		// per plugin of the chain: what its report must say
		want report
	}{
		{name: "no environment", plugins: []Plugin{{Name: "conf", RootID: "conformance_root", VMID: "conf"}},
			step: environ("GOGC"), want: report{Environ: []string{}, GCPercent: 100}},
		{name: "GOGC=50 and other variables", plugins: []Plugin{{Name: "conf", RootID: "conformance_root", VMID: "conf",
			Env: map[string]string{"GOGC": "50", "TZ": "UTC", "MESHPLUG_X": "a=b c"}}},
			step: environ("MESHPLUG_X"), want: report{Environ: []string{"GOGC=50", "MESHPLUG_X=a=b c", "TZ=UTC"},
				Getenv: "a=b c", GetenvSet: true, GCPercent: 50}},
		{name: "GOGC=100, an empty value", plugins: []Plugin{{Name: "conf", RootID: "conformance_root", VMID: "conf",
			Env: map[string]string{"GOGC": "100", "EMPTY": ""}}},
			step: environ("EMPTY"), want: report{Environ: []string{"EMPTY=", "GOGC=100"}, GetenvSet: true, GCPercent: 100}},
		{name: "GOGC=off", plugins: []Plugin{{Name: "conf", RootID: "conformance_root", VMID: "conf",
			Env: map[string]string{"GOGC": "off"}}},
			step: environ("GOGC"), want: report{Environ: []string{"GOGC=off"}, Getenv: "off", GetenvSet: true, GCPercent: -1}},
		{name: "a shared VM keeps its creator's environment", plugins: []Plugin{
			{Name: "first", RootID: "first_root", VMID: "shared", Env: map[string]string{"GOGC": "200"}},
			{Name: "second", RootID: "second_root", VMID: "shared", Env: map[string]string{"GOGC": "25"}}},
			step: environ("GOGC"), want: report{Environ: []string{"GOGC=200"}, Getenv: "200", GetenvSet: true, GCPercent: 200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.plugins {
				tc.plugins[i].Wasm = wasm
				tc.plugins[i].Config = `{}`
			}
			sc := Scenario{Plugins: tc.plugins, Steps: []Step{tc.step, get("/plain")}}
			check := func(t *testing.T, o Outcome) {
				require.True(t, o.Loaded(), "loads: %+v", o.Loads)
				require.Len(t, o.Results, 2)
				r := o.Results[0]
				require.Equal(t, 200, r.Status, "environ op: %s", r.Body)
				var got report
				require.NoError(t, json.Unmarshal([]byte(r.Body), &got), r.Body)
				assert.Equal(t, tc.want, got)
			}
			want := RunTestenv(t, sc)
			check(t, want)
			tableDifferential(t, sc, want, check)
		})
	}
}

// calloutLines is what Compare compares: a field that differs shows, the order of one
// step's requests does not, the configuration canary's (worker -1) are left out.
func TestCalloutLines(t *testing.T) {
	base := Callout{Step: 2, Kind: "http", Cluster: "authz", TimeoutMS: 200,
		Headers: [][2]string{{":method", "GET"}, {":path", "/x"}, {":authority", "authz"}}, BodyHex: "6869"}
	other := Callout{Step: 2, Kind: "grpc", Cluster: "rls", Service: "s", Method: "M", BodyHex: "00"}
	with := func(f func(*Callout)) []Callout {
		c := base
		c.Headers = append([][2]string(nil), base.Headers...)
		f(&c)
		return []Callout{c, other}
	}
	same := []Callout{base, other}
	for _, tc := range []struct {
		name  string
		got   []Callout
		equal bool
	}{
		{"identical", []Callout{base, other}, true},
		{"one step's requests in another order", []Callout{other, base}, true},
		{"a canary's request left out", append([]Callout{{Step: -1, Worker: -1, Kind: "http", Cluster: "idp"}}, same...), true},
		{"authority", with(func(c *Callout) { c.Headers[2][1] = "other" }), false},
		{"header order", with(func(c *Callout) { c.Headers[0], c.Headers[1] = c.Headers[1], c.Headers[0] }), false},
		{"body", with(func(c *Callout) { c.BodyHex = "6868" }), false},
		{"timeout", with(func(c *Callout) { c.TimeoutMS = 100 }), false},
		{"cluster", with(func(c *Callout) { c.Cluster = "authz2" }), false},
		{"step", with(func(c *Callout) { c.Step = 3 }), false},
		{"worker", with(func(c *Callout) { c.Worker = 1 }), false},
		{"trailers", with(func(c *Callout) { c.Trailers = [][2]string{{"t", "1"}} }), false},
		{"end_stream", with(func(c *Callout) { c.EndStream = true }), false},
		{"a request missing", []Callout{base}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.equal, assert.ObjectsAreEqual(calloutLines(same), calloutLines(tc.got)))
		})
	}
}

// oneCallout returns the one callout step i made when want is true; when want is
// false it asserts that the step made none. ok is false when there is nothing more to
// check.
func oneCallout(t *testing.T, o *Outcome, i int, want bool, name string) (c Callout, ok bool) {
	t.Helper()
	cs := o.CalloutsIn(i)
	if !want {
		assert.Empty(t, cs, "%s: no callout", name)
		return Callout{}, false
	}
	if !assert.Len(t, cs, 1, "%s: one callout", name) {
		return Callout{}, false
	}
	return cs[0], true
}
