package engine_test

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/fault/engine"
)

// store is shared data with proxy-wasm-cpp-host's rules (SharedData::set): cas 0 is
// unconditional, a non-zero cas must match, an absent key is created whatever cas
// says. hook, if set, runs before each operation (to interleave another VM).
type store struct {
	mu   sync.Mutex
	data map[string]entry
	next uint32
	hook func(op string)
}

type entry struct {
	v   []byte
	cas uint32
}

func newStore() *store { return &store{data: map[string]entry{}, next: 1} }

func (s *store) Get(key string) ([]byte, uint32, bool, error) {
	if s.hook != nil {
		s.hook("get")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.data[key]
	return append([]byte(nil), e.v...), e.cas, ok, nil
}

func (s *store) Set(key string, v []byte, cas uint32) (bool, error) {
	if s.hook != nil {
		s.hook("set")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.data[key]; ok && cas != 0 && cas != e.cas {
		return true, nil
	}
	s.data[key] = entry{append([]byte(nil), v...), s.next}
	s.next++
	return false, nil
}

var now0 = time.Unix(1_800_000_000, 0)

func newCounter(st *store, vm uint64) *engine.Counter {
	return &engine.Counter{Store: st, Key: "k", VM: vm, TTL: time.Minute}
}

func load(t *testing.T, st *store, at time.Time) uint64 {
	t.Helper()
	n, err := newCounter(st, 0).Load(at)
	require.NoError(t, err)
	return n
}

func TestCounterAcquireRelease(t *testing.T) {
	st := newStore()
	a, b := newCounter(st, 0xa), newCounter(st, 0xb)
	require.NoError(t, a.Init())
	require.NoError(t, b.Init(), "Init is idempotent")
	for _, c := range []*engine.Counter{a, a, b} {
		ok, err := c.Acquire(3, now0)
		require.NoError(t, err)
		require.True(t, ok)
	}
	ok, err := b.Acquire(3, now0)
	require.NoError(t, err)
	assert.False(t, ok, "cap reached")
	assert.EqualValues(t, 3, load(t, st, now0))
	require.NoError(t, a.Release(now0))
	require.NoError(t, a.Release(now0))
	require.NoError(t, a.Release(now0), "an extra release never takes another VM's slot")
	assert.EqualValues(t, 1, load(t, st, now0))
	require.NoError(t, b.Release(now0))
	assert.EqualValues(t, 0, load(t, st, now0))
	v, _, _, _ := st.Get("k")
	assert.Equal(t, "v1", string(v), "empty leases are removed")
}

// A dead VM's lease stops counting when it expires; a renewed lease keeps counting.
func TestCounterLeases(t *testing.T) {
	st := newStore()
	dead, live, other := newCounter(st, 1), newCounter(st, 2), newCounter(st, 3)
	for _, c := range []*engine.Counter{dead, live} {
		ok, err := c.Acquire(2, now0)
		require.NoError(t, err)
		require.True(t, ok)
	}
	ok, _ := other.Acquire(2, now0.Add(59*time.Second))
	assert.False(t, ok, "both leases still valid")
	require.NoError(t, live.Renew(now0.Add(50*time.Second)))
	at := now0.Add(61 * time.Second)
	assert.EqualValues(t, 1, load(t, st, at), "the dead lease expired, the renewed one did not")
	ok, err := other.Acquire(2, at)
	require.NoError(t, err)
	assert.True(t, ok)
	v, _, _, _ := st.Get("k")
	assert.NotContains(t, string(v), " 1:", "the expired lease was dropped: %s", v)
	// A VM's own expired lease still counts for itself (it is alive, it just missed
	// a renewal), and its release works.
	later := now0.Add(10 * time.Minute)
	ok, err = live.Acquire(10, later)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, live.Release(later))
	require.NoError(t, live.Release(later))
	assert.EqualValues(t, 0, load(t, st, later))
}

// Several VMs (goroutines here) take and give back slots concurrently: the cap is
// never exceeded and the count returns to 0.
func TestCounterExactUnderContention(t *testing.T) {
	st := newStore()
	const vms, rounds, capN = 4, 2000, 5
	var inUse, peak int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range vms {
		c := newCounter(st, uint64(i+1))
		require.NoError(t, c.Init())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				ok, err := c.Acquire(capN, now0)
				if err != nil || !ok {
					continue
				}
				mu.Lock()
				inUse++
				peak = max(peak, inUse)
				mu.Unlock()
				runtime.Gosched() // hold the slot while others try
				mu.Lock()
				inUse--
				mu.Unlock()
				if err := c.Release(now0); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, peak, capN)
	assert.Greater(t, peak, 1, "no overlap: the test shows nothing")
	assert.EqualValues(t, 0, load(t, st, now0))
}

// The creation race cpp-host allows: VM B finds the key absent, VM A creates it and
// takes a slot, then B's blind create wipes A's lease. A's later release finds no
// lease and takes nothing: the count may forget A's slot, but never goes below the
// real number of active faults.
func TestCounterCreationRaceNeverUndercounts(t *testing.T) {
	st := newStore()
	a, b := newCounter(st, 0xa), newCounter(st, 0xb)
	st.hook = func(op string) {
		if op != "set" {
			return
		}
		st.hook = nil // B is about to create the key blindly: let A go first
		require.NoError(t, a.Init())
		ok, err := a.Acquire(10, now0)
		require.NoError(t, err)
		require.True(t, ok)
	}
	require.NoError(t, b.Init()) // B saw the key absent, then wrote it
	ok, err := b.Acquire(10, now0)
	require.NoError(t, err)
	require.True(t, ok)
	assert.EqualValues(t, 1, load(t, st, now0), "A's slot was forgotten by B's create")
	require.NoError(t, a.Release(now0))
	assert.EqualValues(t, 1, load(t, st, now0), "A's release must not take B's slot")
	require.NoError(t, b.Release(now0))
	assert.EqualValues(t, 0, load(t, st, now0))
}

func TestCounterReplacesAGarbledEntry(t *testing.T) {
	st := newStore()
	_, _ = st.Set("k", []byte("garbage"), 0)
	c := newCounter(st, 7)
	require.NoError(t, c.Release(now0), "nothing to release in garbage")
	ok, err := c.Acquire(1, now0)
	require.NoError(t, err)
	require.True(t, ok)
	assert.EqualValues(t, 1, load(t, st, now0))
}

func TestDelayQueue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var q engine.DelayQueue
	var all []*engine.Delayed
	for i, ms := range []int{500, 100, 300, 100, 900} {
		d := engine.NewDelayed(uint32(i+1), t0.Add(time.Duration(ms)*time.Millisecond))
		q.Push(d)
		all = append(all, d)
	}
	q.Remove(all[2]) // the 300 ms one went away
	assert.False(t, all[2].Queued())
	q.Remove(all[2]) // no-op
	next, ok := q.Next()
	require.True(t, ok)
	assert.Equal(t, t0.Add(100*time.Millisecond), next)
	due := q.PopDue(t0.Add(499*time.Millisecond), nil)
	require.Len(t, due, 2)
	assert.Equal(t, []uint32{2, 4}, []uint32{due[0].ID, due[1].ID})
	due = q.PopDue(t0.Add(time.Second), due[:0])
	require.Len(t, due, 2)
	assert.Equal(t, []uint32{1, 5}, []uint32{due[0].ID, due[1].ID})
	assert.Equal(t, 0, q.Len())
	_, ok = q.Next()
	assert.False(t, ok)
}

func TestTickFor(t *testing.T) {
	now := time.Unix(1000, 0)
	assert.Equal(t, time.Millisecond, engine.TickFor(now, now))
	assert.Equal(t, time.Millisecond, engine.TickFor(now.Add(-time.Second), now))
	assert.Equal(t, 7*time.Second, engine.TickFor(now.Add(7*time.Second), now))
	assert.Equal(t, 8*time.Millisecond, engine.TickFor(now.Add(7*time.Millisecond+1), now))
	// Periods beyond the ABI's uint32 of milliseconds are clamped, never cut.
	for _, d := range []time.Duration{engine.MaxTick, engine.MaxTick + time.Millisecond, 1 << 32 * time.Millisecond,
		1<<33*time.Millisecond + 5, 1<<63 - 1} {
		assert.Equal(t, engine.MaxTick, engine.TickFor(now.Add(d), now), d)
	}
	assert.Equal(t, engine.MaxTick-time.Millisecond, engine.TickFor(now.Add(engine.MaxTick-time.Millisecond), now))
}
