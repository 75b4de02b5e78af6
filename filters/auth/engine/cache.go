package engine

import (
	"cmp"
	"hash/maphash"
	"math"
	"time"
	"unsafe"

	"github.com/meshplug/meshplug/filters/auth/config"
)

// Identity is an established caller identity. For JWTs it is computed once at
// verification and shared by cache hits, so a hit allocates nothing.
type Identity struct {
	Method   string // provider name, "api_keys", "basic_auth", "ext_authz"
	Consumer string // consumer name ("" if the consumer claim is absent or not a scalar)
	// Claims are a JWT's claims that rules' required_claims name (nil if none does):
	// the cache keeps an identity as long as its token, so it keeps no more.
	Claims map[string]any
	// Headers are the identity headers to set (consumer, provider, claims, payload).
	Headers []Header
	// bytes is what the identity holds apart from its token, as the token cache
	// counts it (set by jwtIdentity).
	bytes int
}

// Header is one header name (lower-case) and value.
type Header struct{ Name, Value string }

type cacheEntry struct {
	hash     uint64
	token    string
	provider int32
	cost     int32 // bytes counted against max_bytes (entryCost)
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
// Storage grows with the tokens stored and is not allocated up front (nothing for a
// configuration without JWTs). It is bounded twice: MaxEntries entries and MaxBytes
// bytes, each entry counted as entryCost (its token, its identity and a fixed
// overhead, an upper estimate of the live heap it holds); a Put that would pass
// either bound evicts entries (CLOCK) until it fits. Linear memory never shrinks, so
// MaxBytes is what makes a worker's memory predictable (docs/benchmarks.md).
//
// Caveat: not safe for concurrent use (a proxy-wasm VM is single-threaded).
type TokenCache struct {
	seed     uint64
	index    map[uint64]int32
	entries  []cacheEntry
	free     []int32 // slots of entries that are not used (removed, evicted)
	max      int
	maxBytes int
	bytes    int // sum of the used entries' cost
	hand     int
	maxTTL   time.Duration
}

// NewTokenCache returns a cache for cfg.MaxEntries tokens (nil if 0: disabled; all
// methods accept a nil receiver).
func NewTokenCache(cfg config.TokenCache) *TokenCache {
	if cfg.MaxEntries <= 0 {
		return nil
	}
	return &TokenCache{
		seed:     maphash.Comparable(maphash.MakeSeed(), 0), // a random 64-bit seed
		index:    map[uint64]int32{},
		max:      cfg.MaxEntries,
		maxBytes: cmp.Or(cfg.MaxBytes, math.MaxInt),
		maxTTL:   cfg.MaxTTL,
	}
}

// entryOverhead is what an entry holds besides its token's bytes and its identity's:
// the cacheEntry (64 bytes, twice that while the slice grows by doubling), its index
// slot (a map[uint64]int32 slot with the map's load factor and growth), the Identity
// struct and the token's string header. Measured through meshplug.wasm
// (TestBundleTokenCacheMemory checks the live heap against the count).
const entryOverhead = 320

// entryCost is the number of bytes an entry with token and id is counted for: the
// token rounded up as Go's allocator rounds (size classes waste at most 1/8), the
// identity's own count and the overhead.
func entryCost(token string, id *Identity) int {
	n := len(token)
	return n + n/8 + id.bytes + entryOverhead
}

// Bytes is the sum of the entries' counted bytes (at most MaxBytes).
func (c *TokenCache) Bytes() int {
	if c == nil {
		return 0
	}
	return c.bytes
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
	if int(e.provider) != provider || e.gen != gen || !equalString(e.token, token) {
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
// skew, or zero if it has no exp); the max TTL also applies. Entries are evicted until
// the new one fits both bounds; an entry counted at more than MaxBytes is not stored.
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
	cost := entryCost(token, id)
	if cost > c.maxBytes {
		return
	}
	h := c.key(provider, token)
	e := cacheEntry{hash: h, token: token, provider: int32(provider), cost: int32(cost), gen: gen, until: until.UnixNano(), id: id, used: true}
	if i, ok := c.index[h]; ok { // same token, or a colliding one: replace
		c.remove(int(i))
	}
	for c.bytes+cost > c.maxBytes { // evict by bytes (c.bytes > 0: a used entry exists)
		if i := c.victim(now.UnixNano()); c.entries[i].used {
			c.remove(i)
		}
	}
	var slot int
	switch {
	case len(c.free) > 0:
		slot = int(c.free[len(c.free)-1])
		c.free = c.free[:len(c.free)-1]
	case len(c.entries) < c.max:
		if len(c.entries) == cap(c.entries) { // grow by doubling, never past max
			grown := make([]cacheEntry, len(c.entries), min(c.max, max(16, 2*len(c.entries))))
			copy(grown, c.entries)
			c.entries = grown
		}
		slot = len(c.entries)
		c.entries = c.entries[:slot+1]
	default: // full by entries, no free slot: every slot is used
		slot = c.victim(now.UnixNano())
		c.remove(slot)
		c.free = c.free[:len(c.free)-1] // remove pushed it; it is taken at once
	}
	c.entries[slot] = e
	c.index[h] = int32(slot)
	c.bytes += cost
}

// victim picks a slot to reuse: an empty or dead one, else the first without its
// reference bit (clearing bits on the way), else, after 16 probes, the current one.
// An empty slot it returns is already on the free list.
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

// remove empties slot i (which must be used) and puts it on the free list.
func (c *TokenCache) remove(i int) {
	e := &c.entries[i]
	delete(c.index, e.hash)
	c.bytes -= int(e.cost)
	*e = cacheEntry{}
	c.free = append(c.free, int32(i))
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
