package controller

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConditionMessageTruncated(t *testing.T) {
	var s status
	s.set(Ready, false, ReasonApplyFailed, strings.Repeat("é", maxMessage))
	require.Len(t, s.conds, 1)
	m := s.conds[0].Message
	assert.LessOrEqual(t, len(m), maxMessage)
	assert.True(t, strings.HasSuffix(m, " (truncated)"))
	assert.True(t, utf8.ValidString(m))
}
