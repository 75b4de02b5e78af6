package jwt

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	mrand "math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRSADifferential checks the precomputed-modulus RSA verification (rsa.go, on Go's
// arithmetic copied into internal/gobigmod) against crypto/rsa: the same answer for
// valid signatures, corrupted ones, signatures of the other scheme, out-of-range and
// wrong-length ones, and random bytes, for RS256/384/512 and PS256/384/512, with a
// 2048-bit modulus and a 2049-bit one (where a PSS encoding is one byte shorter than
// the modulus).
func TestRSADifferential(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for _, bits := range []int{2048, 2049} {
		priv, err := rsa.GenerateKey(rand.Reader, bits)
		require.NoError(t, err)
		pub := &priv.PublicKey
		pre := newRSAKey(pub)
		require.NotNil(t, pre)
		for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
			hh := h.New()
			hh.Write([]byte("signing input"))
			digest := hh.Sum(nil)
			other := append([]byte(nil), digest...)
			other[0] ^= 1
			pkcs, err := rsa.SignPKCS1v15(rand.Reader, priv, h, digest)
			require.NoError(t, err)
			pss, err := rsa.SignPSS(rand.Reader, priv, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
			require.NoError(t, err)
			pssAuto, err := rsa.SignPSS(rand.Reader, priv, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
			require.NoError(t, err)
			sigs := map[string][]byte{"pkcs": pkcs, "pss": pss, "pss-longer-salt": pssAuto,
				"zero": make([]byte, pre.size), "N": pub.N.FillBytes(make([]byte, pre.size)),
				"N-1":   new(big.Int).Sub(pub.N, big.NewInt(1)).FillBytes(make([]byte, pre.size)),
				"short": pkcs[1:], "long": append([]byte{0}, pkcs...), "one": big.NewInt(1).FillBytes(make([]byte, pre.size))}
			for i := range 8 {
				c := append([]byte(nil), pkcs...)
				c[rng.IntN(len(c))] ^= byte(1 + rng.IntN(255))
				sigs["pkcs-corrupt-"+string(rune('a'+i))] = c
				c = append([]byte(nil), pss...)
				c[rng.IntN(len(c))] ^= byte(1 + rng.IntN(255))
				sigs["pss-corrupt-"+string(rune('a'+i))] = c
				r := make([]byte, pre.size)
				for j := range r {
					r[j] = byte(rng.UintN(256))
				}
				sigs["random-"+string(rune('a'+i))] = r
			}
			for name, sig := range sigs {
				for _, d := range [][]byte{digest, other} {
					want := rsa.VerifyPKCS1v15(pub, h, d, sig) == nil
					assert.Equal(t, want, pre.verifyPKCS1v15(h, d, sig), "%d bits %v PKCS1 %s", bits, h, name)
					want = rsa.VerifyPSS(pub, h, d, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
					assert.Equal(t, want, pre.verifyPSS(h.New, d, sig), "%d bits %v PSS %s", bits, h, name)
				}
			}
			assert.True(t, pre.verifyPKCS1v15(h, digest, pkcs), "valid PKCS1 rejected")
			assert.True(t, pre.verifyPSS(h.New, digest, pss), "valid PSS rejected")
		}
	}
	// Exponents crypto/rsa refuses are left to crypto/rsa.
	for _, e := range []int{1, 2, 65536, 1 << 31} {
		assert.Nil(t, newRSAKey(&rsa.PublicKey{N: big.NewInt(0).Lsh(big.NewInt(1), 2047).Add(big.NewInt(0).Lsh(big.NewInt(1), 2047), big.NewInt(1)), E: e}), "e=%d", e)
	}
}

// BenchmarkRSAVerify: RS256 verification with crypto/rsa (which rebuilds the modulus
// every time) and with the precomputed modulus, same key and signature, same run.
// Natively crypto/rsa has assembly for the multiply-add loop and the copy does not;
// the guest (wasm) has no assembly either way.
func BenchmarkRSAVerify(b *testing.B) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(b, err)
	digest := make([]byte, 32)
	sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, digest)
	require.NoError(b, err)
	pre := newRSAKey(&priv.PublicKey)
	b.Run("crypto-rsa", func(b *testing.B) {
		for b.Loop() {
			if rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, digest, sig) != nil {
				b.Fatal("verify")
			}
		}
	})
	b.Run("precomputed", func(b *testing.B) {
		for b.Loop() {
			if !pre.verifyPKCS1v15(crypto.SHA256, digest, sig) {
				b.Fatal("verify")
			}
		}
	})
}
