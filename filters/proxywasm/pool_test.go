package proxywasm

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestStreamPool(t *testing.T) {
	type stream struct{ n int }
	var p StreamPool[stream]
	assert.Nil(t, p.Get(), "empty")
	a, b := &stream{1}, &stream{2}
	p.Put(a)
	p.Put(b)
	assert.Equal(t, 2, p.Len())
	assert.Same(t, b, p.Get(), "most recently finished first")
	assert.Same(t, a, p.Get())
	assert.Nil(t, p.Get())
	assert.Zero(t, p.Len())
	// Reuse does not allocate once the pool has room.
	p.Put(a)
	assert.Zero(t, testing.AllocsPerRun(100, func() { p.Put(p.Get()) }))
}
