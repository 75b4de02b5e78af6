package proxywasm

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTableMatchesMap drives the table and a map with the same random operations.
func TestTableMatchesMap(t *testing.T) {
	var tb table[int]
	ref := map[uint32]int{}
	next := uint32(1)
	live := []uint32{}
	r := rand.New(rand.NewPCG(1, 2))
	for step := 0; step < 200000; step++ {
		switch op := r.IntN(10); {
		case op < 5: // create, mostly sequential ids, sometimes a jump
			if r.IntN(50) == 0 {
				next += uint32(r.IntN(5000))
			}
			tb.put(next, step)
			ref[next] = step
			live = append(live, next)
			next++
		case op < 9 && len(live) > 0: // delete a random live id
			k := r.IntN(len(live))
			id := live[k]
			live[k] = live[len(live)-1]
			live = live[:len(live)-1]
			tb.remove(id)
			delete(ref, id)
		default: // look up a live id and a dead one
			if len(live) > 0 {
				id := live[r.IntN(len(live))]
				v, ok := tb.get(id)
				require.True(t, ok, "step %d: get(%d) not found", step, id)
				require.Equal(t, ref[id], v, "step %d: get(%d)", step, id)
			}
			_, ok := tb.get(next + 7)
			require.False(t, ok, "step %d: found an id never stored", step)
		}
		require.Equal(t, len(ref), tb.len(), "step %d: len", step)
	}
	for id, want := range ref {
		v, ok := tb.get(id)
		assert.True(t, ok, "final get(%d)", id)
		assert.Equal(t, want, v, "final get(%d)", id)
	}
	_, ok := tb.get(0)
	assert.False(t, ok, "id 0 must never be found")
}
