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

func TestCounterAcquireRelease(t *testing.T) {
	st := newStore()
	c := &engine.Counter{Store: st, Key: "k", Gen: 0xabc}
	require.NoError(t, c.Init())
	require.NoError(t, c.Init(), "Init is idempotent")
	var gens []uint64
	for range 3 {
		g, ok, err := c.Acquire(3)
		require.NoError(t, err)
		require.True(t, ok)
		gens = append(gens, g)
	}
	_, ok, err := c.Acquire(3)
	require.NoError(t, err)
	assert.False(t, ok, "cap reached")
	n, g, ok, err := c.Load()
	require.NoError(t, err)
	require.True(t, ok)
	assert.EqualValues(t, 3, n)
	assert.EqualValues(t, 0xabc, g)
	for _, g := range gens {
		require.NoError(t, c.Release(g))
	}
	require.NoError(t, c.Release(gens[0]), "an extra release never goes below 0")
	n, _, _, _ = c.Load()
	assert.EqualValues(t, 0, n)
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
		c := &engine.Counter{Store: st, Key: "k", Gen: uint64(i + 1)}
		require.NoError(t, c.Init())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				g, ok, err := c.Acquire(capN)
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
				if err := c.Release(g); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, peak, capN)
	assert.Greater(t, peak, 1, "no overlap: the test shows nothing")
	n, _, _, _ := (&engine.Counter{Store: st, Key: "k"}).Load()
	assert.EqualValues(t, 0, n)
}

// The creation race cpp-host allows: VM B finds the key absent, VM A creates it and
// takes a slot, then B's blind create wipes it. A's later release (old generation)
// must not decrement B's generation: the count may forget A's slot, but never goes
// below the real number of active faults.
func TestCounterCreationRaceNeverUndercounts(t *testing.T) {
	st := newStore()
	a := &engine.Counter{Store: st, Key: "k", Gen: 0xa}
	b := &engine.Counter{Store: st, Key: "k", Gen: 0xb}
	var ga uint64
	st.hook = func(op string) {
		if op != "set" {
			return
		}
		st.hook = nil // B is about to create the key blindly: let A go first
		require.NoError(t, a.Init())
		var ok bool
		var err error
		ga, ok, err = a.Acquire(10)
		require.NoError(t, err)
		require.True(t, ok)
	}
	require.NoError(t, b.Init()) // B saw the key absent, then wrote it
	gb, ok, err := b.Acquire(10)
	require.NoError(t, err)
	require.True(t, ok)
	n, g, _, _ := b.Load()
	assert.EqualValues(t, 1, n, "A's slot was forgotten by B's create")
	assert.EqualValues(t, 0xb, g)
	require.NoError(t, a.Release(ga))
	n, _, _, _ = b.Load()
	assert.EqualValues(t, 1, n, "A's stale release must not take B's slot")
	require.NoError(t, b.Release(gb))
	n, _, _, _ = b.Load()
	assert.EqualValues(t, 0, n)
}

func TestCounterRecreatesAGarbledEntry(t *testing.T) {
	st := newStore()
	_, _ = st.Set("k", []byte("garbage"), 0)
	c := &engine.Counter{Store: st, Key: "k", Gen: 7}
	g, ok, err := c.Acquire(1)
	require.NoError(t, err)
	require.True(t, ok)
	assert.EqualValues(t, 7, g)
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
}
