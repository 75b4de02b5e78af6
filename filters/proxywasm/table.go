package proxywasm

// table maps context ids to values. Hosts hand out context ids from one increasing
// counter per VM and streams are short-lived, so a direct-mapped array indexed by the
// low bits of the id almost never collides; on a collision with a live entry it
// doubles. It replaces a Go map on the per-request path: in a wasm guest, map inserts
// and deletes with ever-new keys cost microseconds per request, this costs nanoseconds.
type table[T any] struct {
	ids  []uint32 // 0 = free
	vals []T
	n    int
}

func (t *table[T]) get(id uint32) (T, bool) {
	if len(t.ids) > 0 {
		i := id & uint32(len(t.ids)-1)
		if t.ids[i] == id && id != 0 {
			return t.vals[i], true
		}
	}
	var zero T
	return zero, false
}

func (t *table[T]) put(id uint32, v T) {
	if len(t.ids) == 0 {
		t.ids, t.vals = make([]uint32, 64), make([]T, 64)
	}
	for {
		i := id & uint32(len(t.ids)-1)
		if t.ids[i] == 0 || t.ids[i] == id {
			if t.ids[i] == 0 {
				t.n++
			}
			t.ids[i], t.vals[i] = id, v
			return
		}
		t.grow()
	}
}

func (t *table[T]) remove(id uint32) {
	if len(t.ids) == 0 {
		return
	}
	i := id & uint32(len(t.ids)-1)
	if t.ids[i] == id && id != 0 {
		var zero T
		t.ids[i], t.vals[i] = 0, zero
		t.n--
	}
}

// grow doubles the table until every live entry has a slot of its own.
func (t *table[T]) grow() {
	size := 2 * len(t.ids)
	for {
		ids, vals := make([]uint32, size), make([]T, size)
		ok := true
		for i, id := range t.ids {
			if id == 0 {
				continue
			}
			j := id & uint32(size-1)
			if ids[j] != 0 {
				ok = false
				break
			}
			ids[j], vals[j] = id, t.vals[i]
		}
		if ok {
			t.ids, t.vals = ids, vals
			return
		}
		size *= 2
	}
}

// len returns the number of live entries.
func (t *table[T]) len() int { return t.n }
