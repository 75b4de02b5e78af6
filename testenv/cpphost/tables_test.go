package cpphost

// The filters' decision tables (beyond their README examples) on proxy-wasm-cpp-host:
// each table's rows as one scenario, the plugin reconfigured (Step.Reconfigure, as an
// xDS update does) whenever the next rows need another configuration, run through the
// per-filter module and through the bundle meshplug.wasm (the filter selected by its
// root id in the bundle's VM).

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	authconfig "github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/auth/engine"
	"github.com/meshplug/meshplug/filters/auth/engine/enginetest"
	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/auth/jwt/jwttest"
	"github.com/meshplug/meshplug/filters/routehint/routehinttest"
)

// modules are the two builds a filter ships in: its own module (root id and vm_id the
// filter's name) and the bundle (root id the filter's name, one VM "meshplug").
func modules(t *testing.T, filter string) []Plugin {
	return []Plugin{
		{Name: filter, RootID: filter, VMID: filter, Wasm: BuildGuest(t, "../../filters/"+filter)},
		{Name: filter, RootID: filter, VMID: "meshplug", Wasm: BuildGuest(t, "../../filters/meshplug")},
	}
}

// moduleName names a subtest after the plugin's module.
func moduleName(p Plugin) string {
	if p.VMID == "meshplug" {
		return "meshplug.wasm"
	}
	return p.Name + ".wasm"
}

// tableScenario turns rows (a configuration and a step each) into one scenario: the
// first row's configuration starts the plugin, a Reconfigure step precedes each row
// whose configuration differs from the one before it.
func tableScenario(p Plugin, configs []string, steps []Step) Scenario {
	sc := Scenario{}
	p.Config = configs[0]
	sc.Plugins = []Plugin{p}
	for i, st := range steps {
		if i > 0 && configs[i] != configs[i-1] {
			sc.Steps = append(sc.Steps, Step{Reconfigure: &Reconfigure{Config: configs[i]}})
		}
		sc.Steps = append(sc.Steps, st)
	}
	return sc
}

// TestRoutehintDecisionTable: routehint's decision table (routehinttest.DecisionTable,
// the rows filters/routehint's TestDecisionTable drives natively and on testenv: every
// operator holding and not, repeated and ambiguous inputs, AND/OR groups, rule order
// and mode all, spoofed and trusted hints, overrides), with the echo header.
func TestRoutehintDecisionTable(t *testing.T) {
	table := routehinttest.DecisionTable()
	var configs []string
	var steps []Step
	for _, tc := range table {
		cfg := map[string]any{"echo_header": "x-route-target"}
		for k, v := range tc.Cfg {
			cfg[k] = v
		}
		b, err := json.Marshal(cfg)
		require.NoError(t, err)
		configs = append(configs, string(b))
		st := get(tc.Path, tc.Headers...)
		if st.Request.Path == "" {
			st.Request.Path = "/"
		}
		st.Request.Method = tc.Method
		steps = append(steps, st)
	}
	for _, p := range modules(t, "routehint") {
		t.Run(moduleName(p), func(t *testing.T) {
			sc := tableScenario(p, configs, steps)
			want := RunTestenv(t, sc)
			require.True(t, want.Loaded(), "testenv loads: %+v", want.Loads)
			for _, ok := range want.Reconfigures {
				require.True(t, ok, "every configuration of the table is taken")
			}
			// The scenario does what the table says (on testenv; the hosts are
			// compared with it below).
			require.Len(t, want.Results, len(table))
			for i, tc := range table {
				r := want.Results[i]
				require.NotNil(t, r.Upstream, "%s: status %d", tc.Name, r.Status)
				assert.Equal(t, tc.Want, hintsOf(r.Upstream.Headers), "%s: hints upstream", tc.Name)
				echo := strings.Join(tc.Targets, ",")
				if echo == "" {
					echo = "-"
				}
				assert.Contains(t, r.Headers, [2]string{"x-route-target", echo}, "%s: echo header", tc.Name)
			}
			differential(t, sc)
		})
	}
}

// hintsOf picks routehinttest.HintNames out of a header list.
func hintsOf(h [][2]string) map[string]string {
	out := map[string]string{}
	for _, kv := range h {
		for _, n := range routehinttest.HintNames {
			if kv[0] == n {
				out[n] = kv[1]
			}
		}
	}
	return out
}

// TestAuthDecisionTable: auth's decision table (enginetest.DecideCases, the rows
// filters/auth's TestDecisionTable replays through auth.wasm on testenv: every rule
// kind, method and rejection reason, and the credential-smuggling classes), each
// request also carrying a client's copy of every identity header in three spellings.
// Rows that need a callout are left to TestAuthJWT and TestCallouts (as on testenv);
// the remote provider's key set is answered so the module starts as it does there.
func TestAuthDecisionTable(t *testing.T) {
	cfgJSON, err := json.Marshal(enginetest.Config())
	require.NoError(t, err)
	cfg, err := authconfig.Parse(cfgJSON)
	require.NoError(t, err)
	var rows []enginetest.Case
	steps := []Step{{WaitMetric: &MetricAtLeast{Name: "meshplug.auth.jwks.fetch_success", AtLeast: 1}}}
	for _, c := range enginetest.DecideCases() {
		if c.Kind == engine.FetchJWKS || c.Kind == engine.CallExtAuthz {
			continue
		}
		hdrs := c.HeaderLines()
		for _, name := range cfg.IdentityHeaders {
			hdrs = append(hdrs, [2]string{name, "spoofed"}, [2]string{strings.ReplaceAll(name, "-", "_"), "spoofed"},
				[2]string{strings.ToUpper(strings.ReplaceAll(name, "-", "_")), "spoofed"})
		}
		st := get(c.Path, hdrs...)
		st.Request.Method = c.Method
		rows = append(rows, c)
		steps = append(steps, st)
	}
	require.Greater(t, len(rows), 40, "table rows")
	for _, p := range modules(t, "auth") {
		t.Run(moduleName(p), func(t *testing.T) {
			p.Config = string(cfgJSON)
			sc := Scenario{
				Plugins:     []Plugin{p},
				StartUnixNS: enginetest.Now.UnixNano(),
				Callouts: map[string]CalloutAnswer{"remote": {Status: 200,
					Headers: [][2]string{{"content-type", "application/json"}}, Body: jwttest.JWKS(enginetest.ES)}},
				Steps: steps,
			}
			want := RunTestenv(t, sc)
			require.True(t, want.Loaded(), "testenv loads: %+v", want.Loads)
			require.Len(t, want.Results, len(rows))
			// The scenario does what the table says (on testenv; the hosts are
			// compared with it below).
			for i, c := range rows {
				r := want.Results[i]
				switch c.Kind {
				case engine.Allow:
					if assert.NotNil(t, r.Upstream, "%s: allowed, got %d %s", c.Name, r.Status, r.Details) {
						for _, kv := range r.Upstream.Headers {
							assert.NotEqual(t, "spoofed", kv[1], "%s: client's %s upstream", c.Name, kv[0])
						}
						for name, v := range c.Set {
							assert.Contains(t, r.Upstream.Headers, [2]string{name, v}, "%s: identity header", c.Name)
						}
					}
				case engine.Deny:
					assert.Nil(t, r.Upstream, "%s: denied", c.Name)
					assert.Equal(t, c.Status, r.Status, c.Name)
					assert.Equal(t, "meshplug_auth_"+string(c.Reason), r.Details, c.Name)
				}
			}
			differential(t, sc)
		})
	}
}

// The auth README's example (a JWT provider with a remote key set, API keys, a public
// prefix, an admin rule with required claims, JWT or API key elsewhere) with the rows
// of its responses table, per-filter module and bundle.
func TestAuthReadmeExample(t *testing.T) {
	es := jwttest.New(jwt.ES256, "k1")
	cfg := `{
  "providers": {
    "corp": {
      "issuer": "https://idp.example.com", "audiences": ["orders"], "algorithms": ["RS256", "ES256"],
      "remote_jwks": {"http_uri": {"uri": "https://idp.example.com/.well-known/jwks.json", "cluster": "outbound|443||idp.example.com", "timeout": "2s"}},
      "claim_to_headers": [{"claim": "sub", "header": "x-user-id"}]
    }
  },
  "api_keys": {"keys": [{"consumer": "ci-bot", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}]},
  "rules": [
    {"match": {"prefix": "/healthz"}, "public": true},
    {"match": {"path": "/admin", "methods": ["POST"]}, "requires": ["corp"], "required_claims": {"scope": "admin"}},
    {"match": {"prefix": "/"}, "requires": ["corp", "api_keys"]}
  ]
}`
	now := DefaultStart.Unix()
	sign := func(kv ...any) string {
		c := map[string]any{"iss": "https://idp.example.com", "aud": "orders", "sub": "alice", "iat": now - 10, "exp": now + 600}
		for i := 0; i < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return es.Sign(c)
	}
	bearer := func(tok string) [2]string { return [2]string{"authorization", "Bearer " + tok} }
	key := [2]string{"x-api-key", "test"}
	post := func(path string, h ...[2]string) Step {
		s := get(path, h...)
		s.Request.Method = "POST"
		return s
	}
	grpc := [2]string{"content-type", "application/grpc"}
	steps := []Step{
		{WaitMetric: &MetricAtLeast{Name: "meshplug.auth.jwks.fetch_success", AtLeast: 1}},
		get("/healthz", key, [2]string{"x-consumer", "spoofed"}), // public: credentials and identity stripped
		get("/orders"),                      // no credential: 401, Bearer and ApiKey challenges
		get("/orders", key),                 // API key
		get("/orders", bearer(sign())),      // JWT
		get("/orders", bearer(sign()), key), // both verify
		get("/orders", bearer(sign()), [2]string{"x-api-key", "wrong"}),  // a bad key beside a good token
		get("/orders", bearer(sign("exp", now-100))),                     // expired
		get("/orders", bearer(sign("iss", "https://other"))),             // another issuer
		get("/orders", key, key),                                         // given twice
		get("/orders?api_key=test"),                                      // not a source of this configuration: no credential
		post("/admin", key),                                              // the rule reads no API key
		post("/admin", bearer(sign())),                                   // 403 insufficient_scope
		post("/admin", bearer(sign("scope", "admin"))),                   // allowed
		get("/admin", key),                                               // GET: the catch-all rule
		get("/admin%2Fx", key),                                           // ambiguous path: 400
		{Request: &Request{Path: "/orders", Headers: [][2]string{grpc}}}, // gRPC: grpc-status 16
		{Request: &Request{Method: "POST", Path: "/admin", Headers: [][2]string{grpc, bearer(sign())}}}, // grpc-status 7
	}
	wantStatus := []int{200, 401, 200, 200, 200, 401, 401, 401, 401, 401, 401, 403, 200, 200, 400, 200, 200}
	for _, p := range modules(t, "auth") {
		t.Run(moduleName(p), func(t *testing.T) {
			p.Config = cfg
			sc := Scenario{
				Plugins: []Plugin{p},
				Callouts: map[string]CalloutAnswer{"outbound|443||idp.example.com": {Status: 200,
					Headers: [][2]string{{"content-type", "application/json"}}, Body: jwttest.JWKS(es)}},
				Steps: steps,
			}
			want := RunTestenv(t, sc)
			require.True(t, want.Loaded(), "testenv loads: %+v", want.Loads)
			got := want.Statuses()
			assert.Equal(t, wantStatus, got, "statuses on testenv")
			for i, code := range map[int]int{15: 16, 16: 7} {
				if assert.NotNil(t, want.Results[i].GrpcStatus, "request %d: grpc-status", i) {
					assert.Equal(t, code, *want.Results[i].GrpcStatus, "request %d: grpc-status", i)
				}
			}
			differential(t, sc)
		})
	}
}

// The fault README's percentage examples: half a percent of DELETE /items/… on the
// reviews cluster aborted with 503 (at most 50 at a time), and every tenth call of
// pkg.Inventory aborted with gRPC UNAVAILABLE and a retry hint. The draws come from the
// module's own generator; `random_seed` (the README's "for tests only" field) makes both
// hosts draw the same sequence, so each request's fate is compared, not only the share.
func TestFaultPercentages(t *testing.T) {
	reviews := map[string]string{"xds.cluster_name": "reviews"}
	req := func(method, path string, props map[string]string, h ...[2]string) Step {
		s := get(path, h...)
		s.Request.Method = method
		s.Request.Properties = props
		return s
	}
	grpc := [2]string{"content-type", "application/grpc"}
	var inventory []Step
	for range 100 {
		inventory = append(inventory, req("POST", "/pkg.Inventory/Get", nil, grpc))
	}
	for _, tc := range []struct {
		name  string
		cfg   string
		steps []Step
		check func(t *testing.T, o Outcome)
	}{
		{name: "delete-items", cfg: `{"random_seed": 7, "max_active_faults": 50, "faults": [{
  "upstream_cluster": "reviews",
  "headers": [{"name": ":method", "exact_match": "DELETE"},
              {"name": ":path", "safe_regex_match": {"regex": "/items/[0-9]+"}}],
  "abort": {"http_status": 503, "percentage": {"numerator": 50, "denominator": "TEN_THOUSAND"}}
}]}`, steps: []Step{
			{Request: req("DELETE", "/items/42", reviews).Request, Repeat: 1000},
			{Request: req("GET", "/items/42", reviews).Request, Repeat: 50},
			{Request: req("DELETE", "/items/42/x", reviews).Request, Repeat: 50},
			{Request: req("DELETE", "/items/42", map[string]string{"xds.cluster_name": "ratings"}).Request, Repeat: 50},
		}, check: func(t *testing.T, o Outcome) {
			aborted := o.Results[0].Repeat.Statuses["503"]
			assert.Positive(t, aborted, "some of 1000 aborted")
			assert.Less(t, aborted, 25, "about 0.5%% of 1000 aborted")
			for i := 1; i < 4; i++ {
				assert.Equal(t, map[string]int{"200": 50}, o.Results[i].Repeat.Statuses, "step %d: not targeted", i)
			}
		}},
		{name: "grpc-inventory", cfg: `{"random_seed": 7, "faults": [{
  "headers": [{"name": ":path", "prefix_match": "/pkg.Inventory/"}],
  "abort": {"grpc_status": 14, "percentage": {"numerator": 10},
            "response_headers": [{"name": "retry-after", "value": "1"}]}
}]}`, steps: append(inventory, req("POST", "/pkg.Other/Get", nil, grpc)), check: func(t *testing.T, o Outcome) {
			aborted := 0
			for _, r := range o.Results[:100] {
				if r.GrpcStatus != nil && *r.GrpcStatus == 14 {
					aborted++
					assert.Nil(t, r.Upstream)
					assert.Contains(t, r.Headers, [2]string{"retry-after", "1"})
				}
			}
			assert.Positive(t, aborted, "some of 100 calls aborted")
			assert.Less(t, aborted, 30, "about 10%% of 100 calls aborted")
			assert.NotNil(t, o.Results[100].Upstream, "another service is not targeted")
		}},
	} {
		for _, p := range modules(t, "fault") {
			t.Run(tc.name+"/"+moduleName(p), func(t *testing.T) {
				p.Config = tc.cfg
				sc := Scenario{Plugins: []Plugin{p}, Steps: tc.steps}
				want := RunTestenv(t, sc)
				require.True(t, want.Loaded(), "testenv loads: %+v", want.Loads)
				tc.check(t, want)
				differential(t, sc)
			})
		}
	}
}

// TestRefusedAtStart: a configuration the plugin refuses at start is stopped by the
// configuration canary (cpp-host's createWasm → WasmHandleBase::canary; testenv.New's
// Host.canary) before any worker's VM starts, on every host as at Reconfigure
// (TestReconfigure): testenv's error names the canary (worker -1), cpp-host's
// createWasm fails and no worker gets the plugin.
func TestRefusedAtStart(t *testing.T) {
	wasm := BuildGuest(t, "../conformance/guest")
	sc := Scenario{
		Plugins: []Plugin{{Name: "conformance", RootID: "conformance_root", VMID: "conf", Wasm: wasm,
			Config: `{"fail_configure": true}`}},
		Steps: []Step{get("/")},
	}
	want := RunTestenv(t, sc)
	require.Len(t, want.Loads, 1)
	assert.False(t, want.Loads[0].Loaded, "testenv refuses it")
	assert.Contains(t, want.Loads[0].Errors, "configuration canary")
	assert.Contains(t, want.Loads[0].Errors, "worker -1")
	for _, host := range []string{Host52a0291, Host3930b7b} {
		t.Run(host, func(t *testing.T) {
			got := RunCppHost(t, host, sc)
			require.Len(t, got.Loads, 1)
			assert.False(t, got.Loads[0].Loaded, "createWasm fails: %+v", got.Loads[0])
			assert.False(t, got.Loads[0].Started, "no worker started it: %+v", got.Loads[0])
			// Not compared further: Envoy rejects such a filter configuration (no
			// listener serves with it), while the driver goes on serving the chain
			// without the plugin and testenv.New returns no host.
		})
	}
}
