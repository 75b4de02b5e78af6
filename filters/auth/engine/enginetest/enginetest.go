// Package enginetest holds the auth engine's test fixtures and decision table, shared by
// the native engine tests and the tests that replay the same table through the compiled
// auth.wasm (filters/auth), so both sides are checked against one source of truth.
package enginetest

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/auth/engine"
	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/auth/jwt/jwttest"
)

var (
	RS     = jwttest.New(jwt.RS256, "rs1")
	ES     = jwttest.New(jwt.ES256, "es1")
	HS     = jwttest.NewHMAC(jwt.HS256, "h1", []byte("0123456789abcdef0123456789abcdef"))
	Now    = time.Unix(1_700_000_000, 0)
	NowS   = Now.Unix()
	APIKey = "k-ci-bot-8d7f6e5a4b3c2d1e"
)

// Config is the engine test configuration (as JSON-ready maps).
func Config() map[string]any {
	return map[string]any{
		"providers": map[string]any{
			"corp": map[string]any{"issuer": "https://idp", "audiences": []any{"api"}, "algorithms": []any{"RS256"},
				"local_jwks":             map[string]any{"inline_string": jwttest.JWKS(RS)},
				"claim_to_headers":       []any{map[string]any{"claim": "sub", "header": "x-user-id"}, map[string]any{"claim": "groups", "header": "x-groups"}, map[string]any{"claim": "realm.roles", "header": "x-roles"}},
				"forward_payload_header": "x-jwt-payload", "max_lifetime_seconds": 7200},
			"hs": map[string]any{"issuer": "hs", "algorithms": []any{"HS256"}, "local_jwks": map[string]any{"inline_string": jwttest.JWKS(HS)},
				"from_params": []any{"access_token"}, "from_cookies": []any{"jwt"}, "require_expiration": false, "forward": true},
			"remote": map[string]any{"issuer": "https://remote", "algorithms": []any{"ES256"},
				"from_headers": []any{map[string]any{"name": "x-remote-token"}},
				"remote_jwks":  map[string]any{"http_uri": map[string]any{"uri": "https://remote/jwks", "cluster": "remote"}, "min_refetch_interval": "30s"}},
		},
		"api_keys":   map[string]any{"from_params": []any{"api_key"}, "from_headers": []any{"x-api-key"}, "keys": []any{map[string]any{"consumer": "ci-bot", "sha256": config.HashSecret("", APIKey)}}},
		"basic_auth": map[string]any{"credentials": []any{map[string]any{"username": "alice", "password_sha256": config.HashSecret("s", "secret"), "salt": "s"}}},
		"ext_authz": map[string]any{"http_service": map[string]any{"cluster": "authz", "path_prefix": "/check"},
			"allowed_request_headers": []any{"authorization", "x-user-id"}, "allowed_upstream_headers": []any{"x-ext-user"}},
		"rules": []any{
			map[string]any{"match": map[string]any{"prefix": "/healthz"}, "public": true},
			map[string]any{"match": map[string]any{"path": "/admin", "methods": []any{"POST"}}, "requires": []any{"corp"}, "allowed_consumers": []any{"ops"}},
			map[string]any{"match": map[string]any{"prefix": "/scoped"}, "requires": []any{"corp", "api_keys"}, "required_claims": map[string]any{"scope": "admin"}},
			map[string]any{"match": map[string]any{"regex": "^/v[0-9]+/"}, "requires": []any{"corp", "api_keys"}, "allow_missing": true},
			map[string]any{"match": map[string]any{"prefix": "/hs"}, "requires": []any{"hs"}},
			map[string]any{"match": map[string]any{"prefix": "/basic"}, "requires": []any{"basic_auth"}},
			map[string]any{"match": map[string]any{"prefix": "/remote"}, "requires": []any{"remote"}},
			map[string]any{"match": map[string]any{"prefix": "/ext"}, "requires": []any{"ext_authz"}},
			map[string]any{"match": map[string]any{"prefix": "/api"}, "requires": []any{"corp", "api_keys", "basic_auth"}},
			map[string]any{"match": map[string]any{"prefix": "/getonly", "methods": []any{"GET"}}, "requires": []any{"corp"}},
			map[string]any{"match": map[string]any{"prefix": "/strict", "methods": []any{"GET"}, "strict_methods": true}, "requires": []any{"corp"}},
		},
		"realm": "test",
	}
}

// Claims returns default claims for the corp provider; kv pairs override (nil deletes).
func Claims(kv ...any) map[string]any {
	m := map[string]any{"iss": "https://idp", "aud": "api", "sub": "alice", "exp": NowS + 600, "iat": NowS - 10,
		"groups": []any{"a", "b"}, "scope": "read admin"}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(m, kv[i].(string))
		} else {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	return m
}

func Bearer(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

func Basic(u, p string) map[string]string {
	return map[string]string{"authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p))}
}

// Case is one request through the engine. The table is shaped so the glue's tests can
// replay it through auth.wasm (headers in, status/headers out).
type Case struct {
	Name    string
	Method  string
	Path    string
	Headers map[string]string
	// Lines are header lines sent after Headers, in order (repeated names allowed).
	Lines      [][2]string
	Kind       engine.Kind
	Status     int
	Reason     engine.Reason
	WWWAuth    string            // substring of www-authenticate
	Set        map[string]string // identity headers expected (others must be absent)
	Remove     []string
	NewPath    string
	ExtraMatch func(t *testing.T, v engine.Verdict)
}

// DecideCases is the decision table: every rule kind, method and rejection reason.
func DecideCases() []Case {
	good := RS.Sign(Claims())
	hsTok := HS.Sign(map[string]any{"iss": "hs", "sub": "bob"})
	p := strings.Split(good, ".")
	none := jwttest.B64([]byte(`{"alg":"none"}`)) + "." + p[1] + "."
	hsConfused := jwttest.NewHMAC(jwt.HS256, "rs1", []byte(RS.JWK()["n"].(string))).Sign(Claims())
	bearerCh := `Bearer realm="test"`
	invalid := func(d string) string {
		return `Bearer realm="test", error="invalid_token", error_description="` + d + `"`
	}
	cases := []Case{
		{Name: "public", Path: "/healthz", Kind: engine.Allow, Set: map[string]string{}},
		{Name: "public ignores bad token, strips it", Path: "/healthz", Headers: Bearer("garbage"), Kind: engine.Allow, Set: map[string]string{}, Remove: []string{"authorization"}},
		{Name: "no rule", Path: "/nothing", Kind: engine.Deny, Status: 403, Reason: engine.ReasonNoMatchingRule, WWWAuth: "-"},
		{Name: "method mismatch falls through", Method: "GET", Path: "/admin", Kind: engine.Deny, Status: 403, Reason: engine.ReasonNoMatchingRule, WWWAuth: "-"},
		{Name: "missing", Path: "/hs", Kind: engine.Deny, Status: 401, Reason: engine.ReasonMissingCredential, WWWAuth: bearerCh},
		{Name: "missing multi challenge", Path: "/api", Kind: engine.Deny, Status: 401, Reason: engine.ReasonMissingCredential, WWWAuth: `Bearer realm="test", Basic realm="test", charset="UTF-8", ApiKey realm="test"`},
		{Name: "jwt ok", Path: "/v1/x", Headers: Bearer(good), Kind: engine.Allow, Set: WithPayload(JWTIdentity("alice"), good), Remove: []string{"authorization"}},
		{Name: "bearer scheme case-insensitive", Path: "/v1/x", Headers: map[string]string{"authorization": "bearer " + good}, Kind: engine.Allow, Set: WithPayload(JWTIdentity("alice"), good), Remove: []string{"authorization"}},
		{Name: "allow missing", Path: "/v1/x", Kind: engine.Allow, Set: map[string]string{}},
		{Name: "allow missing but bad token", Path: "/v1/x", Headers: Bearer(good + "x"), Kind: engine.Deny, Status: 401, Reason: engine.ReasonMalformed, WWWAuth: invalid("malformed token")},
		{Name: "empty bearer", Path: "/v1/x", Headers: Bearer(""), Kind: engine.Deny, Status: 401, Reason: engine.ReasonMalformed},
		{Name: "alg none", Path: "/v1/x", Headers: Bearer(none), Kind: engine.Deny, Status: 401, Reason: engine.ReasonMalformed},
		{Name: "alg none with sig", Path: "/v1/x", Headers: Bearer(none + "AAAA"), Kind: engine.Deny, Status: 401, Reason: engine.ReasonAlgNotAllowed, WWWAuth: invalid("signing algorithm not allowed")},
		{Name: "hs/RS confusion", Path: "/v1/x", Headers: Bearer(hsConfused), Kind: engine.Deny, Status: 401, Reason: engine.ReasonAlgNotAllowed},
		{Name: "ES256 not allowed for corp", Path: "/v1/x", Headers: Bearer(ES.Sign(Claims())), Kind: engine.Deny, Status: 401, Reason: engine.ReasonAlgNotAllowed},
		{Name: "bad signature", Path: "/v1/x", Headers: Bearer(p[0] + "." + jwttest.B64([]byte(`{"iss":"https://idp","sub":"root"}`)) + "." + p[2]), Kind: engine.Deny, Status: 401, Reason: engine.ReasonBadSignature, WWWAuth: invalid("signature verification failed")},
		{Name: "other RSA key", Path: "/v1/x", Headers: Bearer(jwttest.NewRSA(jwt.RS256, "rs1", 2048).Sign(Claims())), Kind: engine.Deny, Status: 401, Reason: engine.ReasonBadSignature},
		{Name: "unknown kid local", Path: "/v1/x", Headers: Bearer(jwttest.NewRSA(jwt.RS256, "zz", 2048).Sign(Claims())), Kind: engine.Deny, Status: 401, Reason: engine.ReasonUnknownKid},
		{Name: "expired", Path: "/v1/x", Headers: Bearer(RS.Sign(Claims("exp", NowS-61))), Kind: engine.Deny, Status: 401, Reason: engine.ReasonExpired, WWWAuth: invalid("token expired")},
		{Name: "expired within skew ok", Path: "/v1/x", Headers: Bearer(RS.Sign(Claims("exp", NowS-59))), Kind: engine.Allow, Set: nil, ExtraMatch: Allowed},
		{Name: "no exp", Path: "/v1/x", Headers: Bearer(RS.Sign(Claims("exp", nil))), Kind: engine.Deny, Status: 401, Reason: engine.ReasonExpired},
		{Name: "nbf", Path: "/v1/x", Headers: Bearer(RS.Sign(Claims("nbf", NowS+61))), Kind: engine.Deny, Status: 401, Reason: engine.ReasonNotYetValid},
		{Name: "iat future", Path: "/v1/x", Headers: Bearer(RS.Sign(Claims("iat", NowS+61))), Kind: engine.Deny, Status: 401, Reason: engine.ReasonIatInFuture},
		{Name: "lifetime", Path: "/v1/x", Headers: Bearer(RS.Sign(Claims("iat", NowS-7000, "exp", NowS+201))), Kind: engine.Deny, Status: 401, Reason: engine.ReasonLifetimeTooLong},
		{Name: "issuer", Path: "/v1/x", Headers: Bearer(RS.Sign(Claims("iss", "https://evil"))), Kind: engine.Deny, Status: 401, Reason: engine.ReasonBadIssuer},
		{Name: "audience", Path: "/v1/x", Headers: Bearer(RS.Sign(Claims("aud", "web"))), Kind: engine.Deny, Status: 401, Reason: engine.ReasonBadAudience},
		{Name: "too large", Path: "/v1/x", Headers: Bearer(RS.Sign(Claims("pad", strings.Repeat("x", 9000)))), Kind: engine.Deny, Status: 401, Reason: engine.ReasonTooLarge},
		{Name: "consumer not allowed", Method: "POST", Path: "/admin", Headers: Bearer(good), Kind: engine.Deny, Status: 403, Reason: engine.ReasonConsumerNotAllowed, WWWAuth: "-"},
		{Name: "consumer allowed", Method: "POST", Path: "/admin", Headers: Bearer(RS.Sign(Claims("sub", "ops"))), Kind: engine.Allow, ExtraMatch: Allowed},
		{Name: "scope ok", Path: "/scoped", Headers: Bearer(good), Kind: engine.Allow, ExtraMatch: Allowed},
		{Name: "scope missing", Path: "/scoped", Headers: Bearer(RS.Sign(Claims("scope", "read"))), Kind: engine.Deny, Status: 403, Reason: engine.ReasonInsufficientScope, WWWAuth: `error="insufficient_scope"`},
		{Name: "api key has no claims", Path: "/scoped", Headers: map[string]string{"x-api-key": APIKey}, Kind: engine.Deny, Status: 403, Reason: engine.ReasonInsufficientScope},
		{Name: "api key header", Path: "/v1/x", Headers: map[string]string{"x-api-key": APIKey}, Kind: engine.Allow, Set: map[string]string{"x-consumer": "ci-bot", "x-auth-provider": "api_keys"}, Remove: []string{"x-api-key"}},
		{Name: "api key param", Path: "/v1/x?a=1&api_key=" + APIKey + "&b=2", Kind: engine.Allow, Set: map[string]string{"x-consumer": "ci-bot", "x-auth-provider": "api_keys"}, NewPath: "/v1/x?a=1&b=2"},
		{Name: "api key wrong", Path: "/v1/x", Headers: map[string]string{"x-api-key": APIKey + "x"}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidAPIKey, WWWAuth: `ApiKey realm="test"`},
		{Name: "bad jwt beside good api key", Path: "/v1/x", Headers: map[string]string{"authorization": "Bearer x.y.z", "x-api-key": APIKey}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonMalformed, WWWAuth: invalid("malformed token")},
		{Name: "first failure reported", Path: "/v1/x", Headers: map[string]string{"authorization": "Bearer " + RS.Sign(Claims("exp", NowS-1000)), "x-api-key": "nope"}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonExpired},
		{Name: "HS param forward", Path: "/hs?access_token=" + hsTok, Kind: engine.Allow, Set: map[string]string{"x-consumer": "bob", "x-auth-provider": "hs"}},
		{Name: "HS cookie", Path: "/hs", Headers: map[string]string{"cookie": "a=1; jwt=" + hsTok + "; b=2"}, Kind: engine.Allow, Set: map[string]string{"x-consumer": "bob", "x-auth-provider": "hs"}},
		{Name: "HS issuer mismatch", Path: "/hs?access_token=" + RS.Sign(Claims()), Kind: engine.Deny, Status: 401, Reason: engine.ReasonAlgNotAllowed},
		{Name: "basic ok", Path: "/basic", Headers: Basic("alice", "secret"), Kind: engine.Allow, Set: map[string]string{"x-consumer": "alice", "x-auth-provider": "basic_auth"}, Remove: []string{"authorization"}},
		{Name: "basic wrong password", Path: "/basic", Headers: Basic("alice", "secreT"), Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidBasicAuth, WWWAuth: `Basic realm="test", charset="UTF-8"`},
		{Name: "basic unknown user", Path: "/basic", Headers: Basic("mallory", "secret"), Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidBasicAuth},
		{Name: "basic garbage", Path: "/basic", Headers: map[string]string{"authorization": "Basic !!!"}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidBasicAuth},
		{Name: "basic no colon", Path: "/basic", Headers: map[string]string{"authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("alice"))}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidBasicAuth},
		{Name: "bearer on basic route", Path: "/basic", Headers: Bearer(good), Kind: engine.Deny, Status: 401, Reason: engine.ReasonUnexpectedCredential, WWWAuth: "Basic"},
		{Name: "unknown scheme on basic route", Path: "/basic", Headers: map[string]string{"authorization": "Negotiate abc"}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonMissingCredential, WWWAuth: "Basic"},
		{Name: "ext authz", Path: "/ext/a?b", Headers: map[string]string{"authorization": "x", "other": "y", "x-user-id": "spoofed"}, Lines: [][2]string{{"x_user_id", "spoofed"}}, Kind: engine.CallExtAuthz, ExtraMatch: func(t *testing.T, v engine.Verdict) {
			hdr := map[string]string{}
			for _, h := range v.ExtAuthz.Headers {
				hdr[h.Name] = h.Value
			}
			if v.ExtAuthz.Cluster != "authz" || hdr[":path"] != "/check/ext/a?b" || hdr[":method"] != "GET" || hdr[":authority"] != "authz" || hdr["authorization"] != "x" || hdr["other"] != "" || len(hdr) != 5 {
				t.Fatalf("ext request %+v", v.ExtAuthz)
			}
		}},
		{Name: "ext authz gets the canonical path", Path: "//ext/%61/./b?q=%2F", Headers: map[string]string{"authorization": "x"}, Kind: engine.CallExtAuthz, ExtraMatch: func(t *testing.T, v engine.Verdict) {
			for _, h := range v.ExtAuthz.Headers {
				if h.Name == ":path" && h.Value != "/check/ext/a/b?q=%2F" {
					t.Fatalf("check :path %q", h.Value)
				}
			}
		}},
		{Name: "ext authz repeated header", Path: "/ext/a", Lines: [][2]string{{"authorization", "x"}, {"authorization", "y"}}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonAmbiguousCredential, WWWAuth: "Bearer"},
		{Name: "ext authz credential it does not read", Path: "/ext/a?api_key=" + APIKey, Kind: engine.Deny, Status: 401, Reason: engine.ReasonUnexpectedCredential},
		{Name: "remote no keys: fetch", Path: "/remote", Headers: map[string]string{"x-remote-token": ES.Sign(map[string]any{"iss": "https://remote", "exp": NowS + 60})}, Kind: engine.FetchJWKS, ExtraMatch: func(t *testing.T, v engine.Verdict) {
			if !v.StartFetch || v.Provider.Name != "remote" {
				t.Fatalf("%+v", v)
			}
		}},
		{Name: "remote wrong issuer: no fetch", Path: "/remote", Headers: map[string]string{"x-remote-token": ES.Sign(map[string]any{"iss": "x", "exp": NowS + 60})}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonBadIssuer},
	}
	cases = append(cases, JSONCases()...)
	return append(cases, SmugglingCases()...)
}

// JSONCases are the JSON spellings in a JWT's header and claims that two parsers can
// read differently (issue 23 moved auth off encoding/json; its hand-written decoder
// reads these exactly as before, and jwt's differential tests compare it with
// encoding/json on any input): duplicate names, in any spelling, are refused; names
// are case-sensitive ("ALG" is not "alg", "Sub" not "sub"); numbers are JSON numbers
// only; invalid UTF-8 and unpaired surrogates become U+FFFD, as encoding/json reads them.
func JSONCases() []Case {
	hdr := `{"alg":"RS256","kid":"rs1"`
	claims := func(extra string) string {
		return fmt.Sprintf(`{"iss":"https://idp","aud":"api","exp":%d,"iat":%d%s}`, NowS+600, NowS-10, extra)
	}
	raw := func(h, c string) map[string]string { return Bearer(RS.SignRaw([]byte(h), []byte(c))) }
	bad := func(name, h, c string, r engine.Reason) Case {
		return Case{Name: "json: " + name, Path: "/v1/x", Headers: raw(h, c), Kind: engine.Deny, Status: 401, Reason: r}
	}
	ok := func(name, h, c, sub string) Case {
		tok := RS.SignRaw([]byte(h), []byte(c))
		set := WithPayload(map[string]string{"x-consumer": sub, "x-auth-provider": "corp", "x-user-id": sub}, tok)
		return Case{Name: "json: " + name, Path: "/v1/x", Headers: Bearer(tok), Kind: engine.Allow, Set: set, Remove: []string{"authorization"}}
	}
	return []Case{
		ok("plain", hdr+`}`, claims(`,"sub":"alice"`), "alice"),
		bad("header duplicate alg", hdr+`,"alg":"none"}`, claims(`,"sub":"alice"`), engine.ReasonMalformed),
		bad("header duplicate alg escaped", hdr+`,"\u0061lg":"RS256"}`, claims(`,"sub":"alice"`), engine.ReasonMalformed),
		bad("header duplicate kid", hdr+`,"kid":"rs1"}`, claims(`,"sub":"alice"`), engine.ReasonMalformed),
		bad("header ALG is not alg", `{"ALG":"RS256","kid":"rs1"}`, claims(`,"sub":"alice"`), engine.ReasonMalformed),
		ok("header Alg beside alg is another member", hdr+`,"Alg":"none","KID":"x"}`, claims(`,"sub":"alice"`), "alice"),
		bad("header alg number", `{"alg":256,"kid":"rs1"}`, claims(`,"sub":"alice"`), engine.ReasonMalformed),
		bad("header trailing data", hdr+`}{}`, claims(`,"sub":"alice"`), engine.ReasonMalformed),
		bad("claims duplicate sub", hdr+`}`, claims(`,"sub":"alice","sub":"ops"`), engine.ReasonMalformed),
		bad("claims duplicate sub escaped", hdr+`}`, claims(`,"sub":"alice","\u0073ub":"ops"`), engine.ReasonMalformed),
		bad("claims duplicate exp", hdr+`}`, claims(`,"sub":"alice","exp":`+fmt.Sprint(NowS+600)), engine.ReasonMalformed),
		bad("claims duplicate unregistered", hdr+`}`, claims(`,"sub":"alice","x":1,"x":1`), engine.ReasonMalformed),
		ok("claims Sub beside sub is another claim", hdr+`}`, claims(`,"sub":"alice","Sub":"ops","SUB":"root"`), "alice"),
		bad("claims ISS is not iss", hdr+`}`, `{"ISS":"https://idp","aud":"api","exp":`+fmt.Sprint(NowS+600)+`,"sub":"alice"}`, engine.ReasonBadIssuer),
		bad("claims EXP is not exp", hdr+`}`, `{"iss":"https://idp","aud":"api","EXP":`+fmt.Sprint(NowS+600)+`,"sub":"alice"}`, engine.ReasonExpired),
		bad("claims exp as string", hdr+`}`, `{"iss":"https://idp","aud":"api","exp":"`+fmt.Sprint(NowS+600)+`","sub":"alice"}`, engine.ReasonMalformed),
		bad("claims exp overflows float64", hdr+`}`, `{"iss":"https://idp","aud":"api","exp":1e400,"sub":"alice"}`, engine.ReasonMalformed),
		bad("claims exp leading zero", hdr+`}`, `{"iss":"https://idp","aud":"api","exp":0`+fmt.Sprint(NowS+600)+`,"sub":"alice"}`, engine.ReasonMalformed),
		bad("claims exp plus sign", hdr+`}`, `{"iss":"https://idp","aud":"api","exp":+`+fmt.Sprint(NowS+600)+`,"sub":"alice"}`, engine.ReasonMalformed),
		bad("claims exp hex", hdr+`}`, `{"iss":"https://idp","aud":"api","exp":0x7fffffff,"sub":"alice"}`, engine.ReasonMalformed),
		ok("claims exp in exponent form", hdr+`}`, `{"iss":"https://idp","aud":"api","exp":1.7000006E9,"sub":"alice"}`, "alice"),
		ok("claims sub escaped", hdr+`}`, claims(`,"sub":"\u0061lice"`), "alice"),
		ok("claims sub invalid UTF-8 reads as U+FFFD", hdr+`}`, claims(",\"sub\":\"al\xffice\""), "al\uFFFDice"),
		ok("claims sub unpaired surrogate reads as U+FFFD", hdr+`}`, claims(`,"sub":"al\ud800ice"`), "al\uFFFDice"),
		bad("claims not an object", hdr+`}`, `["sub","alice"]`, engine.ReasonMalformed),
	}
}

// SmugglingCases are the credential-smuggling classes (issue 7), several spellings
// each: a credential the filter does not read, or reads differently from the upstream,
// must never reach the upstream unverified.
func SmugglingCases() []Case {
	good := RS.Sign(Claims())
	forged := RS.Sign(Claims()) + "x" // malformed signature segment
	hsTok := HS.Sign(map[string]any{"iss": "hs", "sub": "bob"})
	hsForged := jwttest.NewHMAC(jwt.HS256, "h1", []byte("another-secret-another-secret-00")).Sign(map[string]any{"iss": "hs", "sub": "root"})
	bearerCh := `Bearer realm="test"`
	apiCh := `ApiKey realm="test"`
	ambiguous := func(name, path string, lines ...[2]string) Case {
		return Case{Name: name, Path: path, Lines: lines, Kind: engine.Deny, Status: 401, Reason: engine.ReasonAmbiguousCredential, WWWAuth: bearerCh}
	}
	apiOK := map[string]string{"x-consumer": "ci-bot", "x-auth-provider": "api_keys"}
	hsOK := map[string]string{"x-consumer": "bob", "x-auth-provider": "hs"}
	enc := strings.NewReplacer("-", "%2d", "k", "%6B").Replace(APIKey) // mixed-case hex
	return []Case{
		// 1. Query parameter names (and values) decoded as upstream parsers decode them.
		{Name: "param name %5F", Path: "/v1/x?api%5Fkey=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidAPIKey, WWWAuth: apiCh},
		{Name: "param name %5f lower hex", Path: "/v1/x?api%5fkey=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidAPIKey},
		{Name: "param name upper case", Path: "/v1/x?API_KEY=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidAPIKey},
		{Name: "param name PHP dot", Path: "/v1/x?api.key=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidAPIKey},
		{Name: "param name plus as space", Path: "/v1/x?api+key=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidAPIKey},
		{Name: "param name %41 letter", Path: "/v1/x?%61pi_key=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidAPIKey},
		{Name: "param name double encoded", Path: "/v1/x?api%255Fkey=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonAmbiguousCredential},
		// No parser reads "api_key%zz" as api_key (Go drops the pair, Python and Node keep
		// the name verbatim): it is not a credential, and the anonymous request passes.
		{Name: "param name invalid escape is another name", Path: "/v1/x?api_key%zz=other&api%5Fkey%=x", Kind: engine.Allow, Set: map[string]string{}},
		{Name: "param value invalid escape", Path: "/v1/x?api_key=" + APIKey + "%zz", Kind: engine.Deny, Status: 401, Reason: engine.ReasonAmbiguousCredential},
		{Name: "param semicolon separator", Path: "/v1/x?a=1;api_key=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonAmbiguousCredential},
		{Name: "param semicolon in value", Path: "/v1/x?api_key=" + APIKey + ";api_key=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonAmbiguousCredential},
		{Name: "param repeated", Path: "/v1/x?api_key=" + APIKey + "&api_key=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonAmbiguousCredential},
		{Name: "param repeated other spelling", Path: "/v1/x?api_key=" + APIKey + "&Api%5Fkey=" + APIKey, Kind: engine.Deny, Status: 401, Reason: engine.ReasonAmbiguousCredential},
		{Name: "param value percent-encoded ok", Path: "/v1/x?a=1&api_key=" + enc + "&b=2", Kind: engine.Allow, Set: apiOK, NewPath: "/v1/x?a=1&b=2"},
		{Name: "param other spelling stripped", Path: "/v1/x?API%5FKey=" + APIKey + "&b=2", Kind: engine.Allow, Set: apiOK, NewPath: "/v1/x?b=2"},
		// Structured names: PHP, Rails/Rack and Express read them as api_key; PHP reads
		// a name up to a NUL.
		{Name: "param structured name", Path: "/v1/x?api_key[]=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonAmbiguousCredential},
		{Name: "param structured name beside a good key", Path: "/v1/x?api_key=" + APIKey + "&api_key[]=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonAmbiguousCredential},
		{Name: "param encoded structured name", Path: "/v1/x?API%5Fkey%5Bx%5D=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonAmbiguousCredential},
		{Name: "param bracketed name", Path: "/v1/x?[api_key]=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonAmbiguousCredential},
		{Name: "param name cut at NUL", Path: "/v1/x?api_key%00x=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonAmbiguousCredential},
		{Name: "param long structured name", Path: "/v1/x?api_key[" + strings.Repeat("x", 200) + "]=forged", Kind: engine.Deny, Status: 401, Reason: engine.ReasonAmbiguousCredential},
		{Name: "param structured other name", Path: "/v1/x?api_keys[]=x&x[api_key]=y", Kind: engine.Allow, Set: map[string]string{}},
		{Name: "jwt param %5F", Path: "/hs?access%5Ftoken=" + hsForged, Kind: engine.Deny, Status: 401, Reason: engine.ReasonBadSignature},
		{Name: "jwt param of another route", Path: "/v1/x?access%5Ftoken=" + hsForged, Kind: engine.Deny, Status: 401, Reason: engine.ReasonUnexpectedCredential, WWWAuth: bearerCh},
		// 2. Every Cookie line.
		{Name: "cookie on second line", Path: "/hs", Lines: [][2]string{{"cookie", "a=1"}, {"cookie", "jwt=" + hsForged}}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonBadSignature},
		{Name: "cookie on second line ok", Path: "/hs", Lines: [][2]string{{"cookie", "a=1"}, {"cookie", "b=2; jwt=" + hsTok}}, Kind: engine.Allow, Set: hsOK},
		{Name: "cookie quoted", Path: "/hs", Lines: [][2]string{{"cookie", `jwt="` + hsTok + `"`}}, Kind: engine.Allow, Set: hsOK},
		ambiguous("cookie repeated across lines", "/hs", [2]string{"cookie", "jwt=" + hsTok}, [2]string{"cookie", "jwt=" + hsForged}),
		ambiguous("cookie repeated in a line", "/hs", [2]string{"cookie", "jwt=" + hsTok + "; x=1;jwt=" + hsForged}),
		ambiguous("cookie name case", "/hs", [2]string{"cookie", "jwt=" + hsTok + "; JWT=" + hsForged}),
		ambiguous("cookie name encoded", "/hs", [2]string{"cookie", "jwt=" + hsTok + "; %6Awt=" + hsForged}),
		ambiguous("cookie after comma", "/hs", [2]string{"cookie", "a=1, jwt=" + hsForged}),
		// 3. Every credential present must verify; only verified ones go upstream.
		{Name: "forged api key param beside good bearer", Path: "/v1/x?api_key=forged", Headers: Bearer(good), Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidAPIKey},
		{Name: "forged api key header beside good bearer", Path: "/v1/x", Headers: map[string]string{"authorization": "Bearer " + good, "x-api-key": "forged"}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidAPIKey},
		{Name: "underscore api key header beside good bearer", Path: "/v1/x", Headers: Bearer(good), Lines: [][2]string{{"x_api_key", "forged"}}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidAPIKey},
		{Name: "upper-case underscore api key header", Path: "/v1/x", Lines: [][2]string{{"X_Api_Key", "forged"}}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonInvalidAPIKey},
		{Name: "underscore api key header verified and stripped", Path: "/v1/x", Lines: [][2]string{{"x_api_key", APIKey}}, Kind: engine.Allow, Set: apiOK, Remove: []string{"x_api_key"}},
		ambiguous("api key header in both spellings", "/v1/x", [2]string{"x-api-key", APIKey}, [2]string{"x_api_key", APIKey}),
		ambiguous("authorization repeated", "/v1/x", [2]string{"authorization", "Bearer " + good}, [2]string{"authorization", "Bearer " + forged}),
		ambiguous("authorization basic and bearer", "/api", [2]string{"authorization", Basic("alice", "secret")["authorization"]}, [2]string{"authorization", "Bearer " + forged}),
		{Name: "jwt param and cookie, one forged", Path: "/hs?access_token=" + hsTok, Lines: [][2]string{{"cookie", "jwt=" + hsForged}}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonBadSignature},
		{Name: "jwt param and cookie, both good", Path: "/hs?access_token=" + hsTok, Lines: [][2]string{{"cookie", "jwt=" + hsTok}}, Kind: engine.Allow, Set: hsOK},
		{Name: "cookie of another route", Path: "/v1/x", Headers: Bearer(good), Lines: [][2]string{{"cookie", "a=1; jwt=" + hsForged}}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonUnexpectedCredential},
		{Name: "api key on a basic route", Path: "/basic?api_key=" + APIKey, Headers: Basic("alice", "secret"), Kind: engine.Deny, Status: 401, Reason: engine.ReasonUnexpectedCredential, WWWAuth: "Basic"},
		{Name: "bearer with tab", Path: "/v1/x", Headers: map[string]string{"authorization": "Bearer\t" + forged}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonMalformed},
		{Name: "bearer upper case, two spaces", Path: "/v1/x", Headers: map[string]string{"authorization": "BEARER  " + forged}, Kind: engine.Deny, Status: 401, Reason: engine.ReasonMalformed},
		{Name: "good bearer and good api key: both stripped", Path: "/v1/x?api_key=" + APIKey, Headers: Bearer(good), Kind: engine.Allow, Set: WithPayload(JWTIdentity("alice"), good), Remove: []string{"authorization"}, NewPath: "/v1/x"},
		// Claims in headers: a literal "realm.roles" never stands in for the nested path,
		// and arrays are written only when "," joins them unambiguously.
		claimRow("literal dotted claim ignored", map[string]string{}, "realm.roles", []any{"admin"}),
		claimRow("nested claim wins over literal", map[string]string{"x-roles": "a,b"}, "realm.roles", []any{"admin"}, "realm", map[string]any{"roles": []any{"a", "b"}}),
		claimRow("array element with comma", map[string]string{"x-groups": ""}, "groups", []any{"a,b", "c"}),
		claimRow("array element with space around", map[string]string{"x-groups": ""}, "groups", []any{"a", " b"}),
		claimRow("array element with quote", map[string]string{"x-groups": ""}, "groups", []any{`a"`}),
		claimRow("array element empty", map[string]string{"x-groups": ""}, "groups", []any{"a", ""}),
		claimRow("array of numbers and bools", map[string]string{"x-groups": "1,true,b c"}, "groups", []any{1, true, "b c"}),
		// Public routes verify nothing and pass no credential the configuration knows.
		{Name: "public strips structured credential names", Path: "/healthz?x=1&api_key[]=forged&[access_token]=forged", Kind: engine.Allow, Set: map[string]string{}, NewPath: "/healthz?x=1"},
		{Name: "public strips every credential", Path: "/healthz?x=1&api%5Fkey=forged&access_token=forged", Headers: map[string]string{"x-api-key": "forged"},
			Lines: [][2]string{{"cookie", "a=1; jwt=forged"}, {"x_api_key", "forged"}, {"authorization", "Bearer forged"}, {"authorization", "Basic forged"}},
			Kind:  engine.Allow, Set: map[string]string{}, Remove: []string{"x-api-key", "x_api_key", "authorization"}, NewPath: "/healthz?x=1"},
		// HEAD is protected like GET; methods are case-sensitive.
		{Name: "HEAD matches a GET rule", Method: "HEAD", Path: "/getonly", Kind: engine.Deny, Status: 401, Reason: engine.ReasonMissingCredential, WWWAuth: bearerCh},
		{Name: "HEAD not matched by a strict rule", Method: "HEAD", Path: "/strict", Kind: engine.Deny, Status: 403, Reason: engine.ReasonNoMatchingRule, WWWAuth: "-"},
		{Name: "lower-case get is another method", Method: "get", Path: "/getonly", Kind: engine.Deny, Status: 403, Reason: engine.ReasonNoMatchingRule, WWWAuth: "-"},
	}
}

// HeaderLines returns the request's header lines: Headers sorted by name, then Lines.
func (c *Case) HeaderLines() [][2]string {
	var out [][2]string
	for k, v := range c.Headers {
		out = append(out, [2]string{k, v})
	}
	slices.SortFunc(out, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return append(out, c.Lines...)
}

// Request is the engine's view of c at now (method GET if unset).
func (c *Case) Request(now time.Time) *engine.Request {
	m := c.Method
	if m == "" {
		m = "GET"
	}
	return &engine.Request{Method: m, Path: c.Path, Now: now, Headers: Lines(c.HeaderLines())}
}

// Lines encodes header lines as the glue reads them.
func Lines(lines [][2]string) abi.PairsView {
	pairs := make([]abi.Pair, len(lines))
	for i, l := range lines {
		pairs[i] = abi.Pair{Key: l[0], Value: l[1]}
	}
	return abi.PairsView(abi.EncodePairs(pairs))
}

// Decide reads and decides req with a fresh Extracted.
func Decide(e *engine.Engine, req *engine.Request) engine.Verdict {
	var x engine.Extracted
	e.Read(req, &x)
	return e.Decide(&x)
}

// claimRow is an allowed JWT request whose claims are Claims(kv...): the identity
// headers are JWTIdentity's with want applied ("" = absent).
func claimRow(name string, want map[string]string, kv ...any) Case {
	tok := RS.Sign(Claims(kv...))
	set := WithPayload(JWTIdentity("alice"), tok)
	for k, v := range want {
		if v == "" {
			delete(set, k)
		} else {
			set[k] = v
		}
	}
	return Case{Name: name, Path: "/v1/x", Headers: Bearer(tok), Kind: engine.Allow, Set: set, Remove: []string{"authorization"}}
}

func Allowed(t *testing.T, v engine.Verdict) {
	if v.Identity == nil || v.Identity.Method != "corp" {
		t.Fatalf("identity %+v", v.Identity)
	}
}

func JWTIdentity(sub string) map[string]string {
	return map[string]string{"x-consumer": sub, "x-auth-provider": "corp", "x-user-id": sub, "x-groups": "a,b"}
}

func WithPayload(m map[string]string, tok string) map[string]string {
	m["x-jwt-payload"] = strings.Split(tok, ".")[1]
	return m
}
