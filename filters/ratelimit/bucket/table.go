package bucket

import (
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

	gkey  []byte
	key   []byte
	ents  []entry
	read  []byte // the group as read
	value []byte // the group to write
}

type entry struct {
	key    []byte // aliases the value read from the store
	st     State
	fullAt int64
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
// value group creation uses (see the package comment).
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
	return nil
}

// Group returns the shared-data key of key's group, and the key as stored.
func (t *Table) Group(key []byte) (group string, stored []byte) {
	stored = key
	if len(key) > MaxKeyBytes {
		sum := sha256.Sum256(key)
		t.key = append(append(t.key[:0], 0xff), sum[:]...)
		stored = t.key
	}
	h := uint64(14695981039346656037)
	for _, b := range stored {
		h ^= uint64(b)
		h *= 1099511628211
	}
	t.gkey = strconv.AppendUint(append(t.gkey[:0], t.prefix...), h%t.groups, 10)
	return unsafe.String(unsafe.SliceData(t.gkey), len(t.gkey)), stored
}

// Take takes one request's tokens from key's bucket under limit l at now (ns), in
// one CAS update of the key's group.
func (t *Table) Take(key []byte, l *config.Limit, now int64) (Result, error) {
	var res Result
	if t.foreignCas == 0 {
		return res, errors.New("ratelimit: bucket table used before Init")
	}
	gk, key := t.Group(key)
	for attempt := 0; attempt < MaxAttempts; attempt++ {
		val, cas, err := t.store.Get(t.read[:0], gk)
		t.read = val
		create := false
		switch {
		case errors.Is(err, abi.StatusNotFound):
			create, val = true, nil
		case err != nil:
			return res, fmt.Errorf("ratelimit: reading shared data %s: %w", gk, err)
		}
		t.ents = decode(t.ents[:0], val)
		own := -1
		for i := range t.ents {
			if string(t.ents[i].key) == string(key) {
				own = i
				break
			}
		}
		st := Fresh(l, now)
		if own >= 0 {
			st = t.ents[own].st
		}
		st, res.Outcome = Take(l, st, now)
		if !res.Allowed {
			// The bucket was empty when read: nothing to write.
			res.Added, res.Removed, res.Evicted = 0, 0, 0
			return res, nil
		}
		t.value, res.Added, res.Removed, res.Evicted = t.rebuild(t.value[:0], own, key, l, st, now)
		if create {
			cas = t.foreignCas
		}
		err = t.store.Set(gk, t.value, cas)
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
// are dropped; a new key in a full group evicts the bucket closest to full.
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
		if evict < 0 || e.fullAt < t.ents[evict].fullAt {
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
		dst = appendEntry(dst, e.key, e.st, e.fullAt)
	}
	dst = appendEntry(dst, key, st, FullAt(l, st))
	return dst, added, removed, evicted
}

// groupMagic starts every group value (format version 1).
const groupMagic = 0xb1

// A group value: magic, count, then count × (u16 key length, key, i64 tokens,
// i64 last, i64 full-at), little-endian.
func appendEntry(dst, key []byte, st State, fullAt int64) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(key)))
	dst = append(dst, key...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(st.Tokens))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(st.Last))
	return binary.LittleEndian.AppendUint64(dst, uint64(fullAt))
}

// decode appends the entries of a group value to dst. A value that is not a valid
// group (absent, foreign, truncated) decodes as an empty group, which the next write
// replaces.
func decode(dst []entry, v []byte) []entry {
	if len(v) < 2 || v[0] != groupMagic {
		return dst
	}
	n, v := int(v[1]), v[2:]
	start := len(dst)
	for i := 0; i < n; i++ {
		if len(v) < 2 {
			return dst[:start]
		}
		kl := int(binary.LittleEndian.Uint16(v))
		if len(v) < 2+kl+24 {
			return dst[:start]
		}
		e := entry{key: v[2 : 2+kl]}
		v = v[2+kl:]
		e.st.Tokens = int64(binary.LittleEndian.Uint64(v))
		e.st.Last = int64(binary.LittleEndian.Uint64(v[8:]))
		e.fullAt = int64(binary.LittleEndian.Uint64(v[16:]))
		v = v[24:]
		dst = append(dst, e)
	}
	return dst
}
