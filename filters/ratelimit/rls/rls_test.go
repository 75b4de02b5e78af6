package rls_test

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshplug/meshplug/filters/ratelimit/rls"
)

// TestRequestMatchesGeneratedTypes: the hand encoding parses with go-control-plane's
// generated RateLimitRequest into the same message (and, deterministic marshalling
// having the same field order, the same bytes).
func TestRequestMatchesGeneratedTypes(t *testing.T) {
	cases := []struct {
		name   string
		domain string
		descs  [][]rls.Entry
		hits   uint32
	}{
		{"empty", "", nil, 0},
		{"one", "meshplug", [][]rls.Entry{{{"generic_key", "per-user"}, {"user", "alice"}}}, 1},
		{"several", "d.o-m_1", [][]rls.Entry{{{"generic_key", "a"}}, {{"generic_key", "b"}, {"ip", "2001:db8::1"}, {"path", "/x?y"}}}, 7},
		{"empty value", "d", [][]rls.Entry{{{"k", ""}}}, 1},
		{"long value", "d", [][]rls.Entry{{{"k", string(make([]byte, 300))}}}, 1 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := rls.AppendRequest(nil, c.domain, c.descs, c.hits)
			var m rlsv3.RateLimitRequest
			require.NoError(t, proto.Unmarshal(got, &m))
			want := &rlsv3.RateLimitRequest{Domain: c.domain, HitsAddend: c.hits}
			for _, d := range c.descs {
				pd := &commonrl.RateLimitDescriptor{}
				for _, e := range d {
					pd.Entries = append(pd.Entries, &commonrl.RateLimitDescriptor_Entry{Key: e.Key, Value: e.Value})
				}
				want.Descriptors = append(want.Descriptors, pd)
			}
			assert.True(t, proto.Equal(want, &m), "decoded %v, want %v", &m, want)
			wb, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
			require.NoError(t, err)
			assert.Equal(t, string(wb), string(got))
		})
	}
}

// TestResponseMatchesGeneratedTypes: responses marshalled by the generated types
// decode to the same values, unknown fields (raw_body, dynamic_metadata, quota) skipped.
func TestResponseMatchesGeneratedTypes(t *testing.T) {
	meta, err := structpb.NewStruct(map[string]any{"a": "b"})
	require.NoError(t, err)
	msg := &rlsv3.RateLimitResponse{
		OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT,
		Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{Code: rlsv3.RateLimitResponse_OK, CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{Name: "n", RequestsPerUnit: 10, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE},
				LimitRemaining: 3, DurationUntilReset: durationpb.New(41*time.Second + 500*time.Millisecond)},
			{Code: rlsv3.RateLimitResponse_OVER_LIMIT, CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 1, Unit: rlsv3.RateLimitResponse_RateLimit_WEEK}},
			{Code: rlsv3.RateLimitResponse_OK},
		},
		ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "x-a", Value: "1"}, {Key: "x-raw", RawValue: []byte("r")}},
		RequestHeadersToAdd:  []*corev3.HeaderValue{{Key: "x-b", Value: "2"}},
		RawBody:              []byte("body"),
		DynamicMetadata:      meta,
		Quota:                &rlsv3.RateLimitResponse_Quota{Requests: 5},
	}
	b, err := proto.Marshal(msg)
	require.NoError(t, err)
	var r rls.Response
	require.NoError(t, r.Decode(b))
	assert.Equal(t, rls.CodeOverLimit, r.OverallCode)
	assert.Equal(t, []rls.Status{
		{Code: rls.CodeOK, HasLimit: true, RequestsPerUnit: 10, Unit: rls.UnitMinute, LimitRemaining: 3, DurationUntilReset: 41500 * time.Millisecond},
		{Code: rls.CodeOverLimit, HasLimit: true, RequestsPerUnit: 1, Unit: rls.UnitWeek},
		{Code: rls.CodeOK},
	}, r.Statuses)
	assert.Equal(t, []rls.Header{{"x-a", "1"}, {"x-raw", "r"}}, r.ResponseHeaders)
	assert.Equal(t, []rls.Header{{"x-b", "2"}}, r.RequestHeaders)

	// Reuse clears the previous message.
	require.NoError(t, r.Decode(nil))
	assert.Equal(t, rls.CodeUnknown, r.OverallCode)
	assert.Empty(t, r.Statuses)
	assert.Empty(t, r.ResponseHeaders)
}

func TestMalformedResponses(t *testing.T) {
	for name, b := range map[string][]byte{
		"truncated tag":      {0x80},
		"truncated length":   {0x12, 0x05, 0x08},
		"bad status inside":  {0x12, 0x02, 0x08, 0x80},
		"negative duration":  {0x12, 0x04, 0x22, 0x02, 0x08, 0xff},
		"end group mismatch": {0x0c},
	} {
		t.Run(name, func(t *testing.T) {
			var r rls.Response
			assert.Error(t, r.Decode(b))
		})
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	descs := [][]rls.Entry{{{"generic_key", "per-user"}, {"user", "alice"}}}
	var buf []byte
	for b.Loop() {
		buf = rls.AppendRequest(buf[:0], "meshplug", descs, 1)
	}
}
