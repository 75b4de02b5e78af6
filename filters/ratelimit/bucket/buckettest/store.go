// Package buckettest is an in-memory bucket.Store with the semantics of
// proxy-wasm-cpp-host's SharedData (src/shared_data.cc): one cas counter for all
// entries (starting at 1, skipping 0); a set with cas 0 is unconditional; a non-zero
// cas must equal the entry's or the set fails with CasMismatch; a set on an absent key
// creates it whatever cas says; a get of an absent key is NotFound.
package buckettest

import (
	"strings"
	"sync"

	"github.com/meshplug/meshplug/filters/abi"
)

// Store is safe for concurrent use.
type Store struct {
	mu  sync.Mutex
	cas uint32
	m   map[string]*entry
	// AfterGet, if set, runs after every Get (outside the lock): tests interleave
	// other VMs' updates there.
	AfterGet func(key string)
}

type entry struct {
	value []byte
	cas   uint32
}

// Get appends key's value to dst and returns it with the entry's cas.
func (s *Store) Get(dst []byte, key string) ([]byte, uint32, error) {
	s.mu.Lock()
	e, ok := s.m[key]
	v := dst
	var c uint32
	if ok {
		v, c = append(dst, e.value...), e.cas
	}
	s.mu.Unlock()
	if s.AfterGet != nil {
		s.AfterGet(key)
	}
	if !ok {
		return dst, 0, abi.StatusNotFound
	}
	return v, c, nil
}

// Set stores value under key with cpp-host's CAS rules.
func (s *Store) Set(key string, value []byte, cas uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m, s.cas = map[string]*entry{}, 1
	}
	e, ok := s.m[key]
	if ok && cas != 0 && cas != e.cas {
		return abi.StatusCasMismatch
	}
	if !ok {
		e = &entry{}
		s.m[strings.Clone(key)] = e
	}
	e.value, e.cas = append([]byte(nil), value...), s.cas
	s.cas++
	if s.cas == 0 {
		s.cas = 1
	}
	return nil
}

// Len is the number of entries.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
