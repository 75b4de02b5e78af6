package jwt_test

import (
	"testing"

	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/auth/jwt/jwttest"
)

// BenchmarkVerify measures Parse + Verify + Validate (a cache miss) per algorithm.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []jwt.Alg{jwt.RS256, jwt.PS256, jwt.ES256, jwt.ES384, jwt.EdDSA, jwt.HS256} {
		s := jwttest.New(alg, "k")
		ks := mustKeys(b, jwttest.JWKS(s))
		raw := s.Sign(claims)
		algs := jwt.NewAlgSet(alg)
		v := jwt.Validation{Now: 1500, ClockSkew: 60, Issuer: "https://idp", Audiences: []string{"api"}, RequireExp: true}
		b.Run(alg.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tok, err := jwt.Parse(raw, 0)
				if err != nil {
					b.Fatal(err)
				}
				if err := ks.Verify(tok, algs); err != nil {
					b.Fatal(err)
				}
				if err := tok.Claims.Validate(&v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParse is the JSON/base64 share of a cache miss.
func BenchmarkParse(b *testing.B) {
	raw := jwttest.New(jwt.HS256, "k").Sign(claims)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jwt.Parse(raw, 0); err != nil {
			b.Fatal(err)
		}
	}
}
