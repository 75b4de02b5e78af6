package proxywasm

// StreamPool recycles a plugin's stream contexts: allocating one costs about a
// microsecond in a Go wasm guest, so a plugin hands out a finished stream again
// instead. NewHttpContext takes one with Get (nil: make a new one); OnHttpStreamDone
// clears what must not leak into the next request and gives it back with Put. The
// host calls neither after OnHttpStreamDone (a callout still pending for the stream is
// the plugin's to cancel or to ignore first). Not safe for concurrent use: a VM runs
// one callback at a time.
type StreamPool[T any] struct{ free []*T }

// Get returns a finished stream, most recently finished first, or nil when none is
// waiting.
func (p *StreamPool[T]) Get() *T {
	n := len(p.free)
	if n == 0 {
		return nil
	}
	s := p.free[n-1]
	p.free[n-1] = nil
	p.free = p.free[:n-1]
	return s
}

// Put gives back a finished stream.
func (p *StreamPool[T]) Put(s *T) { p.free = append(p.free, s) }

// Len is how many finished streams wait.
func (p *StreamPool[T]) Len() int { return len(p.free) }
