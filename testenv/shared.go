package testenv

import (
	"sync"

	"github.com/meshplug/meshplug/filters/abi"
)

// sharedStore is shared data keyed by (vm_id, key), with proxy-wasm-cpp-host's CAS
// rules: one counter for all entries starting at 1 (skipping 0 on wrap); set with cas 0
// is unconditional; a non-zero cas must equal the entry's or the set fails with
// CasMismatch; a new key is created whatever cas says; get of a missing key is NotFound.
type sharedStore struct {
	mu   sync.Mutex
	cas  uint32
	data map[string]map[string]*sharedEntry
}

type sharedEntry struct {
	value []byte
	cas   uint32
}

func (s *sharedStore) init() {
	s.cas = 1
	s.data = map[string]map[string]*sharedEntry{}
}

func (s *sharedStore) nextCas() uint32 {
	c := s.cas
	s.cas++
	if s.cas == 0 {
		s.cas++
	}
	return c
}

func (s *sharedStore) get(vmID, key string) ([]byte, uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.data[vmID][key]
	if !ok {
		return nil, 0, false
	}
	return e.value, e.cas, true
}

func (s *sharedStore) set(vmID, key string, value []byte, cas uint32) abi.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.data[vmID]
	if m == nil {
		m = map[string]*sharedEntry{}
		s.data[vmID] = m
	}
	val := append([]byte(nil), value...)
	if e, ok := m[key]; ok {
		if cas != 0 && cas != e.cas {
			return abi.StatusCasMismatch
		}
		e.value, e.cas = val, s.nextCas()
		return abi.StatusOK
	}
	m[key] = &sharedEntry{value: val, cas: s.nextCas()}
	return abi.StatusOK
}

// SharedData returns the shared data entry of vmID and key, as a guest would see it.
func (h *Host) SharedData(vmID, key string) (value []byte, cas uint32, ok bool) {
	v, c, ok := h.shared.get(vmID, key)
	return append([]byte(nil), v...), c, ok
}

// SetSharedData sets a shared data entry with the guest's CAS rules.
func (h *Host) SetSharedData(vmID, key string, value []byte, cas uint32) abi.Status {
	return h.shared.set(vmID, key, value, cas)
}

// queueStore holds shared queues keyed by (vm_id, name). As in proxy-wasm-cpp-host,
// registering a name that exists returns the same token and moves the queue's owner to
// the registering VM and root context (the last registration wins); enqueue calls
// proxy_on_queue_ready(root context, token) on the owner's worker, asynchronously.
type queueStore struct {
	mu     sync.Mutex
	next   uint32
	byName map[[2]string]uint32
	queues map[uint32]*queue
}

type queue struct {
	owner *vm
	root  uint32 // the root context that registered it (gets proxy_on_queue_ready)
	items [][]byte
}

func (q *queueStore) init() {
	q.next = 1
	q.byName = map[[2]string]uint32{}
	q.queues = map[uint32]*queue{}
}

func (q *queueStore) register(v *vm, name string) uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := [2]string{v.vmID, name}
	if t, ok := q.byName[k]; ok {
		q.queues[t].owner, q.queues[t].root = v, v.cur.root
		return t
	}
	t := q.next
	q.next++
	if q.next == 0 {
		q.next = 1
	}
	q.byName[k] = t
	q.queues[t] = &queue{owner: v, root: v.cur.root}
	return t
}

func (q *queueStore) resolve(vmID, name string) (uint32, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t, ok := q.byName[[2]string{vmID, name}]
	return t, ok
}

func (q *queueStore) enqueue(token uint32, data []byte) abi.Status {
	q.mu.Lock()
	qu, ok := q.queues[token]
	if !ok {
		q.mu.Unlock()
		return abi.StatusNotFound
	}
	qu.items = append(qu.items, data)
	owner, rid := qu.owner, qu.root
	q.mu.Unlock()
	owner.w.post(func() {
		owner.onRoot(rid, func() { owner.call2(owner.fns.onQueueReady, uint64(owner.cur.id), uint64(token)) })
	})
	return abi.StatusOK
}

func (q *queueStore) dequeue(token uint32) ([]byte, abi.Status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qu, ok := q.queues[token]
	if !ok {
		return nil, abi.StatusNotFound
	}
	if len(qu.items) == 0 {
		return nil, abi.StatusEmpty
	}
	d := qu.items[0]
	qu.items = qu.items[1:]
	return d, abi.StatusOK
}
