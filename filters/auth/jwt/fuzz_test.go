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

// FuzzParse: Parse and Verify never panic; whatever verifies was signed by us (its
// signing input is one of the seeds' — the fuzzer cannot forge a signature), and every
// accepted segment is canonical base64url.
func FuzzParse(f *testing.F) {
	fuzzSetup()
	for _, tok := range fuzzTokens {
		f.Add(tok)
	}
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
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

// FuzzParseJWKS: no panic; a parsed set has at least one key.
func FuzzParseJWKS(f *testing.F) {
	fuzzSetup()
	f.Add([]byte(jwttest.JWKS(jwttest.New(jwt.RS256, "a"), jwttest.New(jwt.ES384, "b"), jwttest.New(jwt.EdDSA, ""), jwttest.New(jwt.HS256, "h"))))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ks, err := jwt.ParseJWKS(b)
		if err == nil && ks.Len() == 0 {
			t.Fatal("empty key set accepted")
		}
	})
}
