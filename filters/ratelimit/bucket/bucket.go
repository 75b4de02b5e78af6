// Package bucket keeps the ratelimit filter's token buckets in proxy-wasm shared data,
// so that every worker VM of a proxy (and every VM sharing a vm_id) takes tokens from
// one bucket per key, exactly.
//
// A bucket is a token bucket counted in integers: tokens are scaled by the limit's
// period in nanoseconds (capacity Burst×Period, refill Requests per nanosecond, a
// request costs Period), so refill is exact for every rate, with no rounding drift.
//
// Buckets live in a fixed table of slot groups: bucket key → SipHash-1-3 under a secret
// per-process seed → one of Groups shared-data entries, each holding up to
// config.GroupWays (8) buckets. The seed is random, written once into shared data by
// the first VM and read by the others (Table.Init), so all VMs agree on a key's group
// and no client can compute it: choosing keys that crowd a given bucket out of its
// group takes guessing over the whole table. An update is one compare-and-swap of the
// whole group (get → decide → set with the cas the get returned, retried on
// CasMismatch), so placing, refilling, taking from, expiring and evicting buckets of a
// group are atomic; it can be split in a read (Table.Peek) and a write (Table.Commit)
// so that a request some rule rejects writes nothing. Memory is bounded by the table:
// shared data has no delete in the proxy-wasm ABI, so a bucket "expires" by being
// dropped from its group when the group is next written after the bucket is full
// again; when a new key finds its group full of active buckets, the bucket missing the
// fewest requests' tokens is forgotten (its key starts afresh later: it gains at most
// what it was missing, and a key that spent n requests is evicted only when every
// other bucket of its group misses n or more).
//
// Creating a group is the delicate case. In Envoy (proxy-wasm-cpp-host
// SharedData::set) a set on an absent key ignores cas, so two VMs that both read
// "not found" would both "succeed" and the second would overwrite the first's update.
// Table creates with a non-zero cas that no live group can hold: the cas of another
// entry (the table's meta entry, written in Init). If the group is still absent, the
// set creates it; if another VM created it in between, the group exists, its cas
// differs, and the set fails with CasMismatch like any lost race. Caveat: cas values
// are one 32-bit counter for the whole proxy; a group could hold the meta entry's cas
// only if it were written exactly a multiple of 2^32-1 writes after it.
//
// See https://github.com/proxy-wasm/proxy-wasm-cpp-host/blob/main/src/shared_data.cc.
package bucket

import (
	"time"

	"github.com/meshplug/meshplug/filters/ratelimit/config"
)

// State is one bucket: Tokens (scaled by the limit's period) at time Last (ns).
type State struct {
	Tokens int64
	Last   int64
}

// Capacity is l's bucket size in scaled tokens.
func Capacity(l *config.Limit) int64 { return l.Burst * int64(l.Period) }

// Fresh is a full bucket at now.
func Fresh(l *config.Limit, now int64) State { return State{Tokens: Capacity(l), Last: now} }

// Refill returns st refilled up to now. Time never runs backwards for a bucket: a
// worker whose clock reads earlier than Last adds nothing.
func Refill(l *config.Limit, st State, now int64) State {
	if now <= st.Last {
		return st
	}
	c := Capacity(l)
	missing := c - st.Tokens
	el := now - st.Last
	if missing <= 0 || el > missing/l.Requests {
		return State{Tokens: c, Last: now}
	}
	return State{Tokens: st.Tokens + el*l.Requests, Last: now}
}

// FullAt is when st is full again (ns).
func FullAt(l *config.Limit, st State) int64 {
	return st.Last + ceilDiv(Capacity(l)-st.Tokens, l.Requests)
}

// Outcome is what one request got from a bucket.
type Outcome struct {
	Allowed bool
	// Remaining is how many more requests the bucket would allow now.
	Remaining int64
	// Reset is how long until the bucket is full again.
	Reset time.Duration
	// RetryAfter is how long until one request would be allowed; 0 when allowed.
	RetryAfter time.Duration
}

// Take takes one request's tokens from st at now, if there are enough.
func Take(l *config.Limit, st State, now int64) (State, Outcome) {
	st = Refill(l, st, now)
	cost := int64(l.Period)
	var o Outcome
	if st.Tokens >= cost {
		st.Tokens -= cost
		o.Allowed = true
	} else {
		o.RetryAfter = time.Duration(ceilDiv(cost-st.Tokens, l.Requests))
	}
	o.Remaining = st.Tokens / cost
	o.Reset = time.Duration(ceilDiv(Capacity(l)-st.Tokens, l.Requests))
	return st, o
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}
