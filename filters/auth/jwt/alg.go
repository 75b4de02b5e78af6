package jwt

import "strings"

// Alg is a JWS signature algorithm this package can verify (RFC 7518 §3, RFC 8037).
// The zero value is AlgInvalid; "none" has no Alg value at all.
type Alg uint8

// Supported algorithms.
const (
	AlgInvalid Alg = iota
	RS256
	RS384
	RS512
	PS256
	PS384
	PS512
	ES256
	ES384
	EdDSA
	HS256
	HS384
	HS512
	algCount
)

var algNames = [algCount]string{"", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512"}

// ParseAlg maps a JWS "alg" value to an Alg. It is case-sensitive, as RFC 7515 is;
// "none" and unknown names return (AlgInvalid, false).
func ParseAlg(s string) (Alg, bool) {
	for i := Alg(1); i < algCount; i++ {
		if algNames[i] == s {
			return i, true
		}
	}
	return AlgInvalid, false
}

// AllAlgs lists the supported algorithm names, for error messages and docs.
func AllAlgs() string { return strings.Join(algNames[1:], ", ") }

func (a Alg) String() string {
	if a < algCount {
		return algNames[a]
	}
	return "invalid"
}

// KeyType returns the JWK key type an algorithm needs, and for EC/OKP the curve.
func (a Alg) KeyType() (KeyType, string) {
	switch a {
	case RS256, RS384, RS512, PS256, PS384, PS512:
		return KeyRSA, ""
	case ES256:
		return KeyEC, "P-256"
	case ES384:
		return KeyEC, "P-384"
	case EdDSA:
		return KeyOKP, "Ed25519"
	case HS256, HS384, HS512:
		return KeyOct, ""
	}
	return KeyInvalid, ""
}

// hashSize is the digest length of the algorithm's hash (0 for EdDSA).
func (a Alg) hashSize() int {
	switch a {
	case RS256, PS256, ES256, HS256:
		return 32
	case RS384, PS384, ES384, HS384:
		return 48
	case RS512, PS512, HS512:
		return 64
	}
	return 0
}

// AlgSet is a set of algorithms (an allow-list). The zero value allows nothing.
type AlgSet uint16

// NewAlgSet returns the set of the given algorithms.
func NewAlgSet(algs ...Alg) AlgSet {
	var s AlgSet
	for _, a := range algs {
		s |= 1 << a
	}
	return s
}

// Has reports whether a is in the set. AlgInvalid is never in a set.
func (s AlgSet) Has(a Alg) bool { return a != AlgInvalid && a < algCount && s&(1<<a) != 0 }

// KeyType is a JWK "kty" this package understands.
type KeyType uint8

// Key types.
const (
	KeyInvalid KeyType = iota
	KeyRSA             // "RSA"
	KeyEC              // "EC"
	KeyOKP             // "OKP"
	KeyOct             // "oct"
)

func (t KeyType) String() string {
	switch t {
	case KeyRSA:
		return "RSA"
	case KeyEC:
		return "EC"
	case KeyOKP:
		return "OKP"
	case KeyOct:
		return "oct"
	}
	return "invalid"
}
