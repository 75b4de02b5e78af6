package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"math/big"
	"strconv"
)

// RSA modulus bounds accepted in a JWKS.
const (
	MinRSABits = 2048
	MaxRSABits = 16384
)

// MinHMACKeyBytes is the shortest "oct" key accepted (RFC 7518 §3.2 asks for at least
// the hash size; HS384/HS512 additionally need 48/64 bytes at verification time).
const MinHMACKeyBytes = 32

// Key is one verification key from a JWKS.
type Key struct {
	Kid   string  // "kid", "" if absent
	Alg   Alg     // "alg" if given, else AlgInvalid (any algorithm of the key's family)
	Type  KeyType // kty
	Curve string  // "P-256", "P-384" or "Ed25519" for EC/OKP keys

	rsa    *rsa.PublicKey
	rsaPre *rsaKey // rsa with its modulus precomputed (nil: use crypto/rsa)
	ec     *ecdsa.PublicKey
	ed     ed25519.PublicKey
	secret []byte
}

// KeySet is an immutable set of verification keys, indexed by kid.
type KeySet struct {
	Keys  []*Key
	byKid map[string][]*Key
	noKid []*Key
}

// NewKeySet indexes keys. It is used by ParseJWKS and by tests.
func NewKeySet(keys []*Key) *KeySet {
	ks := &KeySet{Keys: keys, byKid: make(map[string][]*Key, len(keys))}
	for _, k := range keys {
		if k.Kid == "" {
			ks.noKid = append(ks.noKid, k)
		} else {
			ks.byKid[k.Kid] = append(ks.byKid[k.Kid], k)
		}
	}
	return ks
}

// Len is the number of usable keys.
func (ks *KeySet) Len() int {
	if ks == nil {
		return 0
	}
	return len(ks.Keys)
}

// HasKid reports whether a key with this kid exists.
func (ks *KeySet) HasKid(kid string) bool { return ks != nil && len(ks.byKid[kid]) > 0 }

// ParseJWKS parses a JWK Set ({"keys":[...]}).
//
// Keys are skipped (not errors) when "use" is present and not "sig", when "key_ops"
// is present without "verify", when kty is not RSA/EC/OKP/oct, when the curve is not
// P-256/P-384/Ed25519, or when "alg" names an algorithm this package does not verify
// (e.g. RSA-OAEP, ES512). A key of a supported type with a bad field is an error naming
// the key index and field (`keys[1].n: invalid base64url`), as is an RSA modulus under
// 2048 bits, private key material ("d", "p", ...) in an asymmetric key, an "alg" that
// does not fit the key type, and a set with no usable key at all.
func ParseJWKS(data []byte) (*KeySet, error) {
	top, err := decodeObject(data)
	if err != nil {
		return nil, fmt.Errorf("jwks: %v", err)
	}
	rawKeys, ok := top["keys"]
	if !ok {
		return nil, fmt.Errorf("keys: required")
	}
	arr, ok := rawKeys.([]any)
	if !ok {
		return nil, fmt.Errorf("keys: must be an array")
	}
	var keys []*Key
	for i, rk := range arr {
		path := "keys[" + strconv.Itoa(i) + "]"
		m, ok := rk.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: must be an object", path)
		}
		k, err := parseJWK(path, m)
		if err != nil {
			return nil, err
		}
		if k != nil {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("keys: no usable signature verification key (RSA >= 2048 bits, EC P-256/P-384, OKP Ed25519, oct)")
	}
	return NewKeySet(keys), nil
}

func parseJWK(path string, m map[string]any) (*Key, error) {
	str := func(name string) (string, bool, error) {
		v, ok := m[name]
		if !ok {
			return "", false, nil
		}
		s, ok := v.(string)
		if !ok {
			return "", true, fmt.Errorf("%s.%s: must be a string", path, name)
		}
		return s, true, nil
	}
	bin := func(name string) ([]byte, error) {
		s, ok, err := str(name)
		if err != nil {
			return nil, err
		}
		if !ok || s == "" {
			return nil, fmt.Errorf("%s.%s: required", path, name)
		}
		b, ok := decodeSegment(s)
		if !ok {
			return nil, fmt.Errorf("%s.%s: invalid base64url", path, name)
		}
		return b, nil
	}
	kty, ok, err := str("kty")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s.kty: required", path)
	}
	use, hasUse, err := str("use")
	if err != nil {
		return nil, err
	}
	if hasUse && use != "sig" {
		return nil, nil
	}
	if ops, ok := m["key_ops"]; ok {
		arr, ok := ops.([]any)
		if !ok {
			return nil, fmt.Errorf("%s.key_ops: must be an array of strings", path)
		}
		verify := false
		for _, o := range arr {
			s, ok := o.(string)
			if !ok {
				return nil, fmt.Errorf("%s.key_ops: must be an array of strings", path)
			}
			verify = verify || s == "verify"
		}
		if !verify {
			return nil, nil
		}
	}
	k := &Key{}
	if k.Kid, _, err = str("kid"); err != nil {
		return nil, err
	}
	algName, hasAlg, err := str("alg")
	if err != nil {
		return nil, err
	}
	if hasAlg {
		a, ok := ParseAlg(algName)
		if !ok {
			return nil, nil // e.g. RSA-OAEP or ES512: not a key we verify with
		}
		k.Alg = a
	}
	switch kty {
	case "RSA":
		k.Type = KeyRSA
	case "EC":
		k.Type = KeyEC
	case "OKP":
		k.Type = KeyOKP
	case "oct":
		k.Type = KeyOct
	default:
		return nil, nil
	}
	if k.Type != KeyOct {
		for _, priv := range []string{"d", "p", "q", "dp", "dq", "qi", "oth"} {
			if _, ok := m[priv]; ok {
				return nil, fmt.Errorf("%s.%s: private key material must not be published in a JWKS", path, priv)
			}
		}
	}
	switch k.Type {
	case KeyRSA:
		nb, err := bin("n")
		if err != nil {
			return nil, err
		}
		eb, err := bin("e")
		if err != nil {
			return nil, err
		}
		n := new(big.Int).SetBytes(nb)
		if bits := n.BitLen(); bits < MinRSABits || bits > MaxRSABits {
			return nil, fmt.Errorf("%s.n: RSA modulus is %d bits, must be %d..%d", path, bits, MinRSABits, MaxRSABits)
		}
		if n.Bit(0) == 0 {
			return nil, fmt.Errorf("%s.n: RSA modulus must be odd", path)
		}
		if len(eb) > 4 {
			return nil, fmt.Errorf("%s.e: exponent too large", path)
		}
		e := 0
		for _, b := range eb {
			e = e<<8 | int(b)
		}
		if e < 3 || e&1 == 0 || e > 1<<31-1 {
			return nil, fmt.Errorf("%s.e: invalid RSA public exponent %d", path, e)
		}
		k.rsa = &rsa.PublicKey{N: n, E: e}
		k.rsaPre = newRSAKey(k.rsa)
	case KeyEC:
		crv, _, err := str("crv")
		if err != nil {
			return nil, err
		}
		var curve elliptic.Curve
		switch crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "":
			return nil, fmt.Errorf("%s.crv: required", path)
		default:
			return nil, nil // P-521, secp256k1, ...: not supported, skipped
		}
		k.Curve = crv
		size := (curve.Params().BitSize + 7) / 8
		x, err := bin("x")
		if err != nil {
			return nil, err
		}
		if len(x) != size {
			return nil, fmt.Errorf("%s.x: must be %d bytes for %s, got %d", path, size, crv, len(x))
		}
		y, err := bin("y")
		if err != nil {
			return nil, err
		}
		if len(y) != size {
			return nil, fmt.Errorf("%s.y: must be %d bytes for %s, got %d", path, size, crv, len(y))
		}
		pt := make([]byte, 0, 1+2*size)
		pt = append(append(append(pt, 4), x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, pt)
		if err != nil {
			return nil, fmt.Errorf("%s.x: point is not on curve %s", path, crv)
		}
		k.ec = pub
	case KeyOKP:
		crv, _, err := str("crv")
		if err != nil {
			return nil, err
		}
		switch crv {
		case "Ed25519":
		case "":
			return nil, fmt.Errorf("%s.crv: required", path)
		default:
			return nil, nil // X25519 (not a signature key), Ed448: skipped
		}
		k.Curve = crv
		x, err := bin("x")
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%s.x: must be %d bytes for Ed25519, got %d", path, ed25519.PublicKeySize, len(x))
		}
		k.ed = ed25519.PublicKey(x)
	case KeyOct:
		s, err := bin("k")
		if err != nil {
			return nil, err
		}
		if len(s) < MinHMACKeyBytes {
			return nil, fmt.Errorf("%s.k: HMAC key is %d bytes, must be at least %d", path, len(s), MinHMACKeyBytes)
		}
		k.secret = s
	}
	if k.Alg != AlgInvalid {
		kt, crv := k.Alg.KeyType()
		if kt != k.Type || crv != k.Curve {
			return nil, fmt.Errorf("%s.alg: %s does not fit a %s key", path, k.Alg, describeKey(k))
		}
		if k.Type == KeyOct && len(k.secret) < k.Alg.hashSize() {
			return nil, fmt.Errorf("%s.k: %s needs a key of at least %d bytes, got %d", path, k.Alg, k.Alg.hashSize(), len(k.secret))
		}
	}
	return k, nil
}

func describeKey(k *Key) string {
	if k.Curve != "" {
		return k.Type.String() + " " + k.Curve
	}
	return k.Type.String()
}

// Public returns the key's public key (*rsa.PublicKey, *ecdsa.PublicKey,
// ed25519.PublicKey) or, for oct keys, nil. For tests and logs.
func (k *Key) Public() any {
	switch k.Type {
	case KeyRSA:
		return k.rsa
	case KeyEC:
		return k.ec
	case KeyOKP:
		return k.ed
	}
	return nil
}
