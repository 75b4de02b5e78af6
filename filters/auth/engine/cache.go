package engine

import (
	"hash/maphash"
	"time"
	"unsafe"

	"github.com/meshplug/meshplug/filters/auth/config"
)

// Identity is an established caller identity. For JWTs it is computed once at
// verification and shared by cache hits, so a hit allocates nothing.
type Identity struct {
	Method   string // provider name, "api_keys", "basic_auth", "ext_authz"
	Consumer string // consumer name ("" if the consumer claim is absent or not a scalar)
	Claims   map[string]any
	// Headers are the identity headers to set (consumer, provider, claims, payload).
	Headers []Header
}

// Header is one header name (lower-case) and value.
type Header struct{ Name, Value string }

type cacheEntry struct {
	hash     uint64
	token    string
	provider int
	gen      uint64
	until    int64 // unix nanoseconds after which the entry is dead
	id       *Identity
	ref      bool
	used     bool
}

// TokenCache is a bounded cache of verified tokens with CLOCK eviction.
//
// Keys are a seeded hash of (provider, token); entries store the full token, which is compared
// on lookup, so a hash collision is a miss, never an acceptance. An entry lives until
// the token's exp plus clock skew, at most the configured max TTL, and only while the
// provider's key-set generation is unchanged. Get does no allocation, JSON or crypto.
// Eviction inspects at most 16 slots.
//
// Storage grows with the tokens stored, up to MaxEntries, and is not allocated up
// front: 4,096 entries (the default) are ~0.4 MB per worker VM once full, nothing for a
// configuration without JWTs (linear memory never shrinks, see docs/benchmarks.md).
//
// Caveat: not safe for concurrent use (a proxy-wasm VM is single-threaded).
type TokenCache struct {
	seed    uint64
	index   map[uint64]int32
	entries []cacheEntry
	max     int
	hand    int
	maxTTL  time.Duration
}

// NewTokenCache returns a cache for cfg.MaxEntries tokens (nil if 0: disabled; all
// methods accept a nil receiver).
func NewTokenCache(cfg config.TokenCache) *TokenCache {
	if cfg.MaxEntries <= 0 {
		return nil
	}
	return &TokenCache{
		seed:   maphash.Comparable(maphash.MakeSeed(), 0), // a random 64-bit seed
		index:  map[uint64]int32{},
		max:    cfg.MaxEntries,
		maxTTL: cfg.MaxTTL,
	}
}

func (c *TokenCache) key(provider int, token string) uint64 {
	return hashString(c.seed, token) ^ uint64(provider+1)*0x9e3779b97f4a7c15
}

// hashString is a seeded 64-bit hash that reads 8 bytes at a time. In a Go wasm guest,
// hash/maphash and string comparison walk tokens a byte at a time (~2.5 ns/byte, 1.5
// µs for a 600-byte JWT); this is several times faster. It is not collision-resistant
// against an attacker who knows the seed, and need not be: a collision is a cache
// miss (the full token is compared), never an acceptance.
func hashString(seed uint64, s string) uint64 {
	const m = 0x9e3779b97f4a7c15
	h := seed ^ uint64(len(s))*m
	p, n, i := unsafe.Pointer(unsafe.StringData(s)), len(s), 0
	// Plain pointer loads: slicing and encoding/binary cost bounds checks per word,
	// which the Go wasm backend does not remove (3-5x slower here).
	for ; i+8 <= n; i += 8 {
		h = (h ^ *(*uint64)(unsafe.Add(p, i))) * m
		h ^= h >> 29
	}
	var tail uint64
	for j := 0; i < n; i, j = i+1, j+8 {
		tail |= uint64(*(*byte)(unsafe.Add(p, i))) << j
	}
	h = (h ^ tail) * m
	return h ^ h>>32
}

// equalString compares two strings 8 bytes at a time (see hashString for why).
func equalString(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	p, q, n, i := unsafe.Pointer(unsafe.StringData(a)), unsafe.Pointer(unsafe.StringData(b)), len(a), 0
	for ; i+8 <= n; i += 8 {
		if *(*uint64)(unsafe.Add(p, i)) != *(*uint64)(unsafe.Add(q, i)) {
			return false
		}
	}
	for ; i < n; i++ {
		if *(*byte)(unsafe.Add(p, i)) != *(*byte)(unsafe.Add(q, i)) {
			return false
		}
	}
	return true
}

// Len is the number of entries.
func (c *TokenCache) Len() int {
	if c == nil {
		return 0
	}
	return len(c.index)
}

// Get returns the identity of token if it was verified for provider under key-set
// generation gen and is still valid at now.
func (c *TokenCache) Get(provider int, token string, gen uint64, now time.Time) (*Identity, bool) {
	if c == nil {
		return nil, false
	}
	h := c.key(provider, token)
	i, ok := c.index[h]
	if !ok {
		return nil, false
	}
	e := &c.entries[i]
	if e.provider != provider || e.gen != gen || !equalString(e.token, token) {
		return nil, false
	}
	if now.UnixNano() >= e.until {
		c.remove(int(i))
		return nil, false
	}
	e.ref = true
	return e.id, true
}

// Put stores a verified token. until is when the token stops being acceptable (exp +
// skew, or zero if it has no exp); the max TTL also applies.
func (c *TokenCache) Put(provider int, token string, gen uint64, until, now time.Time, id *Identity) {
	if c == nil {
		return
	}
	limit := now.Add(c.maxTTL)
	if until.IsZero() || until.After(limit) {
		until = limit
	}
	if !until.After(now) {
		return
	}
	h := c.key(provider, token)
	e := cacheEntry{hash: h, token: token, provider: provider, gen: gen, until: until.UnixNano(), id: id, used: true}
	if i, ok := c.index[h]; ok { // same token, or a colliding one: replace
		c.entries[i] = e
		return
	}
	if len(c.entries) < c.max {
		if len(c.entries) == cap(c.entries) { // grow by doubling, never past max
			grown := make([]cacheEntry, len(c.entries), min(c.max, max(16, 2*len(c.entries))))
			copy(grown, c.entries)
			c.entries = grown
		}
		c.index[h] = int32(len(c.entries))
		c.entries = append(c.entries, e)
		return
	}
	slot := c.victim(now.UnixNano())
	if old := &c.entries[slot]; old.used {
		delete(c.index, old.hash)
	}
	c.entries[slot] = e
	c.index[h] = int32(slot)
}

// victim picks a slot to reuse: an empty or dead one, else the first without its
// reference bit (clearing bits on the way), else, after 16 probes, the current one.
func (c *TokenCache) victim(now int64) int {
	n := len(c.entries)
	for probes := 0; ; probes++ {
		i := c.hand
		c.hand = (c.hand + 1) % n
		e := &c.entries[i]
		if !e.used || now >= e.until || !e.ref || probes >= 15 {
			return i
		}
		e.ref = false
	}
}

func (c *TokenCache) remove(i int) {
	e := &c.entries[i]
	delete(c.index, e.hash)
	*e = cacheEntry{}
}

// badSigEntries bounds the negative cache (per worker VM; 24 bytes an entry, allocated
// at the first bad signature).
const badSigEntries = 1024

// badSigCache remembers tokens whose signature did not verify, so a flood of one forged
// token costs one signature check per key-set generation, not one per request.
//
// It is direct-mapped (a new entry overwrites the slot's old one) and keyed by two
// independently seeded 64-bit hashes of the whole token (signing input and signature)
// plus the provider and its key-set generation: the token is not stored. A false
// match would refuse a good token as bad_signature; it needs a 128-bit collision
// under seeds the client does not know. A key-set change (rotation, refetch after an
// unknown kid) invalidates every entry of that provider.
//
// Caveat: not safe for concurrent use (a proxy-wasm VM is single-threaded).
type badSigCache struct {
	seed1, seed2 uint64
	slots        []badSig // nil until the first Add
	n            int
}

type badSig struct {
	h1, h2 uint64
	gen    uint64 // key-set generation << 16 | provider+1 (0 = empty slot)
}

func newBadSigCache(n int) *badSigCache {
	return &badSigCache{
		seed1: maphash.Comparable(maphash.MakeSeed(), 0),
		seed2: maphash.Comparable(maphash.MakeSeed(), 1),
		n:     n,
	}
}

func (c *badSigCache) entry(provider int, token string, gen uint64) (slot *badSig, want badSig) {
	h1, h2 := hashString(c.seed1, token), hashString(c.seed2, token)
	want = badSig{h1: h1, h2: h2, gen: gen<<16 | uint64(provider+1)&0xffff}
	return &c.slots[h1%uint64(len(c.slots))], want
}

// Has reports whether token failed signature verification for provider under gen.
func (c *badSigCache) Has(provider int, token string, gen uint64) bool {
	if c.slots == nil {
		return false
	}
	slot, want := c.entry(provider, token, gen)
	return *slot == want
}

// Add records a token whose signature failed.
func (c *badSigCache) Add(provider int, token string, gen uint64) {
	if c.slots == nil {
		c.slots = make([]badSig, c.n)
	}
	slot, want := c.entry(provider, token, gen)
	*slot = want
}
