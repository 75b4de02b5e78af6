package proxywasm

import (
	"math/rand/v2"
	"testing"
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
				if v, ok := tb.get(id); !ok || v != ref[id] {
					t.Fatalf("step %d: get(%d) = %d %v, want %d", step, id, v, ok, ref[id])
				}
			}
			if _, ok := tb.get(next + 7); ok {
				t.Fatalf("step %d: found an id never stored", step)
			}
		}
		if tb.len() != len(ref) {
			t.Fatalf("step %d: len %d, want %d", step, tb.len(), len(ref))
		}
	}
	for id, want := range ref {
		if v, ok := tb.get(id); !ok || v != want {
			t.Fatalf("final get(%d) = %d %v, want %d", id, v, ok, want)
		}
	}
	if _, ok := tb.get(0); ok {
		t.Fatal("id 0 must never be found")
	}
}
