package bucket

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"unsafe"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
)

// Store is proxy-wasm shared data as the guest sees it (proxy_get_shared_data and
// proxy_set_shared_data of the plugin's vm_id). Get appends key's value to dst; for an
// absent key it returns an error that errors.Is abi.StatusNotFound. Set returns one
// that errors.Is abi.StatusCasMismatch when cas is non-zero and differs from the
// entry's. key is only valid during the call.
type Store interface {
	Get(dst []byte, key string) (value []byte, cas uint32, err error)
	Set(key string, value []byte, cas uint32) error
}

// MaxKeyBytes is the longest bucket key stored as is; longer keys are stored as their
// SHA-256.
const MaxKeyBytes = 128

// MaxAttempts bounds the CAS loop of one Take.
const MaxAttempts = 1000

// ErrContention is returned when a Take lost MaxAttempts CAS races in a row.
var ErrContention = errors.New("ratelimit: shared data contention: too many CAS retries")

// Table is the bucket table of one plugin configuration, as used by one VM. It is not
// safe for concurrent use: a VM runs one callback at a time.
type Table struct {
	store      Store
	prefix     string // "<namespace>/<groups>/"
	groups     uint64
	foreignCas uint32
	k0, k1     uint64 // the group hash's secret key (see Init)

	op     Op  // Take's
	peeked *Op // the Op whose group Table.ents holds, as Peek decoded it
	key    []byte
	ents   []entry
	value  []byte // the group to write
}

// Op is one bucket update in two steps: Peek reads the key's group and says what
// taking a request's tokens would give; Commit writes it. Between them a caller may
// peek other buckets and decide to write none (a request that some rule rejects takes
// no token anywhere). An Op's memory is reused from one Peek to the next.
type Op struct {
	gkey   []byte // shared-data key of the group
	key    []byte // the bucket key as stored
	read   []byte // the group as read
	cas    uint32
	create bool // the group was absent when read
	fresh  bool // read holds the group as Peek read it (Commit's first attempt uses it)
	limit  *config.Limit
	now    int64
	// Peek's decision, reused by a Commit that follows it with Table.ents unchanged.
	own     int   // index of the key's bucket in Table.ents, -1 if absent
	st      State // the bucket after taking
	outcome Outcome
}

type entry struct {
	key    []byte // aliases the value read from the store
	st     State
	fullAt int64
	step   int64 // ns per request's tokens refilled (its limit's Period/Requests, rounded up)
}

// Result is the outcome of a Take and what it cost.
type Result struct {
	Outcome
	// Retries is the number of CAS mismatches (lost races) before the write.
	Retries int
	// Added and Removed count buckets added to and dropped from the table by the write
	// (a dropped bucket is an idle one, or an active one evicted).
	Added, Removed int
	// Evicted counts active buckets forgotten to make room for this key.
	Evicted int
}

// NewTable returns the table of groups slot groups whose shared-data keys start with
// namespace, which must identify the plugin (e.g. its plugin_name) so that two
// configurations in one vm_id never share buckets. Call Init before Take.
func NewTable(s Store, namespace string, groups int) *Table {
	return &Table{store: s, prefix: namespace + "/" + strconv.Itoa(groups) + "/", groups: uint64(groups)}
}

// Init writes the table's meta entry (info is any description) and keeps its cas, the
// value group creation uses (see the package comment). It then reads the table's
// secret seed, creating it from the host's random source when it is absent: every VM
// of the proxy uses the first one written, so that one key has one group in all of
// them, and it lives as long as the proxy's shared data (the process).
func (t *Table) Init(info []byte) error {
	k := t.prefix + "meta"
	if err := t.store.Set(k, info, 0); err != nil {
		return fmt.Errorf("writing %s: %w", k, err)
	}
	_, cas, err := t.store.Get(nil, k)
	if err != nil {
		return fmt.Errorf("reading %s: %w", k, err)
	}
	if cas == 0 {
		return fmt.Errorf("reading %s: the host returned cas 0", k)
	}
	t.foreignCas = cas
	return t.initSeed()
}

// seedSize is the seed's size: SipHash's 128-bit key.
const seedSize = 16

func (t *Table) initSeed() error {
	k := t.prefix + "seed"
	for attempt := 0; attempt < 3; attempt++ {
		v, cas, err := t.store.Get(nil, k)
		switch {
		case err == nil && len(v) == seedSize:
			t.k0, t.k1 = binary.LittleEndian.Uint64(v), binary.LittleEndian.Uint64(v[8:])
			return nil
		case err == nil: // not a seed: replace it (cas: unless another VM did first)
		case errors.Is(err, abi.StatusNotFound):
			// Create it unless another VM does first: a create with the meta entry's
			// cas fails with CasMismatch if the key exists by then.
			cas = t.foreignCas
		default:
			return fmt.Errorf("reading %s: %w", k, err)
		}
		var seed [seedSize]byte
		if _, err := rand.Read(seed[:]); err != nil {
			return fmt.Errorf("creating %s: %w", k, err)
		}
		if err := t.store.Set(k, seed[:], cas); err != nil && !errors.Is(err, abi.StatusCasMismatch) {
			return fmt.Errorf("writing %s: %w", k, err)
		}
		// Read back what is there now, ours or the VM's that won.
	}
	return fmt.Errorf("reading %s: no seed after 3 attempts", k)
}

// Group returns the shared-data key of key's group, and the key as stored. The group is
// SipHash-1-3 of the stored key under the table's secret seed, modulo the number of
// groups: a client cannot choose keys that share a group with a given key.
func (t *Table) Group(key []byte) (group string, stored []byte) {
	t.op.gkey, stored = t.group(t.op.gkey[:0], key)
	return unsafe.String(unsafe.SliceData(t.op.gkey), len(t.op.gkey)), stored
}

func (t *Table) group(dst, key []byte) (gkey, stored []byte) {
	stored = key
	if len(key) > MaxKeyBytes {
		sum := sha256.Sum256(key)
		t.key = append(append(t.key[:0], 0xff), sum[:]...)
		stored = t.key
	}
	h := sipHash(t.k0, t.k1, stored, 1, 3)
	return strconv.AppendUint(append(dst, t.prefix...), h%t.groups, 10), stored
}

// Take takes one request's tokens from key's bucket under limit l at now (ns), in
// one CAS update of the key's group: Peek, then Commit when there are tokens.
func (t *Table) Take(key []byte, l *config.Limit, now int64) (Result, error) {
	o, err := t.Peek(&t.op, key, l, now)
	if err != nil || !o.Allowed {
		return Result{Outcome: o}, err
	}
	return t.Commit(&t.op)
}

// Peek reads key's group into op and returns what taking one request's tokens from
// key's bucket under l at now would give, without writing anything.
func (t *Table) Peek(op *Op, key []byte, l *config.Limit, now int64) (Outcome, error) {
	if t.foreignCas == 0 {
		return Outcome{}, errors.New("ratelimit: bucket table used before Init")
	}
	var stored []byte
	op.gkey, stored = t.group(op.gkey[:0], key)
	op.key = append(op.key[:0], stored...)
	op.limit, op.now, op.fresh = l, now, false
	if err := t.read(op); err != nil {
		return Outcome{}, err
	}
	op.fresh = true
	t.ents = decode(t.ents[:0], op.read)
	op.own = -1
	st := Fresh(l, now)
	for i := range t.ents {
		if string(t.ents[i].key) == string(op.key) {
			op.own, st = i, t.ents[i].st
			break
		}
	}
	op.st, op.outcome = Take(l, st, now)
	t.peeked = op
	return op.outcome, nil
}

// read gets op's group.
func (t *Table) read(op *Op) error {
	gk := unsafe.String(unsafe.SliceData(op.gkey), len(op.gkey))
	val, cas, err := t.store.Get(op.read[:0], gk)
	op.read, op.cas, op.create = val, cas, false
	switch {
	case errors.Is(err, abi.StatusNotFound):
		op.read, op.create = op.read[:0], true
	case err != nil:
		return fmt.Errorf("ratelimit: reading shared data %s: %w", gk, err)
	}
	return nil
}

// Commit takes the request's tokens from the bucket op peeked at, with a CAS update of
// its group; a lost race reads the group again and decides again, so the result may
// differ from Peek's (another VM took the last token in between: Allowed false,
// nothing written).
func (t *Table) Commit(op *Op) (Result, error) {
	var res Result
	gk := unsafe.String(unsafe.SliceData(op.gkey), len(op.gkey))
	for attempt := 0; attempt < MaxAttempts; attempt++ {
		var st State
		own := -1
		if op.fresh && t.peeked == op {
			// Right after its Peek: t.ents and the decision are still op's.
			st, own, res.Outcome = op.st, op.own, op.outcome
		} else {
			if !op.fresh {
				if err := t.read(op); err != nil {
					return res, err
				}
			}
			t.ents = decode(t.ents[:0], op.read)
			for i := range t.ents {
				if string(t.ents[i].key) == string(op.key) {
					own = i
					break
				}
			}
			st = Fresh(op.limit, op.now)
			if own >= 0 {
				st = t.ents[own].st
			}
			st, res.Outcome = Take(op.limit, st, op.now)
		}
		op.fresh, t.peeked = false, nil
		if !res.Allowed {
			// The bucket was empty when read: nothing to write.
			res.Added, res.Removed, res.Evicted = 0, 0, 0
			return res, nil
		}
		t.value, res.Added, res.Removed, res.Evicted = t.rebuild(t.value[:0], own, op.key, op.limit, st, op.now)
		cas := op.cas
		if op.create {
			cas = t.foreignCas
		}
		err := t.store.Set(gk, t.value, cas)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, abi.StatusCasMismatch) {
			return res, fmt.Errorf("ratelimit: writing shared data %s: %w", gk, err)
		}
		res.Retries++
	}
	return res, ErrContention
}

// rebuild encodes the group with key's bucket set to st: idle buckets of other keys
// are dropped; a new key in a full group evicts the bucket that misses the fewest
// requests' tokens now (ties: the one full soonest). So an evicted key gains at most
// what it was missing, and the bucket of a key that spent n requests is evicted only
// when every other bucket of its group misses at least n: a client must spend (in
// requests the rules allow) several times what it would gain, in a group it cannot
// choose (the seed is secret).
func (t *Table) rebuild(dst []byte, own int, key []byte, l *config.Limit, st State, now int64) (out []byte, added, removed, evicted int) {
	kept := 0
	evict := -1
	for i := range t.ents {
		e := &t.ents[i]
		if i == own {
			continue
		}
		if now >= e.fullAt {
			e.key = nil // idle: drop
			removed++
			continue
		}
		kept++
		if evict < 0 || fewerMissing(e, &t.ents[evict], now) {
			evict = i
		}
	}
	if own < 0 {
		added = 1
		if kept >= config.GroupWays {
			t.ents[evict].key = nil
			removed++
			evicted = 1
		}
	}
	dst = append(dst, groupMagic, byte(kept+1-evicted))
	for i := range t.ents {
		e := &t.ents[i]
		if i == own || e.key == nil {
			continue
		}
		dst = appendEntry(dst, e.key, e.st, e.fullAt, e.step)
	}
	dst = appendEntry(dst, key, st, FullAt(l, st), stepOf(l))
	return dst, added, removed, evicted
}

// stepOf is how long l takes to refill one request's tokens (rounded up): l.Step,
// computed at configure time, or for a Limit built otherwise (tests) from its period.
func stepOf(l *config.Limit) int64 {
	if l.Step > 0 {
		return l.Step
	}
	return ceilDiv(int64(l.Period), l.Requests)
}

// missing is how many requests' tokens e misses at now.
func (e *entry) missing(now int64) int64 {
	if e.step <= 0 {
		return 0
	}
	return ceilDiv(e.fullAt-now, e.step)
}

// fewerMissing reports whether a should be evicted before b.
func fewerMissing(a, b *entry, now int64) bool {
	ma, mb := a.missing(now), b.missing(now)
	return ma < mb || ma == mb && a.fullAt < b.fullAt
}

// groupMagic starts every group value (format version 2; version 1, 0xb1, had no
// step and decodes as an empty group).
const groupMagic = 0xb2

// A group value: magic, count, then count × (u16 key length, key, i64 tokens,
// i64 last, i64 full-at, i64 step), little-endian.
func appendEntry(dst, key []byte, st State, fullAt, step int64) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(key)))
	dst = append(dst, key...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(st.Tokens))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(st.Last))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(fullAt))
	return binary.LittleEndian.AppendUint64(dst, uint64(step))
}

// decode appends the entries of a group value to dst. A value that is not a valid
// group (absent, foreign, truncated, more than GroupWays entries) decodes as an empty
// group, which the next write replaces.
func decode(dst []entry, v []byte) []entry {
	if len(v) < 2 || v[0] != groupMagic {
		return dst
	}
	n, v := int(v[1]), v[2:]
	if n > config.GroupWays {
		return dst
	}
	start := len(dst)
	for i := 0; i < n; i++ {
		if len(v) < 2 {
			return dst[:start]
		}
		kl := int(binary.LittleEndian.Uint16(v))
		if len(v) < 2+kl+32 {
			return dst[:start]
		}
		e := entry{key: v[2 : 2+kl]}
		v = v[2+kl:]
		e.st.Tokens = int64(binary.LittleEndian.Uint64(v))
		e.st.Last = int64(binary.LittleEndian.Uint64(v[8:]))
		e.fullAt = int64(binary.LittleEndian.Uint64(v[16:]))
		e.step = int64(binary.LittleEndian.Uint64(v[24:]))
		v = v[32:]
		dst = append(dst, e)
	}
	return dst
}
