package bucket_test

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/ratelimit/bucket"
	"github.com/meshplug/meshplug/filters/ratelimit/bucket/buckettest"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
)

func TestSipHashVectors(t *testing.T) {
	// The reference implementation's vectors: key 00..0f, message 00..(n-1).
	k0, k1 := binary.LittleEndian.Uint64([]byte{0, 1, 2, 3, 4, 5, 6, 7}), binary.LittleEndian.Uint64([]byte{8, 9, 10, 11, 12, 13, 14, 15})
	msg := make([]byte, 64)
	for i := range msg {
		msg[i] = byte(i)
	}
	for n, want := range map[int]uint64{
		0:  0x726fdb47dd0e0e31,
		1:  0x74f839c593dc67fd,
		7:  0xab0200f58b01d137,
		8:  0x93f5f5799a932462,
		15: 0xa129ca6149be45e5,
		63: 0x958a324ceb064572,
	} {
		assert.Equal(t, want, bucket.SipHash(k0, k1, msg[:n], 2, 4), "message of %d bytes", n)
	}
}

func TestSeedIsSharedAndSecret(t *testing.T) {
	// VMs of one proxy agree on every key's group; another proxy (another store) does
	// not, so groups cannot be computed from the keys alone.
	s1, s2 := &buckettest.Store{}, &buckettest.Store{}
	a, b, other := newTable(t, s1, 4096), newTable(t, s1, 4096), newTable(t, s2, 4096)
	differ := 0
	for i := 0; i < 64; i++ {
		k := []byte(fmt.Sprint("client-", i))
		ga, _ := a.Group(k)
		gb, _ := b.Group(k)
		go_, _ := other.Group(k)
		assert.Equal(t, ga, gb)
		if ga != go_ {
			differ++
		}
	}
	assert.Greater(t, differ, 48, "two proxies' seeds must place keys independently")
}

func TestSeedCreationRace(t *testing.T) {
	// VM A reads "no seed"; before it writes, VM B creates one. A must end up with B's.
	s := &buckettest.Store{}
	var b *bucket.Table
	once := false
	s.AfterGet = func(key string) {
		if once || key != "test/16/seed" {
			return
		}
		once = true
		b = newTable(t, s, 16)
	}
	a := newTable(t, s, 16)
	require.NotNil(t, b)
	for i := 0; i < 32; i++ {
		k := []byte(fmt.Sprint(i))
		ga, _ := a.Group(k)
		gb, _ := b.Group(k)
		require.Equal(t, gb, ga)
	}
}

func TestPeekCommit(t *testing.T) {
	s := &buckettest.Store{}
	tb := newTable(t, s, 4)
	l := limit(1, time.Second, 2)
	var op bucket.Op
	o, err := tb.Peek(&op, []byte("k"), l, t0)
	require.NoError(t, err)
	assert.True(t, o.Allowed)
	assert.Equal(t, int64(1), o.Remaining)
	assert.Equal(t, 2, s.Len(), "peek writes nothing")
	o, err = tb.Peek(&op, []byte("k"), l, t0)
	require.NoError(t, err)
	assert.Equal(t, int64(1), o.Remaining, "a peek takes nothing")
	r, err := tb.Commit(&op)
	require.NoError(t, err)
	assert.True(t, r.Allowed)
	assert.Equal(t, 0, r.Retries)
	// Another VM takes the last token between a peek and its commit: the commit reads
	// again and refuses.
	o, err = tb.Peek(&op, []byte("k"), l, t0)
	require.NoError(t, err)
	require.True(t, o.Allowed)
	_, err = newTable(t, s, 4).Take([]byte("k"), l, t0)
	require.NoError(t, err)
	r, err = tb.Commit(&op)
	require.NoError(t, err)
	assert.False(t, r.Allowed)
	assert.Equal(t, 1, r.Retries)
	assert.Equal(t, time.Second, r.RetryAfter, "one request refills in 1 s")
}

// TestEvictionNeverFreshensALimitedKey is the attack on the table itself: a client
// that exhausted its bucket (100 requests missing) sends new keys that land in its
// group (here: all keys do, one group), each with the requests a rule would allow it.
// Its bucket is evicted only after every other bucket of the group misses at least as
// many requests as it does, so each request it regains costs it several.
func TestEvictionNeverFreshensALimitedKey(t *testing.T) {
	s := &buckettest.Store{}
	tb := newTable(t, s, 1)
	l := limit(100, time.Hour, 100)
	take := func(k string) bucket.Result {
		r, err := tb.Take([]byte(k), l, t0)
		require.NoError(t, err)
		return r
	}
	for i := 0; i < 100; i++ {
		require.True(t, take("victim").Allowed)
	}
	require.False(t, take("victim").Allowed)
	spent := 0
	for i := 0; i < 5000; i++ { // new keys, one request each, evict each other
		take(fmt.Sprint("k", i))
		spent++
		if take("victim").Allowed {
			t.Fatalf("the victim got a fresh bucket after %d requests with one-request keys", spent)
		}
	}
	// Keys that each spend 99 requests still miss fewer than the victim's 100.
	for i := 0; i < config.GroupWays; i++ {
		for j := 0; j < 99; j++ {
			take(fmt.Sprint("heavy", i))
		}
	}
	assert.False(t, take("victim").Allowed)
}
