package bucket_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/ratelimit/bucket"
	"github.com/meshplug/meshplug/filters/ratelimit/bucket/buckettest"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
)

func limit(req int64, period time.Duration, burst int64) *config.Limit {
	return &config.Limit{Requests: req, Period: period, Burst: burst}
}

const t0 = int64(1_700_000_000_000_000_000)

func TestTakeRefillIsExact(t *testing.T) {
	l := limit(3, time.Second, 3) // one token every 333,333,333.3 ns
	st := bucket.Fresh(l, t0)
	type step struct {
		at        time.Duration
		allowed   bool
		remaining int64
		retry     time.Duration
		reset     time.Duration
	}
	steps := []step{
		{0, true, 2, 0, 333333334},
		{0, true, 1, 0, 666666667},
		{0, true, 0, 0, time.Second},
		{0, false, 0, 333333334, time.Second},
		{333333333, false, 0, 1, 666666667},
		{333333334, true, 0, 0, time.Second}, // 2 scaled tokens left
		{2 * time.Second, true, 2, 0, 333333334},
		{time.Hour, true, 2, 0, 333333334},
	}
	for i, s := range steps {
		var o bucket.Outcome
		st, o = bucket.Take(l, st, t0+int64(s.at))
		assert.Equal(t, bucket.Outcome{Allowed: s.allowed, Remaining: s.remaining, RetryAfter: s.retry, Reset: s.reset}, o, "step %d at +%s", i, s.at)
	}
}

func TestTakeBurstAndRate(t *testing.T) {
	l := limit(10, time.Minute, 25)
	st := bucket.Fresh(l, t0)
	n := 0
	for i := 0; i < 100; i++ {
		var o bucket.Outcome
		if st, o = bucket.Take(l, st, t0); o.Allowed {
			n++
		}
	}
	assert.Equal(t, 25, n, "burst")
	// Over the next 10 minutes, 100 more (10 per minute), whatever the request spacing.
	n = 0
	for ms := int64(1); ms <= 600_000; ms += 7 {
		var o bucket.Outcome
		if st, o = bucket.Take(l, st, t0+ms*int64(time.Millisecond)); o.Allowed {
			n++
		}
	}
	assert.Equal(t, 99, n, "rate over 599.99 s") // the 100th token is due at exactly 600 s
}

func TestRefillNeverRunsBackwards(t *testing.T) {
	l := limit(1, time.Second, 1)
	st, o := bucket.Take(l, bucket.Fresh(l, t0), t0)
	require.True(t, o.Allowed)
	st2, o := bucket.Take(l, st, t0-int64(time.Hour)) // a worker whose clock is behind
	assert.False(t, o.Allowed)
	assert.Equal(t, st, st2)
	assert.Equal(t, bucket.State{Tokens: int64(time.Second), Last: t0 + 1<<62}, bucket.Refill(l, st, t0+1<<62), "no overflow on huge gaps")
}

func newTable(t testing.TB, s bucket.Store, groups int) *bucket.Table {
	tb := bucket.NewTable(s, "test", groups)
	require.NoError(t, tb.Init([]byte("info")))
	return tb
}

func TestTableCreationRace(t *testing.T) {
	// VM A reads "not found"; before it writes, VM B creates the group and takes a
	// token. A's create must not overwrite B's update.
	s := &buckettest.Store{}
	a, b := newTable(t, s, 16), newTable(t, s, 16)
	l := limit(1, time.Hour, 5)
	done := false
	s.AfterGet = func(string) {
		if done {
			return
		}
		done = true
		r, err := b.Take([]byte("k"), l, t0)
		require.NoError(t, err)
		assert.Equal(t, int64(4), r.Remaining)
	}
	r, err := a.Take([]byte("k"), l, t0)
	require.NoError(t, err)
	assert.Equal(t, 1, r.Retries, "A's create must lose the race")
	assert.Equal(t, int64(3), r.Remaining, "both tokens taken")
}

func TestTableUnconditionalCreateWouldLoseUpdates(t *testing.T) {
	// The same interleaving with the naive create (cas 0, or any cas on an absent key)
	// loses B's token: this is what the table avoids.
	s := &buckettest.Store{}
	_, _, err := s.Get(nil, "g")
	require.Error(t, err)
	require.NoError(t, s.Set("g", []byte("B took a token"), 0))
	require.NoError(t, s.Set("g", []byte("A took a token"), 0))
	v, _, _ := s.Get(nil, "g")
	assert.Equal(t, "A took a token", string(v))
}

func TestTableConcurrentExact(t *testing.T) {
	vms, perVM, keys, rounds := 8, 4, 5, 20
	if testing.Short() {
		rounds = 3
	}
	l := limit(1, time.Hour, 37)
	s := &buckettest.Store{}
	tables := make([]*bucket.Table, vms)
	var mu [8]sync.Mutex // one callback at a time per VM, as in Envoy
	for i := range tables {
		tables[i] = newTable(t, s, 64)
	}
	var retries atomic.Int64
	for round := 0; round < rounds; round++ {
		var admitted [5]atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < vms*perVM; g++ {
			wg.Add(1)
			go func(vm int) {
				defer wg.Done()
				for i := 0; i < 60; i++ {
					k := i % keys
					mu[vm].Lock()
					r, err := tables[vm].Take([]byte(fmt.Sprintf("round%d/key%d", round, k)), l, t0)
					mu[vm].Unlock()
					if err != nil {
						t.Error(err)
						return
					}
					retries.Add(int64(r.Retries))
					if r.Allowed {
						admitted[k].Add(1)
					}
				}
			}(g % vms)
		}
		wg.Wait()
		for k := range admitted {
			assert.Equal(t, int64(37), admitted[k].Load(), "round %d key %d", round, k)
		}
	}
	t.Logf("CAS retries: %d", retries.Load())
}

func TestTableExpiryAndEviction(t *testing.T) {
	s := &buckettest.Store{}
	tb := newTable(t, s, 1) // one group of GroupWays buckets
	l := limit(1, time.Second, 10)
	take := func(k string, at int64) bucket.Result {
		r, err := tb.Take([]byte(k), l, at)
		require.NoError(t, err)
		return r
	}
	// GroupWays keys fill the group; k0 is the emptiest, k1..k7 took one token each,
	// k2 first... then the others took a second one.
	for i := 0; i < 5; i++ {
		take("k0", t0)
	}
	for i := 1; i < config.GroupWays; i++ {
		assert.Equal(t, 1, take(fmt.Sprint("k", i), t0).Added)
	}
	for i := 1; i < config.GroupWays; i++ {
		if i != 2 {
			take(fmt.Sprint("k", i), t0)
		}
	}
	// A new key evicts the bucket closest to full (k2: one token taken).
	r := take("new", t0)
	assert.Equal(t, bucket.Result{Outcome: r.Outcome, Added: 1, Removed: 1, Evicted: 1}, r)
	assert.Equal(t, int64(4), take("k0", t0).Remaining, "k0 kept its bucket")
	assert.Equal(t, int64(9), take("k2", t0).Remaining, "k2 starts afresh")
	// After everyone is full again, the next write drops the idle buckets.
	r = take("k9", t0+int64(time.Minute))
	assert.Equal(t, 1, r.Added)
	assert.Equal(t, config.GroupWays, r.Removed)
	assert.Equal(t, 0, r.Evicted)
	assert.Equal(t, 3, s.Len(), "meta, seed and one group: memory is bounded by the table")
}

func TestTableLimitedPathDoesNotWrite(t *testing.T) {
	s := &buckettest.Store{}
	tb := newTable(t, s, 4)
	l := limit(1, time.Second, 1)
	_, err := tb.Take([]byte("k"), l, t0)
	require.NoError(t, err)
	g, _ := tb.Group([]byte("k"))
	_, cas, _ := s.Get(nil, g)
	r, err := tb.Take([]byte("k"), l, t0)
	require.NoError(t, err)
	assert.False(t, r.Allowed)
	assert.Equal(t, time.Second, r.RetryAfter)
	_, cas2, _ := s.Get(nil, g)
	assert.Equal(t, cas, cas2)
}

func TestTableLongAndCorrupt(t *testing.T) {
	s := &buckettest.Store{}
	tb := newTable(t, s, 4)
	l := limit(1, time.Second, 2)
	long := []byte(strings.Repeat("x", 1000))
	r, err := tb.Take(long, l, t0)
	require.NoError(t, err)
	assert.Equal(t, int64(1), r.Remaining)
	g, stored := tb.Group(long)
	assert.Len(t, stored, 33)
	v, _, _ := s.Get(nil, g)
	assert.Less(t, len(v), 100)
	r, _ = tb.Take(long, l, t0)
	assert.Equal(t, int64(0), r.Remaining)
	// A group value that is not ours decodes as empty and is replaced.
	for _, bad := range [][]byte{{0xb2, 2, 1}, append([]byte{0xb2, 9}, v[2:]...), append([]byte{0xb1}, v[1:]...), {0x00}} {
		require.NoError(t, s.Set(g, bad, 0))
		r, err = tb.Take(long, l, t0)
		require.NoError(t, err)
		assert.Equal(t, int64(1), r.Remaining, "%x", bad)
	}
}

func TestTableBeforeInit(t *testing.T) {
	_, err := bucket.NewTable(&buckettest.Store{}, "x", 4).Take([]byte("k"), limit(1, time.Second, 1), t0)
	assert.Error(t, err)
}
