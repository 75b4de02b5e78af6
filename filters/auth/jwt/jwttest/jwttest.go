// Package jwttest creates keys, JWKS documents and signed tokens for tests of the auth
// filter (the native engine tests and the tests through the compiled auth.wasm share it).
//
// Caveat: it is for tests only; keys come from crypto/rand and are not persisted.
package jwttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"math/big"
	"sync"

	"github.com/meshplug/meshplug/filters/auth/jwt"
)

// Signer signs tokens with one private key for one algorithm.
type Signer struct {
	Alg jwt.Alg
	Kid string // put in the token header and the JWK; "" leaves it out
	// JWKAlg controls the JWK "alg" member: "" leaves it out, "-" too, anything else
	// is written as is.
	JWKAlg string

	rsa    *rsa.PrivateKey
	ec     *ecdsa.PrivateKey
	ed     ed25519.PrivateKey
	secret []byte
}

var (
	once   sync.Once
	rsaKey *rsa.PrivateKey
	p256   *ecdsa.PrivateKey
	p384   *ecdsa.PrivateKey
	edKey  ed25519.PrivateKey
)

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func keys() {
	once.Do(func() {
		var err error
		rsaKey, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		_, edKey, err = ed25519.GenerateKey(rand.Reader)
		must(err)
	})
}

// New returns a signer for alg with kid. Asymmetric keys are generated once per
// process and shared by all signers of the same family (so two RS signers share a key
// unless made with NewRSA); HMAC secrets are fresh random bytes of the hash size.
func New(alg jwt.Alg, kid string) *Signer {
	keys()
	s := &Signer{Alg: alg, Kid: kid}
	switch alg {
	case jwt.RS256, jwt.RS384, jwt.RS512, jwt.PS256, jwt.PS384, jwt.PS512:
		s.rsa = rsaKey
	case jwt.ES256:
		s.ec = p256
	case jwt.ES384:
		s.ec = p384
	case jwt.EdDSA:
		s.ed = edKey
	case jwt.HS256, jwt.HS384, jwt.HS512:
		n := map[jwt.Alg]int{jwt.HS256: 32, jwt.HS384: 48, jwt.HS512: 64}[alg]
		s.secret = make([]byte, n)
		_, err := rand.Read(s.secret)
		must(err)
	default:
		panic("jwttest: unsupported alg")
	}
	return s
}

// NewRSA returns an RS/PS signer with a fresh key of the given size (use it for
// rotation tests and for too-small keys).
func NewRSA(alg jwt.Alg, kid string, bits int) *Signer {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	must(err)
	return &Signer{Alg: alg, Kid: kid, rsa: k}
}

// NewHMAC returns an HS signer with the given secret.
func NewHMAC(alg jwt.Alg, kid string, secret []byte) *Signer {
	return &Signer{Alg: alg, Kid: kid, secret: secret}
}

// WithAlg returns a copy of s that signs with another algorithm of the same key (for
// example PS256 with an RS256 key).
func (s *Signer) WithAlg(alg jwt.Alg) *Signer { c := *s; c.Alg = alg; return &c }

// Secret returns the HMAC secret (nil for asymmetric signers).
func (s *Signer) Secret() []byte { return s.secret }

// B64 is unpadded base64url.
func B64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Sign returns a compact JWS over claims with the header {"alg", "typ":"JWT", "kid"}.
func (s *Signer) Sign(claims map[string]any) string {
	h := map[string]any{"alg": s.Alg.String(), "typ": "JWT"}
	if s.Kid != "" {
		h["kid"] = s.Kid
	}
	return s.SignHeader(h, claims)
}

// SignHeader signs claims with an explicit header map.
func (s *Signer) SignHeader(header, claims map[string]any) string {
	hb, err := json.Marshal(header)
	must(err)
	cb, err := json.Marshal(claims)
	must(err)
	return s.SignRaw(hb, cb)
}

// SignRaw signs exact header and payload bytes (for crafted, odd JSON).
func (s *Signer) SignRaw(header, payload []byte) string {
	in := B64(header) + "." + B64(payload)
	return in + "." + B64(s.SignInput([]byte(in)))
}

// SignInput returns the raw JWS signature over input.
func (s *Signer) SignInput(in []byte) []byte {
	if s.Alg == jwt.EdDSA {
		return ed25519.Sign(s.ed, in)
	}
	var hf func() hash.Hash
	var ch crypto.Hash
	switch s.Alg {
	case jwt.RS256, jwt.PS256, jwt.ES256, jwt.HS256:
		hf, ch = sha256.New, crypto.SHA256
	case jwt.RS384, jwt.PS384, jwt.ES384, jwt.HS384:
		hf, ch = sha512.New384, crypto.SHA384
	default:
		hf, ch = sha512.New, crypto.SHA512
	}
	if s.secret != nil {
		m := hmac.New(hf, s.secret)
		m.Write(in)
		return m.Sum(nil)
	}
	h := hf()
	h.Write(in)
	d := h.Sum(nil)
	switch s.Alg {
	case jwt.RS256, jwt.RS384, jwt.RS512:
		sig, err := rsa.SignPKCS1v15(rand.Reader, s.rsa, ch, d)
		must(err)
		return sig
	case jwt.PS256, jwt.PS384, jwt.PS512:
		sig, err := rsa.SignPSS(rand.Reader, s.rsa, ch, d, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		must(err)
		return sig
	}
	r, ss, err := ecdsa.Sign(rand.Reader, s.ec, d)
	must(err)
	size := (s.ec.Curve.Params().BitSize + 7) / 8
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	ss.FillBytes(out[size:])
	return out
}

// JWK returns the public JWK of the signer (for oct keys, the secret in "k").
func (s *Signer) JWK() map[string]any {
	m := map[string]any{"use": "sig"}
	if s.Kid != "" {
		m["kid"] = s.Kid
	}
	if s.JWKAlg != "" && s.JWKAlg != "-" {
		m["alg"] = s.JWKAlg
	}
	switch {
	case s.rsa != nil:
		m["kty"] = "RSA"
		m["n"] = B64(s.rsa.N.Bytes())
		m["e"] = B64(big.NewInt(int64(s.rsa.E)).Bytes())
	case s.ec != nil:
		m["kty"] = "EC"
		size := (s.ec.Curve.Params().BitSize + 7) / 8
		m["crv"] = s.ec.Curve.Params().Name
		b, err := s.ec.PublicKey.Bytes()
		must(err)
		m["x"] = B64(b[1 : 1+size])
		m["y"] = B64(b[1+size:])
	case s.ed != nil:
		m["kty"] = "OKP"
		m["crv"] = "Ed25519"
		m["x"] = B64(s.ed.Public().(ed25519.PublicKey))
	default:
		m["kty"] = "oct"
		m["k"] = B64(s.secret)
	}
	return m
}

// JWKS returns a JWK Set document with the signers' keys.
func JWKS(signers ...*Signer) string {
	ks := make([]any, len(signers))
	for i, s := range signers {
		ks[i] = s.JWK()
	}
	b, err := json.Marshal(map[string]any{"keys": ks})
	must(err)
	return string(b)
}

// JWKSOf returns a JWK Set document from raw JWK maps.
func JWKSOf(keys ...map[string]any) string {
	ks := make([]any, len(keys))
	for i, k := range keys {
		ks[i] = k
	}
	b, err := json.Marshal(map[string]any{"keys": ks})
	must(err)
	return string(b)
}
