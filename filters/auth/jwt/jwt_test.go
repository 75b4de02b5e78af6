package jwt_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/auth/jwt/jwttest"
)

var allAlgs = []jwt.Alg{jwt.RS256, jwt.RS384, jwt.RS512, jwt.PS256, jwt.PS384, jwt.PS512, jwt.ES256, jwt.ES384, jwt.EdDSA, jwt.HS256, jwt.HS384, jwt.HS512}

var claims = map[string]any{"iss": "https://idp", "sub": "alice", "aud": "api", "exp": 2000, "iat": 1000}

func reasonOf(t *testing.T, err error) jwt.Reason {
	t.Helper()
	if err == nil {
		return ""
	}
	e, ok := err.(*jwt.Error)
	if !ok {
		t.Fatalf("error %v (%T) is not a *jwt.Error", err, err)
	}
	return e.Reason
}

func mustKeys(t testing.TB, s string) *jwt.KeySet {
	t.Helper()
	ks, err := jwt.ParseJWKS([]byte(s))
	if err != nil {
		t.Fatalf("ParseJWKS: %v", err)
	}
	return ks
}

func TestRoundTripEveryAlg(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg.String(), func(t *testing.T) {
			s := jwttest.New(alg, "k1")
			ks := mustKeys(t, jwttest.JWKS(s))
			tok, err := jwt.Parse(s.Sign(claims), 0)
			if err != nil {
				t.Fatal(err)
			}
			if tok.Header.Alg != alg || tok.Header.Kid != "k1" || tok.Claims.Subject != "alice" || tok.Claims.Audience[0] != "api" {
				t.Fatalf("parsed %+v", tok)
			}
			if err := ks.Verify(tok, jwt.NewAlgSet(alg)); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			// Flip one bit of the signature: must fail.
			sig := append([]byte(nil), tok.Signature...)
			sig[len(sig)/2] ^= 1
			bad := tok.SigningInput() + "." + jwttest.B64(sig)
			tok2, err := jwt.Parse(bad, 0)
			if err != nil {
				t.Fatal(err)
			}
			if r := reasonOf(t, ks.Verify(tok2, jwt.NewAlgSet(alg))); r != jwt.ReasonBadSignature {
				t.Fatalf("tampered signature: got %q", r)
			}
			// Tamper with the payload: must fail.
			parts := strings.Split(s.Sign(claims), ".")
			parts[1] = jwttest.B64([]byte(`{"sub":"mallory","exp":2000}`))
			tok3, err := jwt.Parse(strings.Join(parts, "."), 0)
			if err != nil {
				t.Fatal(err)
			}
			if r := reasonOf(t, ks.Verify(tok3, jwt.NewAlgSet(alg))); r != jwt.ReasonBadSignature {
				t.Fatalf("tampered payload: got %q", r)
			}
			// Not in the allow-list.
			other := jwt.NewAlgSet(allAlgs...) &^ jwt.NewAlgSet(alg)
			if r := reasonOf(t, ks.Verify(tok, other)); r != jwt.ReasonAlgNotAllowed {
				t.Fatalf("alg not allowed: got %q", r)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	s := jwttest.New(jwt.HS256, "")
	good := s.Sign(claims)
	p := strings.Split(good, ".")
	h := func(js string) string { return jwttest.B64([]byte(js)) }
	cases := []struct {
		name string
		tok  string
		max  int
		want jwt.Reason
	}{
		{"empty", "", 0, jwt.ReasonMalformed},
		{"one segment", p[0], 0, jwt.ReasonMalformed},
		{"two segments", p[0] + "." + p[1], 0, jwt.ReasonMalformed},
		{"four segments", good + ".x", 0, jwt.ReasonMalformed},
		{"double dot", p[0] + ".." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"empty signature (unsecured)", p[0] + "." + p[1] + ".", 0, jwt.ReasonMalformed},
		{"empty header", "." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"padding", p[0] + "=." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"std alphabet", p[0] + "." + p[1] + "." + strings.NewReplacer("-", "+", "_", "/").Replace(p[2]) + "+", 0, jwt.ReasonMalformed},
		{"newline in segment", p[0][:4] + "\n" + p[0][4:] + "." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"space", " " + good, 0, jwt.ReasonMalformed},
		{"trailing garbage", good + " ", 0, jwt.ReasonMalformed},
		{"non-canonical trailing bits", p[0] + "." + p[1] + "." + p[2][:len(p[2])-1] + "B", 0, jwt.ReasonMalformed},
		{"bad length", p[0] + "." + p[1] + "." + p[2] + "AA", 0, jwt.ReasonMalformed},
		{"header not JSON", h("nope") + "." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"header array", h(`["alg"]`) + "." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"header trailing", h(`{"alg":"HS256"}x`) + "." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"header two objects", h(`{"alg":"HS256"}{}`) + "." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"header dup alg", h(`{"alg":"none","alg":"HS256"}`) + "." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"no alg", h(`{"typ":"JWT"}`) + "." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"alg number", h(`{"alg":256}`) + "." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"kid number", h(`{"alg":"HS256","kid":1}`) + "." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"alg none", h(`{"alg":"none"}`) + "." + p[1] + "." + p[2], 0, jwt.ReasonAlgNotAllowed},
		{"alg None", h(`{"alg":"None"}`) + "." + p[1] + "." + p[2], 0, jwt.ReasonAlgNotAllowed},
		{"alg lowercase", h(`{"alg":"hs256"}`) + "." + p[1] + "." + p[2], 0, jwt.ReasonAlgNotAllowed},
		{"alg ES512", h(`{"alg":"ES512"}`) + "." + p[1] + "." + p[2], 0, jwt.ReasonAlgNotAllowed},
		{"crit", h(`{"alg":"HS256","crit":["exp"],"exp":1}`) + "." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"crit b64", h(`{"alg":"HS256","crit":["b64"],"b64":false}`) + "." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"jwe enc", h(`{"alg":"HS256","enc":"A128GCM"}`) + "." + p[1] + "." + p[2], 0, jwt.ReasonMalformed},
		{"payload not JSON", p[0] + "." + h("hello") + "." + p[2], 0, jwt.ReasonMalformed},
		{"payload string", p[0] + "." + h(`"x"`) + "." + p[2], 0, jwt.ReasonMalformed},
		{"payload dup sub", p[0] + "." + h(`{"sub":"a","sub":"b"}`) + "." + p[2], 0, jwt.ReasonMalformed},
		{"exp string", p[0] + "." + h(`{"exp":"2000"}`) + "." + p[2], 0, jwt.ReasonMalformed},
		{"exp huge", p[0] + "." + h(`{"exp":1e400}`) + "." + p[2], 0, jwt.ReasonMalformed},
		{"nbf bool", p[0] + "." + h(`{"nbf":true}`) + "." + p[2], 0, jwt.ReasonMalformed},
		{"iat null", p[0] + "." + h(`{"iat":null}`) + "." + p[2], 0, jwt.ReasonMalformed},
		{"aud number", p[0] + "." + h(`{"aud":1}`) + "." + p[2], 0, jwt.ReasonMalformed},
		{"aud mixed array", p[0] + "." + h(`{"aud":["a",1]}`) + "." + p[2], 0, jwt.ReasonMalformed},
		{"iss object", p[0] + "." + h(`{"iss":{}}`) + "." + p[2], 0, jwt.ReasonMalformed},
		{"sub number", p[0] + "." + h(`{"sub":1}`) + "." + p[2], 0, jwt.ReasonMalformed},
		{"too large", good, len(good) - 1, jwt.ReasonTooLarge},
		{"default cap", p[0] + "." + strings.Repeat("A", jwt.DefaultMaxTokenBytes) + "." + p[2], 0, jwt.ReasonTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := jwt.Parse(c.tok, c.max)
			if got := reasonOf(t, err); got != c.want {
				t.Fatalf("got %q (%v), want %q", got, err, c.want)
			}
		})
	}
	if _, err := jwt.Parse(good, len(good)); err != nil {
		t.Fatalf("exactly at the cap: %v", err)
	}
}

func TestParseClaims(t *testing.T) {
	s := jwttest.New(jwt.HS256, "")
	tok, err := jwt.Parse(s.SignRaw([]byte(`{"alg":"HS256","typ":"at+jwt"}`),
		[]byte(`{"iss":"i","sub":"s","jti":"j","aud":["a","b"],"exp":1.5,"nbf":-1,"iat":12345678901,"n":12345678901234567890,"o":{"x":[1]}}`)), 0)
	if err != nil {
		t.Fatal(err)
	}
	c := tok.Claims
	if c.Issuer != "i" || c.Subject != "s" || c.ID != "j" || len(c.Audience) != 2 || c.Audience[1] != "b" {
		t.Fatalf("claims %+v", c)
	}
	if !c.HasExpiry || c.Expiry != 1.5 || !c.HasNotBefore || c.NotBefore != -1 || !c.HasIssuedAt || c.IssuedAt != 12345678901 {
		t.Fatalf("dates %+v", c)
	}
	if s, ok := jwt.ScalarString(c.Raw["n"]); !ok || s != "12345678901234567890" {
		t.Fatalf("big number kept as %q", s)
	}
	if tok.Header.Typ != "at+jwt" {
		t.Fatalf("typ %q", tok.Header.Typ)
	}
}

// TestKeyConfusion: the classic attack signs an HS256 token with the RSA public key
// bytes as the HMAC secret. It must fail because an RSA key never verifies HS*, even
// when both families are allowed.
func TestKeyConfusion(t *testing.T) {
	rs := jwttest.New(jwt.RS256, "k")
	ks := mustKeys(t, jwttest.JWKS(rs))
	pub := rs.JWK()
	for _, secret := range []string{pub["n"].(string), jwttest.JWKS(rs)} {
		hs := jwttest.NewHMAC(jwt.HS256, "k", []byte(secret))
		tok, err := jwt.Parse(hs.Sign(claims), 0)
		if err != nil {
			t.Fatal(err)
		}
		if r := reasonOf(t, ks.Verify(tok, jwt.NewAlgSet(jwt.RS256, jwt.HS256))); r != jwt.ReasonUnknownKid {
			t.Fatalf("HS256 with RSA key: got %q, want unknown_kid (no compatible key)", r)
		}
	}
	// EC P-256 key must not verify ES384, and vice versa; Ed25519 key must not verify ES256.
	es256, es384, ed := jwttest.New(jwt.ES256, "k"), jwttest.New(jwt.ES384, "k"), jwttest.New(jwt.EdDSA, "k")
	all := jwt.NewAlgSet(allAlgs...)
	for _, c := range []struct{ signer, key *jwttest.Signer }{{es384, es256}, {es256, es384}, {es256, ed}, {ed, es256}, {rs.WithAlg(jwt.PS256), es256}} {
		ks := mustKeys(t, jwttest.JWKS(c.key))
		tok, _ := jwt.Parse(c.signer.Sign(claims), 0)
		if r := reasonOf(t, ks.Verify(tok, all)); r != jwt.ReasonUnknownKid {
			t.Fatalf("%s token with %s key: got %q", c.signer.Alg, c.key.Alg, r)
		}
	}
	// A key whose JWK alg is RS256 must not verify PS256 signed with the same RSA key.
	rsPinned := jwttest.New(jwt.RS256, "k")
	rsPinned.JWKAlg = "RS256"
	ks2 := mustKeys(t, jwttest.JWKS(rsPinned))
	tok, _ := jwt.Parse(rsPinned.WithAlg(jwt.PS256).Sign(claims), 0)
	if r := reasonOf(t, ks2.Verify(tok, all)); r != jwt.ReasonUnknownKid {
		t.Fatalf("PS256 with key pinned to RS256: got %q", r)
	}
	// Without the pin the same RSA key verifies PS256.
	if err := ks.Verify(tok, all); err != nil {
		t.Fatalf("PS256 with unpinned RSA key: %v", err)
	}
}

func TestKidSelection(t *testing.T) {
	a, b := jwttest.NewHMAC(jwt.HS256, "a", []byte(strings.Repeat("a", 32))), jwttest.NewHMAC(jwt.HS256, "b", []byte(strings.Repeat("b", 32)))
	ks := mustKeys(t, jwttest.JWKS(a, b))
	algs := jwt.NewAlgSet(jwt.HS256)
	tok, _ := jwt.Parse(b.Sign(claims), 0)
	if err := ks.Verify(tok, algs); err != nil {
		t.Fatal(err)
	}
	// Token claims kid "a" but was signed with b's secret: only a is tried.
	liar := jwttest.NewHMAC(jwt.HS256, "a", b.Secret())
	tok, _ = jwt.Parse(liar.Sign(claims), 0)
	if r := reasonOf(t, ks.Verify(tok, algs)); r != jwt.ReasonBadSignature {
		t.Fatalf("wrong kid: %q", r)
	}
	tok, _ = jwt.Parse(jwttest.NewHMAC(jwt.HS256, "zzz", b.Secret()).Sign(claims), 0)
	if r := reasonOf(t, ks.Verify(tok, algs)); r != jwt.ReasonUnknownKid {
		t.Fatalf("unknown kid: %q", r)
	}
	// No kid in the token: all keys tried.
	tok, _ = jwt.Parse(jwttest.NewHMAC(jwt.HS256, "", b.Secret()).Sign(claims), 0)
	if err := ks.Verify(tok, algs); err != nil {
		t.Fatalf("no kid: %v", err)
	}
	// Key without kid is used for a token with an unmatched kid.
	anon := jwttest.NewHMAC(jwt.HS256, "", []byte(strings.Repeat("c", 32)))
	ks2 := mustKeys(t, jwttest.JWKS(a, anon))
	tok, _ = jwt.Parse(jwttest.NewHMAC(jwt.HS256, "rotated", anon.Secret()).Sign(claims), 0)
	if err := ks2.Verify(tok, algs); err != nil {
		t.Fatalf("kid-less key: %v", err)
	}
	// HS512 token with a 32-byte key: too short to be a candidate.
	tok, _ = jwt.Parse(jwttest.NewHMAC(jwt.HS512, "a", a.Secret()).Sign(claims), 0)
	if r := reasonOf(t, ks.Verify(tok, jwt.NewAlgSet(jwt.HS512))); r != jwt.ReasonUnknownKid {
		t.Fatalf("short HS512 key: %q", r)
	}
	var nilKS *jwt.KeySet
	if r := reasonOf(t, nilKS.Verify(tok, jwt.NewAlgSet(jwt.HS512))); r != jwt.ReasonUnknownKid {
		t.Fatalf("nil key set: %q", r)
	}
}

// ECDSA signatures in ASN.1 DER form (what crypto/ecdsa.SignASN1 produces) must fail.
func TestECDSADERRejected(t *testing.T) {
	s := jwttest.New(jwt.ES256, "k")
	ks := mustKeys(t, jwttest.JWKS(s))
	good := s.Sign(claims)
	p := strings.Split(good, ".")
	der := derOf(t, p[2])
	tok, err := jwt.Parse(p[0]+"."+p[1]+"."+jwttest.B64(der), 0)
	if err != nil {
		t.Fatal(err)
	}
	if r := reasonOf(t, ks.Verify(tok, jwt.NewAlgSet(jwt.ES256))); r != jwt.ReasonBadSignature {
		t.Fatalf("DER signature: %q", r)
	}
}

func derOf(t *testing.T, seg string) []byte {
	raw, _ := base64.RawURLEncoding.DecodeString(seg)
	// minimal DER: SEQUENCE { INTEGER r, INTEGER s } with leading zero if high bit set
	enc := func(b []byte) []byte {
		if b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return append([]byte{2, byte(len(b))}, b...)
	}
	body := append(enc(raw[:32]), enc(raw[32:])...)
	return append([]byte{0x30, byte(len(body))}, body...)
}

func TestParseJWKS(t *testing.T) {
	rs, ec, ed := jwttest.New(jwt.RS256, "r"), jwttest.New(jwt.ES256, "e"), jwttest.New(jwt.EdDSA, "d")
	with := func(base map[string]any, kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	small := jwttest.NewRSA(jwt.RS256, "small", 1024)
	offCurve := with(ec.JWK(), "y", ec.JWK()["x"])
	cases := []struct {
		name string
		doc  string
		err  string // substring; "" = ok
		n    int
	}{
		{"three families", jwttest.JWKS(rs, ec, ed, jwttest.New(jwt.HS256, "h")), "", 4},
		{"not object", `[]`, "not a JSON object", 0},
		{"no keys", `{}`, "keys: required", 0},
		{"keys not array", `{"keys":{}}`, "keys: must be an array", 0},
		{"empty", `{"keys":[]}`, "no usable", 0},
		{"key not object", `{"keys":[1]}`, "keys[0]: must be an object", 0},
		{"no kty", jwttest.JWKSOf(with(rs.JWK(), "kty", nil)), "keys[0].kty: required", 0},
		{"only enc keys", jwttest.JWKSOf(with(rs.JWK(), "use", "enc")), "no usable", 0},
		{"enc skipped", jwttest.JWKSOf(with(rs.JWK(), "use", "enc"), ec.JWK()), "", 1},
		{"key_ops without verify skipped", jwttest.JWKSOf(with(rs.JWK(), "key_ops", []string{"encrypt"}), ec.JWK()), "", 1},
		{"key_ops verify", jwttest.JWKSOf(with(rs.JWK(), "key_ops", []string{"verify"})), "", 1},
		{"unknown kty skipped", jwttest.JWKSOf(map[string]any{"kty": "XYZ"}, ec.JWK()), "", 1},
		{"unknown alg skipped", jwttest.JWKSOf(with(rs.JWK(), "alg", "RSA-OAEP"), ec.JWK()), "", 1},
		{"P-521 skipped", jwttest.JWKSOf(with(ec.JWK(), "crv", "P-521"), rs.JWK()), "", 1},
		{"X25519 skipped", jwttest.JWKSOf(with(ed.JWK(), "crv", "X25519"), rs.JWK()), "", 1},
		{"bad n base64", jwttest.JWKSOf(ec.JWK(), with(rs.JWK(), "n", "a+b")), "keys[1].n: invalid base64url", 0},
		{"padded n", jwttest.JWKSOf(with(rs.JWK(), "n", rs.JWK()["n"].(string)+"=")), "keys[0].n: invalid base64url", 0},
		{"n number", jwttest.JWKSOf(with(rs.JWK(), "n", 5)), "keys[0].n: must be a string", 0},
		{"missing e", jwttest.JWKSOf(with(rs.JWK(), "e", nil)), "keys[0].e: required", 0},
		{"e even", jwttest.JWKSOf(with(rs.JWK(), "e", "Ag")), "keys[0].e: invalid", 0},
		{"e one", jwttest.JWKSOf(with(rs.JWK(), "e", "AQ")), "keys[0].e: invalid", 0},
		{"rsa 1024", jwttest.JWKS(small), "keys[0].n: RSA modulus is 1024 bits", 0},
		{"private d", jwttest.JWKSOf(with(rs.JWK(), "d", "AQAB")), "keys[0].d: private key material", 0},
		{"ec short x", jwttest.JWKSOf(with(ec.JWK(), "x", "AQAB")), "keys[0].x: must be 32 bytes", 0},
		{"ec missing y", jwttest.JWKSOf(with(ec.JWK(), "y", nil)), "keys[0].y: required", 0},
		{"ec off curve", jwttest.JWKSOf(offCurve), "not on curve", 0},
		{"ec no crv", jwttest.JWKSOf(with(ec.JWK(), "crv", nil)), "keys[0].crv: required", 0},
		{"ed short", jwttest.JWKSOf(with(ed.JWK(), "x", "AQAB")), "keys[0].x: must be 32 bytes", 0},
		{"oct short", jwttest.JWKSOf(map[string]any{"kty": "oct", "k": jwttest.B64([]byte("short"))}), "keys[0].k: HMAC key is 5 bytes", 0},
		{"oct HS512 short", jwttest.JWKSOf(map[string]any{"kty": "oct", "alg": "HS512", "k": jwttest.B64(make([]byte, 32))}), "keys[0].k: HS512 needs", 0},
		{"alg mismatch", jwttest.JWKSOf(with(ec.JWK(), "alg", "RS256")), "keys[0].alg: RS256 does not fit a EC P-256 key", 0},
		{"alg curve mismatch", jwttest.JWKSOf(with(ec.JWK(), "alg", "ES384")), "keys[0].alg: ES384 does not fit", 0},
		{"kid number", jwttest.JWKSOf(with(ec.JWK(), "kid", 3)), "keys[0].kid: must be a string", 0},
		{"dup member", `{"keys":[],"keys":[]}`, "duplicate member", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ks, err := jwt.ParseJWKS([]byte(c.doc))
			if c.err == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if ks.Len() != c.n {
					t.Fatalf("got %d keys, want %d", ks.Len(), c.n)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("got error %v, want containing %q", err, c.err)
			}
		})
	}
}

func TestECOffCurveViaStdlib(t *testing.T) {
	// A P-384 key announced as P-256 has 48-byte coordinates: length check fires.
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	b, _ := k.PublicKey.Bytes()
	doc := jwttest.JWKSOf(map[string]any{"kty": "EC", "crv": "P-256", "x": jwttest.B64(b[1:49]), "y": jwttest.B64(b[49:])})
	if _, err := jwt.ParseJWKS([]byte(doc)); err == nil || !strings.Contains(err.Error(), "keys[0].x: must be 32 bytes") {
		t.Fatalf("got %v", err)
	}
	_ = ed25519.PublicKeySize
}

func TestValidate(t *testing.T) {
	base := func() jwt.Validation {
		return jwt.Validation{Now: 1500, ClockSkew: 60, Issuer: "https://idp", Audiences: []string{"api", "web"}, RequireExp: true}
	}
	mk := func(m map[string]any) *jwt.Claims {
		s := jwttest.New(jwt.HS256, "")
		tok, err := jwt.Parse(s.Sign(m), 0)
		if err != nil {
			t.Fatal(err)
		}
		return &tok.Claims
	}
	cl := func(kv ...any) map[string]any {
		m := map[string]any{"iss": "https://idp", "aud": []string{"x", "web"}, "exp": 2000, "sub": "alice",
			"scope": "read write", "groups": []any{"a", "b", 7}, "admin": true, "realm_access": map[string]any{"roles": []string{"ops"}}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	cases := []struct {
		name   string
		claims map[string]any
		mod    func(*jwt.Validation)
		want   jwt.Reason
	}{
		{"ok", cl(), nil, ""},
		{"no issuer check", cl("iss", nil), func(v *jwt.Validation) { v.Issuer = "" }, ""},
		{"missing iss", cl("iss", nil), nil, jwt.ReasonBadIssuer},
		{"wrong iss", cl("iss", "https://evil"), nil, jwt.ReasonBadIssuer},
		{"iss prefix is not enough", cl("iss", "https://idp/"), nil, jwt.ReasonBadIssuer},
		{"expired", cl("exp", 1000), nil, jwt.ReasonExpired},
		{"expired at skew boundary", cl("exp", 1440), nil, jwt.ReasonExpired},
		{"within skew", cl("exp", 1441), nil, ""},
		{"no exp required", cl("exp", nil), nil, jwt.ReasonExpired},
		{"no exp allowed", cl("exp", nil), func(v *jwt.Validation) { v.RequireExp = false }, ""},
		{"nbf future", cl("nbf", 1561), nil, jwt.ReasonNotYetValid},
		{"nbf within skew", cl("nbf", 1560), nil, ""},
		{"iat future", cl("iat", 1561), nil, jwt.ReasonIatInFuture},
		{"iat within skew", cl("iat", 1560), nil, ""},
		{"zero skew", cl("nbf", 1501), func(v *jwt.Validation) { v.ClockSkew = 0 }, jwt.ReasonNotYetValid},
		{"lifetime ok", cl("iat", 1000), func(v *jwt.Validation) { v.MaxLifetime = 1000 }, ""},
		{"lifetime long", cl("iat", 999), func(v *jwt.Validation) { v.MaxLifetime = 1000 }, jwt.ReasonLifetimeTooLong},
		{"lifetime no iat", cl(), func(v *jwt.Validation) { v.MaxLifetime = 400 }, jwt.ReasonLifetimeTooLong},
		{"lifetime no exp", cl("exp", nil), func(v *jwt.Validation) { v.MaxLifetime = 400; v.RequireExp = false }, jwt.ReasonLifetimeTooLong},
		{"aud string", cl("aud", "api"), nil, ""},
		{"aud wrong", cl("aud", "other"), nil, jwt.ReasonBadAudience},
		{"aud missing", cl("aud", nil), nil, jwt.ReasonBadAudience},
		{"aud empty array", cl("aud", []string{}), nil, jwt.ReasonBadAudience},
		{"no aud check", cl("aud", nil), func(v *jwt.Validation) { v.Audiences = nil }, ""},
		{"scope word", cl(), req("scope", "write"), ""},
		{"scope both", cl(), req("scope", "read", "write"), ""},
		{"scope partial word", cl(), req("scope", "rea"), jwt.ReasonClaimMismatch},
		{"scope array", cl("scope", []string{"read"}), req("scope", "read"), ""},
		{"groups all", cl(), req("groups", "a", "b"), ""},
		{"groups number", cl(), req("groups", "7"), ""},
		{"groups one missing", cl(), req("groups", "a", "c"), jwt.ReasonClaimMismatch},
		{"string claim no split", cl("team", "red blue"), req("team", "red"), jwt.ReasonClaimMismatch},
		{"bool claim", cl(), req("admin", "true"), ""},
		{"bool claim false", cl("admin", false), req("admin", "true"), jwt.ReasonClaimMismatch},
		{"presence only", cl(), req("sub"), ""},
		{"missing", cl(), req("tenant", "x"), jwt.ReasonMissingClaim},
		{"null is missing", cl("tenant", nil), req("tenant"), jwt.ReasonMissingClaim},
		{"nested", cl(), req("realm_access.roles", "ops"), ""},
		{"nested missing", cl(), req("realm_access.groups", "ops"), jwt.ReasonMissingClaim},
		{"object claim never matches", cl(), req("realm_access", "ops"), jwt.ReasonClaimMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := base()
			if c.mod != nil {
				c.mod(&v)
			}
			if got := reasonOf(t, mk(c.claims).Validate(&v)); got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

func req(name string, vals ...string) func(*jwt.Validation) {
	return func(v *jwt.Validation) { v.Required = append(v.Required, jwt.RequiredClaim{Name: name, Values: vals}) }
}
