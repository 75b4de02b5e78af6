package engine

import (
	"errors"
	"strconv"
	"strings"
)

// Store is proxy-wasm shared data as proxy-wasm-cpp-host implements it
// (SharedData::get/set in src/shared_data.cc): Get returns the value and its CAS
// token (ok false when the key is absent); Set with cas 0 is unconditional, a non-zero
// cas must equal the entry's (else mismatch), and a set on an absent key creates it
// whatever cas says.
type Store interface {
	Get(key string) (value []byte, cas uint32, ok bool, err error)
	Set(key string, value []byte, cas uint32) (mismatch bool, err error)
}

// Counter is the proxy-wide count of active faults: one shared-data entry, updated
// only by compare-and-swap, so that max_active_faults holds exactly across all worker
// VMs (Envoy's own check reads a gauge without CAS and is approximate).
//
// The value is "<count> <generation>". The generation is a random stamp written by
// whichever VM created the entry. cpp-host has no create-if-absent: a set on an absent
// key ignores cas, so two VMs that both find the key absent both write it, and the
// second write can wipe a slot the first VM took in between. Each stream remembers
// the generation it counted in, and a release only decrements the same generation, so
// such a wipe can never drive the count below the real number of active faults; it
// can only forget the slots taken in that window (microseconds, at first use). The
// entry is created once per VM, at plugin start, before any request.
//
// Caveat: a VM that dies (a trap) while its streams hold slots never releases them:
// the count stays that much too high until the proxy restarts (the shared data
// outlives VMs). The leak is bounded by the slots that VM held when it died.
type Counter struct {
	Store Store
	Key   string
	// Gen is this VM's stamp, used if it creates the entry.
	Gen uint64
}

// ErrContended is returned when the entry kept changing under us.
var ErrContended = errors.New("shared counter: too many CAS conflicts")

const casAttempts = 64

// Init creates the entry (count 0, generation c.Gen) unless it exists.
func (c *Counter) Init() error {
	_, _, ok, err := c.Store.Get(c.Key)
	if err != nil || ok {
		return err
	}
	_, err = c.Store.Set(c.Key, encodeCount(0, c.Gen), 0)
	return err
}

// Load returns the current count and generation (ok false if the entry is absent or
// unreadable).
func (c *Counter) Load() (count, gen uint64, ok bool, err error) {
	v, _, found, err := c.Store.Get(c.Key)
	if err != nil || !found {
		return 0, 0, false, err
	}
	count, gen, ok = decodeCount(v)
	return count, gen, ok, nil
}

// Acquire takes a slot if fewer than max are active. It returns the generation the
// slot was counted in (for Release) and whether a slot was taken.
func (c *Counter) Acquire(max uint64) (gen uint64, ok bool, err error) {
	for range casAttempts {
		v, cas, found, err := c.Store.Get(c.Key)
		if err != nil {
			return 0, false, err
		}
		count, g, valid := decodeCount(v)
		if !found || !valid {
			// Absent (or unreadable): (re)create it. An absent key is created
			// whatever cas says; an unreadable one is replaced only if unchanged.
			if _, err := c.Store.Set(c.Key, encodeCount(0, c.Gen), cas); err != nil {
				return 0, false, err
			}
			continue
		}
		if count >= max {
			return g, false, nil
		}
		mismatch, err := c.Store.Set(c.Key, encodeCount(count+1, g), cas)
		if err != nil {
			return 0, false, err
		}
		if !mismatch {
			return g, true, nil
		}
	}
	return 0, false, ErrContended
}

// Release gives back a slot counted in generation gen. A slot of another generation
// (the entry was re-created since) is already gone and is not decremented.
func (c *Counter) Release(gen uint64) error {
	for range casAttempts {
		v, cas, found, err := c.Store.Get(c.Key)
		if err != nil {
			return err
		}
		count, g, valid := decodeCount(v)
		if !found || !valid || g != gen || count == 0 {
			return nil
		}
		mismatch, err := c.Store.Set(c.Key, encodeCount(count-1, g), cas)
		if err != nil {
			return err
		}
		if !mismatch {
			return nil
		}
	}
	return ErrContended
}

func encodeCount(count, gen uint64) []byte {
	b := strconv.AppendUint(nil, count, 10)
	b = append(b, ' ')
	return strconv.AppendUint(b, gen, 16)
}

func decodeCount(v []byte) (count, gen uint64, ok bool) {
	a, b, found := strings.Cut(string(v), " ")
	if !found {
		return 0, 0, false
	}
	count, err1 := strconv.ParseUint(a, 10, 64)
	gen, err2 := strconv.ParseUint(b, 16, 64)
	return count, gen, err1 == nil && err2 == nil
}
