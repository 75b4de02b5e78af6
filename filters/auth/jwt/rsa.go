package jwt

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/subtle"
	"hash"

	"github.com/meshplug/meshplug/filters/auth/jwt/internal/gobigmod"
)

// rsaKey is an RSA public key with its Montgomery modulus precomputed.
//
// crypto/rsa recomputes R² mod N from N on every verification (about a third of an
// RS256 verify in a Go wasm guest); the key set is parsed once and verified against
// many times, so the modulus is computed once, at parse time, with a copy of Go's own
// arithmetic (internal/gobigmod). The public exponentiation s^e mod N and the
// encoding checks below then follow RFC 8017; TestRSADifferential checks them against
// crypto/rsa on valid, corrupted and malformed signatures.
type rsaKey struct {
	n    *gobigmod.Modulus
	e    uint
	size int // bytes of N
	bits int // bits of N
}

// newRSAKey precomputes pub, or returns nil when the key is outside what the fast path
// handles like crypto/rsa (an exponent that is even, < 3 or ≥ 2³¹): crypto/rsa then
// verifies (and refuses) as before.
func newRSAKey(pub *rsa.PublicKey) *rsaKey {
	if pub.E < 3 || pub.E&1 == 0 || pub.E > 1<<31-1 || pub.N.Sign() <= 0 || pub.N.Bit(0) == 0 {
		return nil
	}
	n, err := gobigmod.NewModulus(pub.N.Bytes())
	if err != nil {
		return nil
	}
	return &rsaKey{n: n, e: uint(pub.E), size: n.Size(), bits: n.BitLen()}
}

// public computes sig^e mod N as k.size bytes (RSAVP1, RFC 8017 §5.2.2); false if sig
// has the wrong length or is not smaller than N.
func (k *rsaKey) public(sig []byte) ([]byte, bool) {
	if len(sig) != k.size {
		return nil, false
	}
	s, err := gobigmod.NewNat().SetBytes(sig, k.n)
	if err != nil {
		return nil, false
	}
	return gobigmod.NewNat().ExpShortVarTime(s, k.e, k.n).Bytes(k.n), true
}

// DigestInfo DER prefixes of EMSA-PKCS1-v1_5 (RFC 8017 §9.2, note 1).
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// verifyPKCS1v15 is RSASSA-PKCS1-v1_5-VERIFY (RFC 8017 §8.2.2): EM must equal
// 0x00 0x01 FF…FF 0x00 DigestInfo(digest), with at least 8 bytes of FF.
func (k *rsaKey) verifyPKCS1v15(h crypto.Hash, digest, sig []byte) bool {
	prefix := digestInfoPrefix[h]
	if prefix == nil || len(digest) != h.Size() {
		return false
	}
	em, ok := k.public(sig)
	tLen := len(prefix) + len(digest)
	if !ok || len(em) < tLen+11 {
		return false
	}
	ps := em[2 : len(em)-tLen-1]
	for _, b := range ps {
		if b != 0xff {
			return false
		}
	}
	return em[0] == 0 && em[1] == 1 && em[len(em)-tLen-1] == 0 &&
		bytes.Equal(em[len(em)-tLen:len(em)-len(digest)], prefix) &&
		bytes.Equal(em[len(em)-len(digest):], digest)
}

// verifyPSS is RSASSA-PSS-VERIFY (RFC 8017 §8.1.2, EMSA-PSS-VERIFY §9.1.2) with MGF1
// over the same hash and a salt as long as the hash (RFC 7518 §3.5).
func (k *rsaKey) verifyPSS(newHash func() hash.Hash, digest, sig []byte) bool {
	em, ok := k.public(sig)
	if !ok {
		return false
	}
	emBits := k.bits - 1
	emLen := (emBits + 7) / 8
	if len(em) > emLen { // the modulus is one bit into a new byte: EM is one byte shorter
		if em[0] != 0 {
			return false
		}
		em = em[1:]
	}
	hh := newHash()
	hLen := hh.Size()
	sLen := hLen
	if len(digest) != hLen || emLen < hLen+sLen+2 || em[emLen-1] != 0xbc {
		return false
	}
	db := append([]byte(nil), em[:emLen-hLen-1]...)
	h := em[emLen-hLen-1 : emLen-1]
	topMask := byte(0xff >> (8*emLen - emBits))
	if db[0]&^topMask != 0 {
		return false
	}
	// DB = maskedDB XOR MGF1(H, len(DB)) (RFC 8017 §B.2.1).
	var counter [4]byte
	var block []byte
	for done := 0; done < len(db); {
		hh.Reset()
		hh.Write(h)
		hh.Write(counter[:])
		block = hh.Sum(block[:0])
		done += subtle.XORBytes(db[done:], db[done:], block)
		for i := 3; i >= 0; i-- {
			if counter[i]++; counter[i] != 0 {
				break
			}
		}
	}
	db[0] &= topMask
	psLen := emLen - hLen - sLen - 2
	for _, b := range db[:psLen] {
		if b != 0 {
			return false
		}
	}
	if db[psLen] != 1 {
		return false
	}
	salt := db[len(db)-sLen:]
	hh.Reset()
	var zeros [8]byte
	hh.Write(zeros[:])
	hh.Write(digest)
	hh.Write(salt)
	return bytes.Equal(hh.Sum(nil), h)
}
