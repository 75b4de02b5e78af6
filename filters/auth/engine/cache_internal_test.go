package engine

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/auth/config"
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

// The caches allocate as they fill, never past their bound: an engine whose tokens are
// few (or that has no JWT provider) holds little memory in each worker VM.
func TestCacheStorageGrowsToItsBound(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, max := range []int{1, 5, 16, 100, 4096} {
		c := NewTokenCache(config.TokenCache{MaxEntries: max, MaxTTL: time.Minute})
		require.Zero(t, cap(c.entries), "nothing allocated before the first token")
		for i := range 2*max + 3 {
			c.Put(0, fmt.Sprintf("token-%d", i), 1, time.Time{}, now, &Identity{})
			require.LessOrEqual(t, len(c.entries), max)
			require.LessOrEqual(t, cap(c.entries), max, "capacity never past max_entries (%d tokens in)", i+1)
			require.LessOrEqual(t, c.Len(), max)
			if i < max {
				require.Equal(t, i+1, c.Len(), "below the bound every token is kept")
			}
		}
		_, ok := c.Get(0, fmt.Sprintf("token-%d", 2*max+2), 1, now)
		assert.True(t, ok, "max %d: the newest token is cached", max)
	}
	bad := newBadSigCache(badSigEntries)
	assert.Nil(t, bad.slots, "negative cache: nothing before the first bad signature")
	assert.False(t, bad.Has(0, "t", 1))
	bad.Add(0, "t", 1)
	assert.Len(t, bad.slots, badSigEntries)
	assert.True(t, bad.Has(0, "t", 1))
	assert.False(t, bad.Has(0, "t", 2), "another key-set generation")
}

// The byte bound: whatever the tokens' sizes, the counted bytes never pass max_bytes,
// they are the sum of the used entries' costs, every slot is used or free (never
// both), and the newest token that fits is cached.
func TestCacheByteBound(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	cases := []struct {
		name              string
		maxEntries, maxB  int
		minTok, maxTok, n int
		wantAtMostEntries int
	}{
		{"bytes bind", 4096, 16 << 10, 200, 3000, 500, 16 << 10 / (200 + entryOverhead)},
		{"entries bind", 8, 1 << 20, 100, 900, 100, 8},
		{"both, small tokens", 64, 32 << 10, 50, 150, 1000, 64},
		{"tokens near the bound", 16, 8 << 10, 4000, 9000, 200, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc := NewTokenCache(config.TokenCache{MaxEntries: c.maxEntries, MaxBytes: c.maxB, MaxTTL: time.Minute})
			for i := range c.n {
				size := c.minTok + (i*7919)%(c.maxTok-c.minTok)
				tok := fmt.Sprintf("%08d", i) + strings.Repeat("t", size-8)
				id := &Identity{bytes: 100}
				tc.Put(0, tok, 1, time.Time{}, now, id)
				if i%3 == 0 { // reference some entries so that CLOCK has bits to clear
					tc.Get(0, tok, 1, now)
				}
				sum, used := 0, 0
				for _, e := range tc.entries {
					if e.used {
						sum += int(e.cost)
						used++
					}
				}
				require.Equal(t, sum, tc.Bytes(), "counted bytes after token %d", i)
				require.LessOrEqual(t, tc.Bytes(), c.maxB)
				require.Equal(t, len(tc.entries), used+len(tc.free), "slots used or free")
				require.Equal(t, used, tc.Len())
				require.LessOrEqual(t, tc.Len(), c.wantAtMostEntries)
				_, ok := tc.Get(0, tok, 1, now)
				require.Equal(t, entryCost(tok, id) <= c.maxB, ok, "token %d (%d bytes) cached iff it fits", i, len(tok))
			}
		})
	}
}
