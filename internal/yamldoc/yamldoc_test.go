package yamldoc_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/meshplug/meshplug/internal/yamldoc"
)

func TestSplit(t *testing.T) {
	in := "# header\n---\na: 1\n--- # second\nb: 2\n---\n# only a comment\n---\nc: |\n  x---y\n  --- not a separator inside a block? it is at column 2\n"
	docs := yamldoc.Split([]byte(in))
	if assert.Len(t, docs, 3) {
		assert.Equal(t, "a: 1\n", string(docs[0].Data))
		assert.Equal(t, 3, docs[0].Line)
		assert.Equal(t, "b: 2\n", string(docs[1].Data))
		assert.Equal(t, 5, docs[1].Line)
		assert.Equal(t, 9, docs[2].Line)
	}
	assert.Len(t, yamldoc.Split([]byte("a: 1")), 1)
	assert.Empty(t, yamldoc.Split([]byte("\n# x\n---\n")))
}
