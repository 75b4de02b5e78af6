package jwt_test

import (
	"encoding/base64"
	"strings"
	"sync"
	"testing"

	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/auth/jwt/jwttest"
)

var (
	fuzzOnce   sync.Once
	fuzzKS     *jwt.KeySet
	fuzzTokens []string
	fuzzInputs map[string]bool
)

func fuzzSetup() {
	fuzzOnce.Do(func() {
		var signers []*jwttest.Signer
		for _, a := range allAlgs {
			signers = append(signers, jwttest.New(a, a.String()))
		}
		ks, err := jwt.ParseJWKS([]byte(jwttest.JWKS(signers...)))
		if err != nil {
			panic(err)
		}
		fuzzKS = ks
		fuzzInputs = map[string]bool{}
		for _, s := range signers {
			for _, c := range []map[string]any{claims, {"sub": "x"}, {"aud": []string{"a", "b"}, "exp": 1e10}} {
				tok := s.Sign(c)
				fuzzTokens = append(fuzzTokens, tok)
				fuzzInputs[tok[:strings.LastIndexByte(tok, '.')]] = true
			}
		}
	})
}

// FuzzParse: Parse and Verify never panic; Parse agrees with the encoding/json-based
// reference implementation (accept/reject, error, every decoded value); whatever
// verifies was signed by us (its signing input is one of the seeds' — the fuzzer
// cannot forge a signature), and every accepted segment is canonical base64url.
func FuzzParse(f *testing.F) {
	fuzzSetup()
	for _, tok := range fuzzTokens {
		f.Add(tok)
	}
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c")
	h := func(js string) string { return base64.RawURLEncoding.EncodeToString([]byte(js)) }
	for _, c := range [][2]string{
		{`{"alg":"HS256","kid":"k\u00e9\ud800"}`, `{"iss":"i","aud":["a","b"],"exp":1.5,"o":{"x":[1,{"y":null,"y":true}]}}`},
		{`{"alg":"HS256","crit":["b64"]}`, `{"sub":"\ud83d\ude00\u0000","exp":1e400}`},
		{`{"alg":"ES256"} `, "{\"scope\":\"a b\",\"\xff\":-0,\"n\":12345678901234567890}"},
	} {
		f.Add(h(c[0]) + "." + h(c[1]) + ".c2ln")
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d := jwt.DiffParse(s, 1<<16); d != "" {
			t.Fatalf("Parse(%q) differs from the reference: %s", s, d)
		}
		tok, err := jwt.Parse(s, 1<<16)
		if err != nil {
			if _, ok := err.(*jwt.Error); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		for _, seg := range strings.Split(s, ".") {
			b, err := base64.RawURLEncoding.DecodeString(seg)
			if err != nil || base64.RawURLEncoding.EncodeToString(b) != seg {
				t.Fatalf("accepted non-canonical segment %q", seg)
			}
		}
		if err := fuzzKS.Verify(tok, jwt.NewAlgSet(allAlgs...)); err == nil {
			if !fuzzInputs[tok.SigningInput()] {
				t.Fatalf("verified a token we never signed: %q", s)
			}
		}
		v := jwt.Validation{Now: 1500, ClockSkew: 60, Issuer: "https://idp", Audiences: []string{"api"}, RequireExp: true, MaxLifetime: 10,
			Required: []jwt.RequiredClaim{{Name: "scope", Values: []string{"a"}}, {Name: "a.b"}}}
		_ = tok.Claims.Validate(&v)
	})
}

// FuzzParseJWKS: no panic; a parsed set has at least one key; the JSON decoder agrees
// with the encoding/json-based reference.
func FuzzParseJWKS(f *testing.F) {
	fuzzSetup()
	f.Add([]byte(jwttest.JWKS(jwttest.New(jwt.RS256, "a"), jwttest.New(jwt.ES384, "b"), jwttest.New(jwt.EdDSA, ""), jwttest.New(jwt.HS256, "h"))))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d := jwt.DiffDecodeObject(b); d != "" {
			t.Fatalf("decodeObject(%q) differs from the reference: %s", b, d)
		}
		ks, err := jwt.ParseJWKS(b)
		if err == nil && ks.Len() == 0 {
			t.Fatal("empty key set accepted")
		}
	})
}
