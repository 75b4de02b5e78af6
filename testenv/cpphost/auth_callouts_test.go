package cpphost

// auth's rows that need a callout, beyond TestAuthJWT and TestCallouts: a remote key
// set's whole life (cached keys across requests, an unknown kid refetched at most once
// per min_refetch_interval, a bad key set, the refresh from the tick replacing the
// keys, failures backed off with the stale keys kept, a request waiting for the first
// fetch), and ext_authz's remaining rows.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/auth/jwt/jwttest"
)

// authRow is a step and what the auth README says the client gets: the status (200:
// the request reaches the upstream), the details of a denial, the grpc-status of a
// gRPC one (0: not checked).
type authRow struct {
	name    string
	step    Step
	status  int
	details string
	grpc    int
	// upstream headers that must reach the upstream, and ones that must not.
	upHeaders [][2]string
	notUp     []string
	// body of the reply, if checked.
	body string
	// headers of the reply that must be there.
	headers [][2]string
}

// authRows turns rows into steps, the non-request steps (clock, waits) given as rows
// without a request.
func authScenarioSteps(rows []authRow) []Step {
	var steps []Step
	for _, r := range rows {
		steps = append(steps, r.step)
	}
	return steps
}

// checkAuthRows checks each request row of rows against o's results.
func checkAuthRows(t *testing.T, rows []authRow, o Outcome) {
	t.Helper()
	require.True(t, o.Loaded(), "loads: %+v", o.Loads)
	k := 0
	for _, row := range rows {
		if row.step.Request == nil {
			continue
		}
		require.Less(t, k, len(o.Results))
		r := o.Results[k]
		k++
		assert.Equal(t, row.status, r.Status, "%s: status (%s)", row.name, r.Details)
		if row.status == 200 && row.details == "" {
			if assert.NotNil(t, r.Upstream, "%s: reaches the upstream", row.name) {
				for _, h := range row.upHeaders {
					assert.Contains(t, r.Upstream.Headers, h, "%s: upstream header", row.name)
				}
				for _, h := range r.Upstream.Headers {
					assert.NotEqual(t, "forged", h[1], "%s: a client's copy of %s reached the upstream", row.name, h[0])
				}
				for _, name := range row.notUp {
					for _, h := range r.Upstream.Headers {
						assert.NotEqual(t, name, h[0], "%s: %s must not reach the upstream", row.name, name)
					}
				}
				if want := strings.Join(row.step.Request.BodyChunks, ""); want != "" {
					assert.Equal(t, want, r.Upstream.Body, "%s: the body held while waiting goes on", row.name)
				}
			}
			continue
		}
		assert.Nil(t, r.Upstream, "%s: does not reach the upstream", row.name)
		assert.Equal(t, "meshplug_auth_"+row.details, r.Details, "%s: details", row.name)
		if row.grpc != 0 && assert.NotNil(t, r.GrpcStatus, "%s: grpc-status", row.name) {
			assert.Equal(t, row.grpc, *r.GrpcStatus, "%s: grpc-status", row.name)
		}
		if row.body != "" {
			assert.Equal(t, digest(row.body), digest(r.Body), "%s: body", row.name)
		}
		for _, h := range row.headers {
			assert.Contains(t, r.Headers, h, "%s: reply header", row.name)
		}
	}
	assert.Equal(t, len(o.Results), k, "results")
}

// TestAuthRemoteJWKS: a remote key set over its life, with the key-set callout answered
// per step (a request that triggers a fetch) or from the scenario (the fetch at start
// and the refreshes from the tick), on one worker, through auth.wasm and
// meshplug.wasm. Each row is what the auth README says (Providers: cache_duration,
// refresh_before, min_refetch_interval, backoff; "kept (stale) through failed
// refreshes"; "Nothing passes early"; "Cached tokens are re-verified when the
// provider's key set changes"), then the hosts are compared.
func TestAuthRemoteJWKS(t *testing.T) {
	k1, k2, k3 := jwttest.New(jwt.ES256, "k1"), jwttest.New(jwt.ES256, "k2"), jwttest.New(jwt.ES256, "k3")
	now := DefaultStart.Unix()
	sign := func(s *jwttest.Signer, sub string, kv ...any) string {
		c := map[string]any{"iss": "https://idp.example.com", "aud": "orders", "sub": sub, "exp": now + 3600}
		for i := 0; i+1 < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return s.Sign(c)
	}
	cfg := func(cache, refresh string) string {
		return `{"providers": {"corp": {"issuer": "https://idp.example.com", "audiences": ["orders"], "algorithms": ["ES256"],
  "remote_jwks": {"http_uri": {"uri": "https://idp.example.com/jwks", "cluster": "idp", "timeout": "1s"},
    "cache_duration": "` + cache + `", "refresh_before": "` + refresh + `", "min_refetch_interval": "30s",
    "backoff": {"base_interval": "1s", "max_interval": "4s"}},
  "claim_to_headers": [{"claim": "sub", "header": "x-user-id"}]}},
  "rules": [{"match": {"prefix": "/"}, "requires": ["corp"]}]}`
	}
	jwks := func(s ...*jwttest.Signer) CalloutAnswer {
		return CalloutAnswer{Status: 200, Headers: [][2]string{{"content-type", "application/json"}}, Body: jwttest.JWKS(s...)}
	}
	bearer := func(tok string) [2]string { return [2]string{"authorization", "Bearer " + tok} }
	call := func(tok string, answer *CalloutAnswer) Step {
		s := get("/orders", bearer(tok))
		if answer != nil {
			s.Callouts = map[string]CalloutAnswer{"idp": *answer}
		}
		return s
	}
	ok := func(name string, st Step, sub string) authRow {
		return authRow{name: name, step: st, status: 200, upHeaders: [][2]string{{"x-user-id", sub}}, notUp: []string{"authorization"}}
	}
	deny := func(name string, st Step, reason string) authRow {
		return authRow{name: name, step: st, status: 401, details: reason}
	}
	wait := func(metric string, n int64) authRow {
		return authRow{name: "wait " + metric, step: Step{WaitMetric: &MetricAtLeast{Name: "meshplug.auth.jwks." + metric, AtLeast: n}}}
	}
	advance := func(ms int64) authRow { return authRow{name: "advance", step: Step{AdvanceMS: ms}} }
	tok1, tok2, tok3 := sign(k1, "alice"), sign(k2, "bob"), sign(k3, "carol")
	k12, k123 := jwks(k1, k2), jwks(k1, k2, k3)
	notJSON := CalloutAnswer{Status: 200, Body: "not json"}

	for _, tc := range []struct {
		name string
		cfg  string
		// answer is the key set's answer outside the steps that give their own: the
		// fetch at start and the refreshes from the tick (every second).
		answer  CalloutAnswer
		rows    []authRow
		success int64
		failure int64
		hits    int64
	}{
		{
			// Keys fetched at start (t=0), fresh for 600 s, refreshed 60 s before.
			name: "rotation-and-refresh", cfg: cfg("600s", "60s"), answer: jwks(k1),
			rows: []authRow{
				wait("fetch_success", 1),
				ok("keys fetched at start", call(tok1, nil), "alice"),
				ok("the same token: from the token cache", call(tok1, nil), "alice"),
				// The fetch at start counts: no refetch within min_refetch_interval.
				deny("unknown kid within min_refetch_interval", call(tok2, &k12), "unknown_kid"),
				advance(30_000),
				// A refetch whose key set does not parse is a failure; the old keys stay.
				deny("unknown kid: refetched, bad key set", call(tok2, &notJSON), "unknown_kid"),
				ok("old keys kept after the bad key set", call(tok1, nil), "alice"),
				advance(30_000),
				ok("unknown kid: refetched, the rotated key set has it", call(tok2, &k12), "bob"),
				deny("another unknown kid right after: no refetch", call(tok3, &k123), "unknown_kid"),
				// At t=600 the tick refreshes (expiry 660 − 60 s): the scenario's answer
				// has k1 only.
				advance(540_000),
				wait("fetch_success", 3),
				deny("cached token of a key the refresh removed: verified again", call(tok2, &k12), "unknown_kid"),
				ok("a token of a key still there", call(tok1, nil), "alice"),
			},
			success: 3, failure: 1, hits: 2,
		},
		{
			// The fetch at start fails (the IdP answers 503): nothing verifies until a
			// fetch succeeds (fail closed); keys fresh for 10 s, refreshed 5 s before;
			// refreshes from the tick fail and back off 1, 2, 4, 4 s; the keys are
			// kept, also past their expiry.
			name: "failures-and-stale-keys", cfg: cfg("10s", "5s"), answer: CalloutAnswer{Status: 503, Body: "down"},
			rows: []authRow{
				wait("fetch_failure", 1),
				// Backing off until t=1: no fetch, no keys.
				{name: "no keys, backing off", step: call(tok1, &CalloutAnswer{Status: 200, Body: jwttest.JWKS(k1)}), status: 401,
					details: "jwks_unavailable", headers: [][2]string{{"www-authenticate", `Bearer realm="meshplug"`}}},
				{name: "no keys, gRPC", step: func() Step {
					s := call(tok1, nil)
					s.Request.Headers = append(s.Request.Headers, grpcCT)
					return s
				}(), status: 200, details: "jwks_unavailable", grpc: 16},
				advance(1000),
				// Another issuer's token never makes the provider fetch.
				deny("another issuer: no fetch", call(sign(k1, "eve", "iss", "https://other.example.com"), &CalloutAnswer{Status: 200, Body: jwttest.JWKS(k1)}), "bad_issuer"),
				// The request waits for the fetch it started, its body held with it.
				ok("no keys: the request waits for the fetch", func() Step {
					s := call(tok1, &CalloutAnswer{Status: 200, Body: jwttest.JWKS(k1)})
					s.Request.Method = "POST"
					s.Request.BodyChunks = []string{"order=", "1"}
					return s
				}(), "alice"),
				advance(5000), // t=6: refresh, 503 (next at 7)
				wait("fetch_failure", 2),
				ok("keys kept after a failed refresh", call(sign(k1, "dave"), nil), "dave"),
				advance(1000), // t=7: refresh, 503 (next at 9)
				wait("fetch_failure", 3),
				advance(2000), // t=9: refresh, 503 (next at 13)
				wait("fetch_failure", 4),
				advance(4000), // t=13 (expired at 11): refresh, 503 (next at 17)
				wait("fetch_failure", 5),
				ok("stale keys kept", call(sign(k1, "frank"), nil), "frank"),
				deny("stale keys: a forged token still fails", call(sign(k2, "mallory"), nil), "unknown_kid"),
			},
			success: 1, failure: 5,
		},
	} {
		for _, p := range modules(t, "auth") {
			t.Run(tc.name+"/"+moduleName(p), func(t *testing.T) {
				p.Config = tc.cfg
				sc := Scenario{
					Plugins:  []Plugin{p},
					Callouts: map[string]CalloutAnswer{"idp": tc.answer},
					Steps:    authScenarioSteps(tc.rows),
				}
				check := func(t *testing.T, o Outcome) {
					checkAuthRows(t, tc.rows, o)
					assert.Equal(t, tc.success, o.Metrics["meshplug.auth.jwks.fetch_success"], "fetches")
					assert.Equal(t, tc.failure, o.Metrics["meshplug.auth.jwks.fetch_failure"], "failed fetches")
					if tc.hits > 0 {
						assert.Equal(t, tc.hits, o.Metrics["meshplug.auth.cache.hit"], "token cache hits")
					}
				}
				want := RunTestenv(t, sc)
				check(t, want)
				tableDifferential(t, sc, want, check)
			})
		}
	}
}

// TestAuthExtAuthzRows: ext_authz rows TestCallouts leaves (auth README "ext_authz"
// and its responses table): several allowed upstream headers replacing a client's
// copies, a 2xx other than 200 denying with 403, a denial's body cut at 4 KiB with
// its allowed client headers, a repeated allowed request header refused (401
// ambiguous_credential) without a call, gRPC requests (403 → 7, the service failing →
// status_on_error → 7), and a cluster the proxy does not have (status_on_error);
// auth.wasm and meshplug.wasm.
func TestAuthExtAuthzRows(t *testing.T) {
	cfg := func(cluster string) string {
		return `{"ext_authz": {"http_service": {"cluster": "` + cluster + `", "timeout": "1s"},
  "allowed_request_headers": ["x-tenant", "cookie"], "allowed_upstream_headers": ["x-user", "x-tier"],
  "allowed_client_headers": ["www-authenticate", "x-reason"]},
  "rules": [{"match": {"prefix": "/"}, "requires": ["ext_authz"]}]}`
	}
	with := func(a CalloutAnswer, h ...[2]string) Step {
		s := get("/orders", h...)
		s.Callouts = map[string]CalloutAnswer{"authz": a}
		return s
	}
	grpc := func(s Step) Step {
		s.Request.Method = "POST"
		s.Request.Path = "/pkg.Orders/Get"
		s.Request.Headers = append(s.Request.Headers, grpcCT)
		return s
	}
	long := strings.Repeat("r", 5000)
	allow := CalloutAnswer{Status: 200, Headers: [][2]string{{"x-user", "alice"}, {"x-tier", "gold"}}}
	rows := []authRow{
		{name: "allowed, upstream headers replace the client's", step: with(allow, [2]string{"x-tier", "forged"}, [2]string{"X_Tier", "forged"},
			[2]string{"cookie", "a=1"}, [2]string{"cookie", "b=2"}), status: 200,
			upHeaders: [][2]string{{"x-user", "alice"}, {"x-tier", "gold"}}, notUp: []string{"x_tier"}},
		{name: "201 is not 200: 403", step: with(CalloutAnswer{Status: 201, Body: "created?"}), status: 403,
			details: "ext_authz_denied", body: "created?"},
		{name: "a denial's body cut at 4 KiB, its allowed client headers", step: with(CalloutAnswer{Status: 429, Body: long,
			Headers: [][2]string{{"x-reason", "quota"}, {"x-internal", "no"}}}), status: 429, details: "ext_authz_denied",
			body: long[:4096], headers: [][2]string{{"x-reason", "quota"}}},
		{name: "a repeated allowed request header: refused without a call", step: with(allow, [2]string{"x-tenant", "a"}, [2]string{"x-tenant", "b"}),
			status: 401, details: "ambiguous_credential"},
		{name: "gRPC denied", step: grpc(with(CalloutAnswer{Status: 403})), status: 200, details: "ext_authz_denied", grpc: 7},
		{name: "gRPC, the service failing", step: grpc(with(CalloutAnswer{Status: 503})), status: 200, details: "ext_authz_error", grpc: 7},
	}
	for _, p := range modules(t, "auth") {
		t.Run(moduleName(p), func(t *testing.T) {
			p.Config = cfg("authz")
			steps := authScenarioSteps(rows)
			// Then a configuration naming a cluster the proxy does not have: the
			// dispatch fails, status_on_error (403).
			steps = append(steps, Step{Reconfigure: &Reconfigure{Config: cfg("nowhere")}}, get("/orders"))
			all := append(append([]authRow{}, rows...), authRow{name: "reconfigure", step: steps[len(steps)-2]},
				authRow{name: "unknown cluster", step: steps[len(steps)-1], status: 403, details: "ext_authz_error"})
			sc := Scenario{Plugins: []Plugin{p}, Callouts: map[string]CalloutAnswer{"authz": {Status: 503}}, Steps: steps}
			check := func(t *testing.T, o Outcome) {
				checkAuthRows(t, all, o)
				assert.Equal(t, []bool{true}, o.Reconfigures)
				for i, r := range o.Results {
					for _, h := range r.Headers {
						assert.NotEqual(t, "x-internal", h[0], fmt.Sprintf("request %d: a header the configuration does not allow", i))
					}
				}
			}
			want := RunTestenv(t, sc)
			check(t, want)
			tableDifferential(t, sc, want, check)
		})
	}
}
