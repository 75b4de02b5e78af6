package engine

import (
	"strings"
	"testing"
)

func TestHashAndEqualString(t *testing.T) {
	base := strings.Repeat("abcdefghij", 70)
	for n := 0; n <= len(base); n += 7 {
		a := base[:n]
		b := strings.Clone(a)
		if !equalString(a, b) || hashString(42, a) != hashString(42, b) {
			t.Fatalf("len %d: equal strings differ", n)
		}
		for i := 0; i < n; i += 5 { // every position, including the tail, matters
			c := []byte(a)
			c[i] ^= 1
			if equalString(a, string(c)) {
				t.Fatalf("len %d: flip at %d not seen by equalString", n, i)
			}
			if hashString(42, a) == hashString(42, string(c)) {
				t.Fatalf("len %d: flip at %d not seen by hashString", n, i)
			}
		}
		if n > 0 && equalString(a, a[:n-1]) {
			t.Fatalf("len %d: prefix equal", n)
		}
	}
	if hashString(1, base) == hashString(2, base) {
		t.Error("seed ignored")
	}
}
