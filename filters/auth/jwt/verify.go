package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"math/big"
	"strconv"
)

// compatible reports whether k may verify a token signed with alg: the key type (and
// curve) must be the one the algorithm family needs, the key's own "alg", if any, must
// equal alg, and an HMAC key must be at least as long as the hash.
func (k *Key) compatible(alg Alg) bool {
	kt, crv := alg.KeyType()
	if kt == KeyInvalid || kt != k.Type || crv != k.Curve {
		return false
	}
	if k.Alg != AlgInvalid && k.Alg != alg {
		return false
	}
	if kt == KeyOct && len(k.secret) < alg.hashSize() {
		return false
	}
	return true
}

// Verify checks the token's signature with the keys of ks, allowing only algorithms in
// allowed. Keys are chosen by kid when the token has one (keys with that kid, or, if
// none has it, keys without a kid); otherwise every key is a candidate. Candidates
// must then be compatible with the algorithm (see the package comment).
//
// Results: nil if one candidate verifies; ReasonAlgNotAllowed if the algorithm is not
// allowed; ReasonUnknownKid if there is no candidate (a fresh JWKS might have one);
// ReasonBadSignature otherwise. Verify does not look at claims; see Validate.
func (ks *KeySet) Verify(t *Token, allowed AlgSet) error {
	alg := t.Header.Alg
	if !allowed.Has(alg) {
		return errorf(ReasonAlgNotAllowed, "alg "+strconv.Quote(t.Header.AlgName)+" is not allowed")
	}
	if ks == nil {
		return errorf(ReasonUnknownKid, "no keys")
	}
	var cands []*Key
	if t.Header.Kid != "" {
		cands = ks.byKid[t.Header.Kid]
		if len(cands) == 0 {
			cands = ks.noKid
		}
	} else {
		cands = ks.Keys
	}
	tried := 0
	for _, k := range cands {
		if !k.compatible(alg) {
			continue
		}
		tried++
		if verifySignature(k, alg, t.signingInput, t.Signature) {
			return nil
		}
	}
	if tried == 0 {
		return errorf(ReasonUnknownKid, "no "+alg.String()+" key for kid "+strconv.Quote(t.Header.Kid))
	}
	return errorf(ReasonBadSignature, "signature does not verify with "+strconv.Itoa(tried)+" candidate key(s)")
}

func newHash(alg Alg) (hash.Hash, crypto.Hash) {
	switch alg.hashSize() {
	case 32:
		return sha256.New(), crypto.SHA256
	case 48:
		return sha512.New384(), crypto.SHA384
	default:
		return sha512.New(), crypto.SHA512
	}
}

// verifySignature checks sig over input with k, which must be compatible with alg.
func verifySignature(k *Key, alg Alg, input string, sig []byte) bool {
	if alg == EdDSA {
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k.ed, []byte(input), sig)
	}
	if alg >= HS256 && alg <= HS512 {
		var newH func() hash.Hash
		switch alg {
		case HS256:
			newH = sha256.New
		case HS384:
			newH = sha512.New384
		default:
			newH = sha512.New
		}
		m := hmac.New(newH, k.secret)
		m.Write([]byte(input))
		var buf [64]byte
		return hmac.Equal(m.Sum(buf[:0]), sig) // constant time
	}
	h, ch := newHash(alg)
	h.Write([]byte(input))
	var buf [64]byte
	digest := h.Sum(buf[:0])
	switch alg {
	case RS256, RS384, RS512:
		if k.rsaPre != nil {
			return k.rsaPre.verifyPKCS1v15(ch, digest, sig)
		}
		return rsa.VerifyPKCS1v15(k.rsa, ch, digest, sig) == nil
	case PS256, PS384, PS512:
		if k.rsaPre != nil {
			return k.rsaPre.verifyPSS(ch.New, digest, sig)
		}
		return rsa.VerifyPSS(k.rsa, ch, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	case ES256, ES384:
		// JWS ECDSA signatures are R || S, each the curve's byte size (RFC 7518 §3.4),
		// not ASN.1 DER.
		size := (k.ec.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k.ec, digest, r, s)
	}
	return false
}
