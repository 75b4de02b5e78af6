package config_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/auth/jwt/jwttest"
)

var jwks = jwttest.JWKS(jwttest.New(jwt.RS256, "k1"))

func full() map[string]any {
	return map[string]any{
		"providers": map[string]any{
			"corp": map[string]any{
				"issuer": "https://idp", "audiences": []any{"api"}, "algorithms": []any{"RS256", "ES256"},
				"from_headers": []any{map[string]any{"name": "Authorization", "value_prefix": "Bearer "}},
				"from_params":  []any{"access_token"}, "from_cookies": []any{"jwt"},
				"clock_skew_seconds": 30, "max_token_bytes": 4096, "require_expiration": false, "max_lifetime_seconds": 86400,
				"required_claims": map[string]any{"scope": "read", "groups": []any{"a", "b"}},
				"remote_jwks": map[string]any{"http_uri": map[string]any{"uri": "https://idp.example:8443/.well-known/jwks.json?x=1", "cluster": "idp", "timeout": "2s"},
					"cache_duration": "600s", "refresh_before": "60s", "min_refetch_interval": "30s",
					"backoff": map[string]any{"base_interval": "1s", "max_interval": "60s"}},
				"forward": true, "forward_payload_header": "X-JWT-Payload",
				"claim_to_headers": []any{map[string]any{"claim": "sub", "header": "x-user-id"}},
				"consumer_claim":   "client_id",
			},
			"local": map[string]any{"algorithms": []any{"RS256"}, "local_jwks": map[string]any{"inline_string": jwks},
				"claim_to_headers": []any{map[string]any{"claim": "sub", "header": "x-user-id"}}},
		},
		"api_keys":   map[string]any{"from_headers": []any{"X-API-Key"}, "from_params": []any{"api_key"}, "keys": []any{map[string]any{"consumer": "ci-bot", "sha256": config.HashSecret("", "k")}}},
		"basic_auth": map[string]any{"credentials": []any{map[string]any{"username": "alice", "password_sha256": config.HashSecret("salt", "pw"), "salt": "salt"}}},
		"ext_authz": map[string]any{"http_service": map[string]any{"cluster": "authz", "authority": "authz.local", "path_prefix": "/check", "timeout": "500ms"},
			"allowed_request_headers": []any{"authorization"}, "allowed_upstream_headers": []any{"x-ext-user"}, "failure_mode_allow": true, "status_on_error": 503},
		"rules": []any{
			map[string]any{"match": map[string]any{"prefix": "/healthz"}, "public": true},
			map[string]any{"match": map[string]any{"path": "/admin", "methods": []any{"post"}}, "requires": []any{"corp"}, "allowed_consumers": []any{"ops"}, "required_claims": map[string]any{"scope": "admin"}},
			map[string]any{"match": map[string]any{"regex": "^/v[0-9]+/"}, "requires": []any{"corp", "api_keys", "basic_auth"}, "allow_missing": true},
			map[string]any{"match": map[string]any{"prefix": "/ext"}, "requires": []any{"ext_authz"}},
		},
		"default_rule": map[string]any{"requires": []any{"local"}},
		"identity":     map[string]any{"consumer_header": "X-Consumer", "provider_header": ""},
		"token_cache":  map[string]any{"max_entries": 100, "max_bytes": 65536, "max_ttl": "60s"},
		"grpc":         false,
		"realm":        "corp",
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestParseFull(t *testing.T) {
	c, err := config.Parse(mustJSON(full()))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Providers["corp"]
	if p == nil || c.ProviderList[0] != p || p.Index != 0 || c.ProviderList[1].Name != "local" {
		t.Fatalf("providers %+v", c.ProviderList)
	}
	if !p.Algorithms.Has(jwt.RS256) || !p.Algorithms.Has(jwt.ES256) || p.Algorithms.Has(jwt.HS256) {
		t.Fatal("algorithms")
	}
	if p.FromHeaders[0].Name != "authorization" || p.FromHeaders[0].ValuePrefix != "Bearer " || p.FromParams[0] != "access_token" || p.FromCookies[0] != "jwt" {
		t.Fatalf("sources %+v", p)
	}
	if p.ClockSkewSeconds != 30 || p.MaxTokenBytes != 4096 || p.RequireExpiration || p.MaxLifetime != 24*time.Hour {
		t.Fatalf("limits %+v", p)
	}
	if len(p.RequiredClaims) != 2 || p.RequiredClaims[0].Name != "groups" || len(p.RequiredClaims[0].Values) != 2 || p.RequiredClaims[1].Values[0] != "read" {
		t.Fatalf("required claims %+v", p.RequiredClaims)
	}
	r := p.RemoteJWKS
	if r == nil || r.Cluster != "idp" || r.Authority != "idp.example:8443" || r.Path != "/.well-known/jwks.json?x=1" || r.Timeout != 2*time.Second ||
		r.CacheDuration != 10*time.Minute || r.RefreshBefore != time.Minute || r.MinRefetchInterval != 30*time.Second || r.BackoffBase != time.Second || r.BackoffMax != time.Minute {
		t.Fatalf("remote %+v", r)
	}
	if !p.Forward || p.ForwardPayloadHeader != "x-jwt-payload" || p.ClaimToHeaders[0].Header != "x-user-id" || p.ConsumerClaim != "client_id" {
		t.Fatalf("forwarding %+v", p)
	}
	if p.Validation.Issuer != "https://idp" || p.Validation.ClockSkew != 30 || p.Validation.RequireExp || p.Validation.MaxLifetime != 86400 {
		t.Fatalf("validation %+v", p.Validation)
	}
	if l := c.Providers["local"]; l.LocalJWKS.Len() != 1 || !l.RequireExpiration || l.ClockSkewSeconds != 60 || l.FromHeaders[0].Name != "authorization" || l.ConsumerClaim != "sub" {
		t.Fatalf("local defaults %+v", l)
	}
	if c.APIKeys.FromHeaders[0] != "x-api-key" || c.APIKeys.FromParams[0] != "api_key" || len(c.APIKeys.ByHash) != 1 {
		t.Fatalf("api keys %+v", c.APIKeys)
	}
	if cr := c.BasicAuth.Credentials["alice"]; cr == nil || cr.Salt != "salt" {
		t.Fatal("basic")
	}
	x := c.ExtAuthz
	if x.Cluster != "authz" || x.Authority != "authz.local" || x.PathPrefix != "/check" || x.Timeout != 500*time.Millisecond || !x.FailureModeAllow || x.StatusOnError != 503 || x.AllowedClientHeaders[0] != "www-authenticate" {
		t.Fatalf("ext %+v", x)
	}
	if len(c.Rules) != 4 || !c.Rules[0].Public || !c.Rules[1].Match.Methods["POST"] || !c.Rules[1].AllowedConsumers["ops"] || !c.Rules[2].AllowMissing || c.DefaultRule == nil || c.DefaultRule.Index != -1 {
		t.Fatalf("rules %+v", c.Rules)
	}
	if !c.Rules[2].ChallengeBasic || !c.Rules[2].ChallengeBearer || len(c.Rules[2].Requires) != 3 || c.Rules[2].Requires[1].Kind != config.MethodAPIKeys {
		t.Fatalf("rule 2 %+v", c.Rules[2])
	}
	if c.Identity.ConsumerHeader != "x-consumer" || c.Identity.ProviderHeader != "" || c.TokenCache.MaxEntries != 100 || c.TokenCache.MaxBytes != 65536 || c.TokenCache.MaxTTL != time.Minute || c.GRPC || c.Realm != "corp" {
		t.Fatalf("misc %+v %+v", c.Identity, c.TokenCache)
	}
	want := []string{"x-consumer", "x-ext-user", "x-jwt-payload", "x-user-id"}
	if strings.Join(c.IdentityHeaders, ",") != strings.Join(want, ",") {
		t.Fatalf("identity headers %v", c.IdentityHeaders)
	}
	// Matching.
	for _, m := range []struct {
		method, path string
		want         int
	}{{"GET", "/healthz", 0}, {"GET", "/healthz/x?y", 0}, {"POST", "/admin", 1}, {"GET", "/admin", -1}, {"POST", "/admin?x=1", 1},
		{"GET", "/v2/x", 2}, {"GET", "/x/v2/", -1}, {"GET", "/ext/a", 3}, {"GET", "/other", -1}} {
		if got := c.Match(m.method, m.path); got == nil || got.Index != m.want {
			t.Errorf("Match(%s %s) = %+v, want rule %d", m.method, m.path, got, m.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := config.Parse([]byte(`{"providers":{"p":{"algorithms":["ES256"],"remote_jwks":{"http_uri":{"uri":"http://idp/jwks","cluster":"idp"}}}},"rules":[{"match":{"prefix":"/"},"requires":["p"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Identity.ConsumerHeader != "x-consumer" || c.Identity.ProviderHeader != "x-auth-provider" || c.TokenCache.MaxEntries != 4096 || c.TokenCache.MaxBytes != 1<<20 || !c.GRPC || c.Realm != "meshplug" {
		t.Fatalf("defaults %+v", c)
	}
	r := c.Providers["p"].RemoteJWKS
	if r.Timeout != 5*time.Second || r.Path != "/jwks" || r.CacheDuration != 10*time.Minute {
		t.Fatalf("remote defaults %+v", r)
	}
	if c.Match("GET", "/x").Index != 0 || c.Rules[0].Requires[0].Provider != c.Providers["p"] {
		t.Fatal("rule")
	}
}

// set modifies full() at a slash-separated path ("providers/corp/issuer"); a nil value
// deletes the key.
func set(path string, v any) []byte {
	m := full()
	var cur any = m
	parts := strings.Split(path, "/")
	for i, p := range parts {
		last := i == len(parts)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				if v == nil {
					delete(c, p)
				} else {
					c[p] = v
				}
			} else {
				cur = c[p]
			}
		case []any:
			var idx int
			json.Unmarshal([]byte(p), &idx)
			if last {
				c[idx] = v
			} else {
				cur = c[idx]
			}
		}
	}
	return mustJSON(m)
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		doc  []byte
		want string
	}{
		{"not json", []byte(`{`), "invalid JSON"},
		{"array", []byte(`[]`), "must be a JSON object"},
		{"trailing", append(mustJSON(full()), []byte(" {}")...), "after top-level value"},
		{"dup field", []byte(`{"grpc":true,"grpc":false}`), "grpc: duplicate field"},
		{"unknown top", set("grpc_mode", true), "grpc_mode: unknown field"},
		{"unknown provider field", set("providers/corp/issuers", "x"), "providers.corp.issuers: unknown field"},
		{"unknown nested", set("providers/corp/remote_jwks/http_uri/clutser", "x"), "providers.corp.remote_jwks.http_uri.clutser: unknown field"},
		{"missing cluster", set("providers/corp/remote_jwks/http_uri/cluster", nil), "providers.corp.remote_jwks.http_uri.cluster: required"},
		{"bad uri", set("providers/corp/remote_jwks/http_uri/uri", "ftp://x/"), "providers.corp.remote_jwks.http_uri.uri: must be an absolute http(s) URL"},
		{"bad timeout", set("providers/corp/remote_jwks/http_uri/timeout", "2"), "providers.corp.remote_jwks.http_uri.timeout: invalid duration"},
		{"timeout number", set("providers/corp/remote_jwks/http_uri/timeout", 2), `providers.corp.remote_jwks.http_uri.timeout: expected a duration string such as "1.5s", got the number 2`},
		{"refresh >= cache", set("providers/corp/remote_jwks/refresh_before", "600s"), "providers.corp.remote_jwks.refresh_before: must be shorter than cache_duration"},
		{"backoff max<base", set("providers/corp/remote_jwks/backoff/max_interval", "500ms"), "providers.corp.remote_jwks.backoff.max_interval: must be >= base_interval"},
		{"no algorithms", set("providers/corp/algorithms", nil), "providers.corp.algorithms: required"},
		{"alg none", set("providers/corp/algorithms", []any{"none"}), `providers.corp.algorithms[0]: unsupported algorithm "none"`},
		{"alg dup", set("providers/corp/algorithms", []any{"RS256", "RS256"}), "providers.corp.algorithms[1]: duplicate value"},
		{"both jwks", set("providers/corp/local_jwks", map[string]any{"inline_string": jwks}), "providers.corp.remote_jwks: only one of"},
		{"no jwks", set("providers/local/local_jwks", nil), "providers.local.local_jwks: one of local_jwks and remote_jwks is required"},
		{"bad inline jwks", set("providers/local/local_jwks/inline_string", `{"keys":[{"kty":"RSA","n":"!","e":"AQAB"}]}`), "providers.local.local_jwks.inline_string: keys[0].n: invalid base64url"},
		{"empty inline jwks", set("providers/local/local_jwks/inline_string", `{"keys":[]}`), "providers.local.local_jwks.inline_string: keys: no usable"},
		{"skew negative", set("providers/corp/clock_skew_seconds", -1), "providers.corp.clock_skew_seconds: must be in [0, 3600], got -1"},
		{"skew float", set("providers/corp/clock_skew_seconds", 1.5), "providers.corp.clock_skew_seconds: expected an integer, got the number 1.5"},
		{"skew string", set("providers/corp/clock_skew_seconds", "60"), "providers.corp.clock_skew_seconds: expected an integer, got a string"},
		{"max token bytes", set("providers/corp/max_token_bytes", 0), "providers.corp.max_token_bytes: must be in [64, 65536]"},
		{"require_expiration type", set("providers/corp/require_expiration", "yes"), "providers.corp.require_expiration: expected a boolean, got a string"},
		{"required claim number", set("providers/corp/required_claims/scope", 1), "providers.corp.required_claims.scope: must be a string or an array of strings"},
		{"required claim array num", set("providers/corp/required_claims/groups", []any{1}), "providers.corp.required_claims.groups[0]: must be a string"},
		{"header name", set("providers/corp/from_headers/0/name", "bad header"), `providers.corp.from_headers[0].name: invalid header name "bad header"`},
		{"header missing name", set("providers/corp/from_headers/0", map[string]any{"value_prefix": "x"}), "providers.corp.from_headers[0].name: required"},
		{"param name", set("providers/corp/from_params", []any{"a=b"}), `providers.corp.from_params[0]: invalid query parameter name`},
		{"cookie name", set("providers/corp/from_cookies", []any{"a b"}), `providers.corp.from_cookies[0]: invalid cookie name`},
		{"claim header dup", set("providers/corp/claim_to_headers", []any{map[string]any{"claim": "sub", "header": "x-u"}, map[string]any{"claim": "email", "header": "X-U"}}), "providers.corp.claim_to_headers[1].header: header \"x-u\" is already written"},
		{"claim header missing claim", set("providers/corp/claim_to_headers", []any{map[string]any{"header": "x-u"}}), "providers.corp.claim_to_headers[0].claim: required"},
		{"reserved provider", set("providers/api_keys", map[string]any{}), `providers.api_keys: "api_keys" is reserved`},
		{"provider name", set("providers/a b", map[string]any{}), `providers["a b"]: provider name must match`},
		{"api key hash", set("api_keys/keys/0/sha256", "abc"), "api_keys.keys[0].sha256: must be 64 hex digits (SHA-256), got 3 characters"},
		{"api key hash hex", set("api_keys/keys/0/sha256", strings.Repeat("z", 64)), "api_keys.keys[0].sha256: must be 64 hex digits"},
		{"api key dup", set("api_keys/keys", []any{map[string]any{"consumer": "a", "sha256": config.HashSecret("", "k")}, map[string]any{"consumer": "b", "sha256": config.HashSecret("", "k")}}), `api_keys.keys[1].sha256: same key as consumer "a"`},
		{"api keys empty", set("api_keys/keys", []any{}), "api_keys.keys: required"},
		{"api key consumer", set("api_keys/keys/0/consumer", ""), "api_keys.keys[0].consumer: required"},
		{"basic colon", set("basic_auth/credentials/0/username", "a:b"), "basic_auth.credentials[0].username: must be printable ASCII without ':'"},
		{"basic hash", set("basic_auth/credentials/0/password_sha256", nil), "basic_auth.credentials[0].password_sha256: required"},
		{"ext no cluster", set("ext_authz/http_service/cluster", nil), "ext_authz.http_service.cluster: required"},
		{"ext status", set("ext_authz/status_on_error", 200), "ext_authz.status_on_error: must be in [400, 599], got 200"},
		{"ext prefix", set("ext_authz/http_service/path_prefix", "check"), "ext_authz.http_service.path_prefix: must start with '/'"},
		{"rule no match", set("rules/1/match", nil), "rules[1].match: required"},
		{"rule two matchers", set("rules/1/match/prefix", "/a"), "rules[1].match: exactly one of prefix, path and regex"},
		{"rule regex", set("rules/2/match/regex", "(["), "rules[2].match.regex: invalid regexp: "},
		{"rule prefix slash", set("rules/0/match/prefix", "healthz"), "rules[0].match.prefix: must start with '/'"},
		{"rule method", set("rules/1/match/methods", []any{"GE T"}), `rules[1].match.methods[0]: invalid method "GE T"`},
		{"rule strict_methods type", set("rules/1/match/strict_methods", "yes"), "rules[1].match.strict_methods: expected a boolean, got a string"},
		{"rule unknown provider", set("rules/1/requires", []any{"corpp"}), `rules[1].requires[0]: unknown provider "corpp"`},
		{"rule no requires", set("rules/1/requires", nil), `rules[1].requires: required unless "public": true`},
		{"rule public requires", set("rules/0/requires", []any{"corp"}), "rules[0].requires: not allowed on a public rule"},
		{"rule ext combined", set("rules/3/requires", []any{"ext_authz", "corp"}), `rules[3].requires: "ext_authz" cannot be combined`},
		{"rule ext allow_missing", set("rules/3/allow_missing", true), `rules[3].allow_missing: not allowed with "ext_authz"`},
		{"rule unknown field", set("rules/1/require", []any{"corp"}), "rules[1].require: unknown field"},
		{"rule api_keys unconfigured", set("api_keys", nil), `rules[2].requires[1]: "api_keys" is not configured`},
		{"default with match", set("default_rule/match", map[string]any{"prefix": "/"}), "default_rule.match: not allowed"},
		{"no rules", set("rules", []any{}), ""},
		{"identity header is credential", set("identity/consumer_header", "x-api-key"), `identity.consumer_header: "x-api-key" is also a credential source (api_keys.from_headers[0])`},
		{"identity header authorization", set("providers/corp/claim_to_headers/0/header", "authorization"), `"authorization" cannot be an identity header`},
		{"identity header host", set("providers/corp/forward_payload_header", "Host"), `providers.corp.forward_payload_header: "host" cannot be an identity header`},
		{"consumer header clash", set("identity/consumer_header", "x-user-id"), `"x-user-id" is also written by`},
		{"token cache", set("token_cache/max_entries", -1), "token_cache.max_entries: must be in [0, 1048576], got -1"},
		{"token cache bytes too few", set("token_cache/max_bytes", 16383), "token_cache.max_bytes: must be in [16384, 1073741824], got 16383"},
		{"token cache bytes too many", set("token_cache/max_bytes", 1<<30+1), "token_cache.max_bytes: must be in [16384, 1073741824], got 1073741825"},
		{"token cache bytes zero", set("token_cache/max_bytes", 0), "token_cache.max_bytes: must be in [16384, 1073741824], got 0"},
		{"token cache bytes not a number", set("token_cache/max_bytes", "1MiB"), "token_cache.max_bytes"},
		{"realm quote", set("realm", `a"b`), "realm: must be non-empty printable ASCII"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse(c.doc)
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want containing %q", err, c.want)
			}
			if _, ok := err.(*config.FieldError); !ok {
				t.Fatalf("error type %T", err)
			}
		})
	}
	// With neither rules nor default_rule: error.
	m := full()
	delete(m, "rules")
	delete(m, "default_rule")
	if _, err := config.Parse(mustJSON(m)); err == nil || !strings.Contains(err.Error(), "rules: at least one rule or a default_rule") {
		t.Fatalf("got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(mustJSON(full()))
	f.Add([]byte(`{"rules":[{"match":{"prefix":"/"},"public":true}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := config.Parse(b)
		if err != nil {
			if _, ok := err.(*config.FieldError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if len(c.Rules) == 0 && c.DefaultRule == nil {
			t.Fatal("accepted a config with no rules")
		}
		c.Match("GET", "/a?b")
	})
}

func TestMatchRequestPaths(t *testing.T) {
	c, err := config.Parse([]byte(`{"rules":[{"match":{"prefix":"/admin"},"public":true}],"default_rule":{"public":true}}`))
	require.NoError(t, err)
	for _, tc := range []struct {
		path   string
		admin  bool
		ok     bool
		reason string
	}{
		{"/admin/x", true, true, "none"},
		{"//admin/./x?q=%2F", true, true, "none"},
		{"/public/%2e%2e/admin", true, true, "none"},
		{"/admin%2Fx", false, false, "escaped_slash"},
		{"/a;b", false, false, "path_params"},
		{"/a%00", false, false, "malformed"},
		{"", false, true, "none"},
		{"*", false, true, "none"},
	} {
		r, amb, ok := c.MatchRequest("GET", tc.path)
		assert.Equal(t, tc.ok, ok, tc.path)
		assert.Equal(t, tc.reason, amb.String(), tc.path)
		if ok {
			assert.Equal(t, tc.admin, r.Index == 0, tc.path)
		}
	}
}
