package engine_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/auth/engine"
	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/auth/jwt/jwttest"
)

func benchEngine(b *testing.B, s *jwttest.Signer, entries int) (*engine.Engine, *engine.Request, string) {
	e := newEngine(b, func(m map[string]any) {
		corp := m["providers"].(map[string]any)["corp"].(map[string]any)
		corp["algorithms"] = []any{s.Alg.String()}
		corp["local_jwks"] = map[string]any{"inline_string": jwttest.JWKS(s)}
		m["token_cache"] = map[string]any{"max_entries": entries}
	})
	tok := s.Sign(claims())
	return e, request(Case{Path: "/v1/x", Headers: bearer(tok)}), tok
}

var benchSigners = []*jwttest.Signer{jwttest.New(jwt.RS256, "k"), jwttest.New(jwt.ES256, "k"), jwttest.New(jwt.EdDSA, "k"), jwttest.New(jwt.HS256, "k")}

// BenchmarkDecideCacheHit: a repeat caller.
func BenchmarkDecideCacheHit(b *testing.B) {
	e, req, _ := benchEngine(b, benchSigners[0], 4096)
	var x engine.Extracted
	if v := decideInto(e, req, &x); v.Kind != engine.Allow {
		b.Fatal(v.Reason)
	}
	b.ReportAllocs()
	for b.Loop() {
		if v := decideInto(e, req, &x); v.Cache != engine.CacheHit {
			b.Fatal("miss")
		}
	}
}

// BenchmarkDecideCacheMiss: full verification per algorithm (cache disabled).
func BenchmarkDecideCacheMiss(b *testing.B) {
	for _, s := range benchSigners {
		b.Run(s.Alg.String(), func(b *testing.B) {
			e, req, _ := benchEngine(b, s, 0)
			b.ReportAllocs()
			var x engine.Extracted
			for b.Loop() {
				if v := decideInto(e, req, &x); v.Kind != engine.Allow {
					b.Fatal(v.Reason)
				}
			}
		})
	}
}

// BenchmarkNativeVerify: the floor — stdlib crypto verifying the same token, with no
// parsing or claim checks.
func BenchmarkNativeVerify(b *testing.B) {
	for _, s := range benchSigners {
		b.Run(s.Alg.String(), func(b *testing.B) {
			tok := s.Sign(claims())
			i := strings.LastIndexByte(tok, '.')
			in := []byte(tok[:i])
			sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
			jwk := s.JWK()
			ks, _ := jwt.ParseJWKS([]byte(jwttest.JWKS(s)))
			pub := ks.Keys[0].Public()
			b.ReportAllocs()
			for b.Loop() {
				ok := false
				switch s.Alg {
				case jwt.RS256:
					d := sha256.Sum256(in)
					ok = rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, d[:], sig) == nil
				case jwt.ES256:
					d := sha256.Sum256(in)
					ok = ecdsa.Verify(pub.(*ecdsa.PublicKey), d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
				case jwt.EdDSA:
					ok = ed25519.Verify(pub.(ed25519.PublicKey), in, sig)
				case jwt.HS256:
					k, _ := base64.RawURLEncoding.DecodeString(jwk["k"].(string))
					m := hmac.New(sha256.New, k)
					m.Write(in)
					ok = hmac.Equal(m.Sum(nil), sig)
				}
				if !ok {
					b.Fatal("verify")
				}
			}
		})
	}
}

// BenchmarkDecideAPIKey: API key in a header.
func BenchmarkDecideAPIKey(b *testing.B) {
	e := newEngine(b, nil)
	req := request(Case{Path: "/v1/x", Headers: map[string]string{"x-api-key": apiKey}})
	b.ReportAllocs()
	var x engine.Extracted
	for b.Loop() {
		if v := decideInto(e, req, &x); v.Kind != engine.Allow {
			b.Fatal(v.Reason)
		}
	}
}

// BenchmarkDecidePublic: rule matching only (the floor of Decide).
func BenchmarkDecidePublic(b *testing.B) {
	e := newEngine(b, nil)
	req := &engine.Request{Method: "GET", Path: "/healthz", Now: now}
	b.ReportAllocs()
	var x engine.Extracted
	for b.Loop() {
		decideInto(e, req, &x)
	}
}

var _ = config.NameAPIKeys
