package bucket

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// sipHash is SipHash-c-d (Aumasson and Bernstein, https://www.aumasson.jp/siphash/)
// of msg under the key (k0, k1): a keyed hash whose outputs a client cannot predict
// without the key, so it cannot choose bucket keys that land in a chosen group. The
// table uses SipHash-1-3 (c=1, d=3: the variant Rust's and Python's hash tables use
// against hash flooding, half the rounds of SipHash-2-4); the code is checked against
// SipHash-2-4's reference vectors.
func sipHash(k0, k1 uint64, msg []byte, c, d int) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	n := len(msg)
	for len(msg) >= 8 {
		m := le64(msg)
		v3 ^= m
		for range c {
			v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		}
		v0 ^= m
		msg = msg[8:]
	}
	var last [8]byte
	copy(last[:], msg)
	last[7] = byte(n)
	m := binary.LittleEndian.Uint64(last[:])
	v3 ^= m
	for range c {
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	}
	v0 ^= m
	v2 ^= 0xff
	for range d {
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	}
	return v0 ^ v1 ^ v2 ^ v3
}

func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}

// le64 reads msg's first 8 bytes, little-endian, with one load (wasm and every host Go
// runs this code on are little-endian and allow unaligned loads; the Go wasm backend
// does not merge binary.LittleEndian's eight byte loads).
func le64(msg []byte) uint64 {
	_ = msg[7]
	return *(*uint64)(unsafe.Pointer(unsafe.SliceData(msg)))
}
