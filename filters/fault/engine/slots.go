package engine

import (
	"errors"
	"strconv"
	"strings"
	"time"
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
// The entry holds one lease per VM that holds slots: "v1 <vm>:<held>:<expires>..."
// (vm a random hex stamp, expires in Unix milliseconds); the count is the sum of the
// unexpired leases. A VM renews its lease (Renew, from its tick) while it holds slots,
// and any VM drops expired leases when it next writes. So slots held by a VM that died
// (a trap) are leaked for at most TTL, not until the proxy restarts (shared data
// outlives VMs).
//
// cpp-host has no create-if-absent: a set on an absent key ignores cas. Each VM
// creates the entry at plugin start if it is missing; if two VMs race there, the
// second write can wipe a lease the first VM took in between. A VM whose lease is
// gone releases nothing, so the count can forget slots taken in that window
// (microseconds, at first use) but never drops below the real number of active
// faults.
type Counter struct {
	Store Store
	Key   string
	// VM is this VM's stamp (random, non-zero).
	VM uint64
	// TTL is how long a lease lasts without renewal.
	TTL time.Duration
}

// DefaultLeaseTTL is the lease lifetime the filter uses; it renews at a third of it.
const DefaultLeaseTTL = 60 * time.Second

// ErrContended is returned when the entry kept changing under us.
var ErrContended = errors.New("shared counter: too many CAS conflicts")

const casAttempts = 64

type lease struct {
	vm, held uint64
	expires  int64 // Unix ms
}

// Init creates the entry (no leases) unless it exists.
func (c *Counter) Init() error {
	_, _, ok, err := c.Store.Get(c.Key)
	if err != nil || ok {
		return err
	}
	_, err = c.Store.Set(c.Key, []byte(leaseVersion), 0)
	return err
}

// Load returns the number of active faults at now (sum of unexpired leases).
func (c *Counter) Load(now time.Time) (uint64, error) {
	v, _, _, err := c.Store.Get(c.Key)
	if err != nil {
		return 0, err
	}
	ls, _ := decodeLeases(v)
	n, _ := count(ls, now.UnixMilli(), 0)
	return n, nil
}

// Acquire takes a slot for this VM if fewer than max are active at now.
func (c *Counter) Acquire(max uint64, now time.Time) (bool, error) {
	ms := now.UnixMilli()
	var ok bool
	err := c.update(func(ls []lease, _ bool) ([]lease, bool) {
		total, live := count(ls, ms, c.VM)
		if total >= max {
			ok = false
			return ls, len(live) != len(ls) // drop expired leases on the way
		}
		ok = true
		for i := range live {
			if live[i].vm == c.VM {
				live[i].held++
				live[i].expires = ms + c.TTL.Milliseconds()
				return live, true
			}
		}
		return append(live, lease{vm: c.VM, held: 1, expires: ms + c.TTL.Milliseconds()}), true
	})
	return ok && err == nil, err
}

// Release gives back one of this VM's slots. Nothing happens if the VM has no lease
// (it expired, or the entry was re-created).
func (c *Counter) Release(now time.Time) error {
	return c.update(func(ls []lease, valid bool) ([]lease, bool) {
		if !valid {
			return ls, false
		}
		for i := range ls {
			if ls[i].vm == c.VM {
				if ls[i].held <= 1 {
					return append(ls[:i], ls[i+1:]...), true
				}
				ls[i].held--
				return ls, true
			}
		}
		return ls, false
	})
}

// Renew extends this VM's lease (if it has one) to now+TTL.
func (c *Counter) Renew(now time.Time) error {
	exp := now.UnixMilli() + c.TTL.Milliseconds()
	return c.update(func(ls []lease, valid bool) ([]lease, bool) {
		if !valid {
			return ls, false
		}
		for i := range ls {
			if ls[i].vm == c.VM && ls[i].expires != exp {
				ls[i].expires = exp
				return ls, true
			}
		}
		return ls, false
	})
}

// update applies f to the entry's leases and writes the result (if f says so) with
// compare-and-swap, retrying on conflicts. An absent or unreadable entry is passed as
// empty with valid false.
func (c *Counter) update(f func(ls []lease, valid bool) ([]lease, bool)) error {
	for range casAttempts {
		v, cas, found, err := c.Store.Get(c.Key)
		if err != nil {
			return err
		}
		ls, valid := decodeLeases(v)
		out, write := f(ls, valid && found)
		if !write {
			return nil
		}
		mismatch, err := c.Store.Set(c.Key, encodeLeases(out), cas)
		if err != nil {
			return err
		}
		if !mismatch {
			return nil
		}
	}
	return ErrContended
}

// count sums the leases unexpired at ms, and returns them (this VM's own lease is
// kept even if expired: the VM is alive, it just missed a renewal).
func count(ls []lease, ms int64, self uint64) (uint64, []lease) {
	var total uint64
	live := ls[:0:0]
	for _, l := range ls {
		if l.expires < ms && l.vm != self {
			continue
		}
		total += l.held
		live = append(live, l)
	}
	return total, live
}

const leaseVersion = "v1"

func encodeLeases(ls []lease) []byte {
	b := []byte(leaseVersion)
	for _, l := range ls {
		b = append(b, ' ')
		b = strconv.AppendUint(b, l.vm, 16)
		b = append(b, ':')
		b = strconv.AppendUint(b, l.held, 10)
		b = append(b, ':')
		b = strconv.AppendInt(b, l.expires, 10)
	}
	return b
}

// decodeLeases parses an entry; ok is false for anything that is not a valid one.
func decodeLeases(v []byte) (ls []lease, ok bool) {
	f := strings.Fields(string(v))
	if len(f) == 0 || f[0] != leaseVersion {
		return nil, false
	}
	for _, e := range f[1:] {
		parts := strings.Split(e, ":")
		if len(parts) != 3 {
			return nil, false
		}
		vm, err1 := strconv.ParseUint(parts[0], 16, 64)
		held, err2 := strconv.ParseUint(parts[1], 10, 64)
		exp, err3 := strconv.ParseInt(parts[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || held == 0 {
			return nil, false
		}
		ls = append(ls, lease{vm: vm, held: held, expires: exp})
	}
	return ls, true
}
