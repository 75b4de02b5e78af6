package engine_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/ratelimit/bucket"
	"github.com/meshplug/meshplug/filters/ratelimit/bucket/buckettest"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
	"github.com/meshplug/meshplug/filters/ratelimit/engine"
	"github.com/meshplug/meshplug/filters/ratelimit/engine/enginetest"
)

// native runs one request through the read step and the engine, and returns what the
// client would get: status (200 = passed), gRPC status (-1 none) and headers.
type native struct {
	cfg *config.Config
	eng *engine.Engine
	req engine.Request
	v   engine.Verdict
}

func newNative(t *testing.T, cfgJSON string) *native {
	cfg, err := config.Parse([]byte(cfgJSON))
	require.NoError(t, err)
	tb := bucket.NewTable(&buckettest.Store{}, "test", cfg.Groups)
	require.NoError(t, tb.Init(nil))
	return &native{cfg: cfg, eng: engine.New(cfg, tb)}
}

func (n *native) do(r enginetest.Request, now int64) (status, grpc int, headers map[string]string) {
	method, path, src := r.Method, r.Path, r.Source
	if method == "" {
		method = "GET"
	}
	if path == "" {
		path = "/"
	}
	if src == "" {
		src = enginetest.DefaultSource
	}
	pairs := []abi.Pair{{Key: ":method", Value: method}, {Key: ":path", Value: path}, {Key: ":authority", Value: "example.com"}}
	for _, h := range r.Headers {
		pairs = append(pairs, abi.Pair{Key: h[0], Value: h[1]})
	}
	n.req.Read(n.cfg, abi.PairsView(abi.EncodePairs(pairs)), src)
	n.eng.Decide(&n.req, now, &n.v)
	headers = map[string]string{}
	if n.v.Limited {
		resp := engine.Reject(n.cfg, &n.req, &n.v, nil)
		for _, h := range resp.Headers {
			headers[h.Key] = h.Value
		}
		if resp.GRPCStatus != abi.GrpcStatusNone {
			return 200, int(resp.GRPCStatus), headers
		}
		return resp.Status, -1, headers
	}
	if n.cfg.HeadersOnAllowed {
		for _, h := range engine.AppendHeaders(nil, n.cfg, &n.v) {
			headers[h.Key] = h.Value
		}
	}
	return 200, -1, headers
}

func TestDecisionTable(t *testing.T) {
	for _, c := range enginetest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			n := newNative(t, c.Config)
			now := enginetest.Start.UnixNano()
			for i, s := range c.Steps {
				now += int64(s.Advance)
				status, grpc, headers := n.do(s.Req, now)
				enginetest.Check(t, i, s, status, grpc, headers)
			}
		})
	}
}

func TestVerdictEventsAndTableEffects(t *testing.T) {
	n := newNative(t, `{"rules":[{"name":"a","descriptors":[{"key":"k","value":"x"}],"limit":{"requests":1,"unit":"minute"}},
		{"name":"b","descriptors":[{"key":"k","value":"x"}],"limit":{"requests":1,"unit":"minute"},"shadow":true}]}`)
	now := enginetest.Start.UnixNano()
	n.do(enginetest.Request{}, now)
	assert.Equal(t, []engine.RuleEvent{{Rule: n.cfg.Rules[0], Event: engine.EventAllowed}, {Rule: n.cfg.Rules[1], Event: engine.EventAllowed}}, n.v.Events)
	assert.Equal(t, 2, n.v.Added)
	n.do(enginetest.Request{}, now)
	assert.True(t, n.v.Limited)
	assert.Equal(t, []engine.RuleEvent{{Rule: n.cfg.Rules[0], Event: engine.EventLimited}, {Rule: n.cfg.Rules[1], Event: engine.EventShadowLimited}}, n.v.Events)
}

type failingTable struct{}

func (failingTable) Peek(*bucket.Op, []byte, *config.Limit, int64) (bucket.Outcome, error) {
	return bucket.Outcome{}, fmt.Errorf("boom")
}

func (failingTable) Commit(*bucket.Op) (bucket.Result, error) {
	return bucket.Result{}, fmt.Errorf("boom")
}

func TestStoreFailureFailsOpen(t *testing.T) {
	cfg, err := config.Parse([]byte(`{"rules":[{"name":"a","descriptors":[{"key":"k","value":"x"}],"limit":{"requests":1,"unit":"minute"}}]}`))
	require.NoError(t, err)
	e := engine.New(cfg, failingTable{})
	var r engine.Request
	r.Read(cfg, abi.PairsView(abi.EncodePairs([]abi.Pair{{Key: ":path", Value: "/"}})), "")
	var v engine.Verdict
	e.Decide(&r, 1, &v)
	assert.False(t, v.Limited)
	assert.EqualError(t, v.Err, "boom")
}

func TestDecideDoesNotAllocate(t *testing.T) {
	n := newNative(t, `{"rules":[{"name":"r","descriptors":[{"key":"u","header":"x-consumer"},{"key":"m","method":true}],"limit":{"requests":1000000,"unit":"second"},
		"overrides":[{"values":{"u":"gold-*"},"limit":{"requests":10000000,"unit":"second"}}]}]}`)
	view := abi.PairsView(abi.EncodePairs([]abi.Pair{{Key: ":method", Value: "GET"}, {Key: ":path", Value: "/a?b=c"}, {Key: "x-consumer", Value: "gold-7"}}))
	now := enginetest.Start.UnixNano()
	n.req.Read(n.cfg, view, "")
	n.eng.Decide(&n.req, now, &n.v)
	allocs := testing.AllocsPerRun(100, func() {
		n.req.Read(n.cfg, view, "")
		n.eng.Decide(&n.req, now, &n.v)
	})
	// The fake store copies values on Get and Set (2 allocations); the engine adds none.
	assert.LessOrEqual(t, allocs, 3.0)
}

func FuzzRead(f *testing.F) {
	cfg, err := config.Parse([]byte(`{"xff_num_trusted_hops":2,"rules":[{"name":"r","descriptors":[
		{"key":"h","header":"x-user"},{"key":"c","cookie":"s"},{"key":"q","query_param":"u"},{"key":"ip","client_address":true},{"key":"p","path":true}],
		"limit":{"requests":1,"unit":"second"},"missing_key":"anonymous"}]}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("/a?u=%41&u=b", "s=1; s=2", "1.2.3.4, 5.6.7.8", "x", "10.0.0.1:80")
	f.Add("/?%zz=%", "=;;s", ",,,", "", "[::1]:1")
	f.Fuzz(func(t *testing.T, path, cookie, xff, user, src string) {
		var r engine.Request
		r.Read(cfg, abi.PairsView(abi.EncodePairs([]abi.Pair{{Key: ":path", Value: path}, {Key: "cookie", Value: cookie},
			{Key: "x-forwarded-for", Value: xff}, {Key: "x-user", Value: user}, {Key: "x-user", Value: user}})), src)
		tb := bucket.NewTable(&buckettest.Store{}, "f", cfg.Groups)
		if err := tb.Init(nil); err != nil {
			t.Fatal(err)
		}
		var v engine.Verdict
		engine.New(cfg, tb).Decide(&r, 1, &v)
		if v.Err != nil || v.Limited && v.Refused == "" {
			t.Fatalf("a fresh bucket limited: %+v", v)
		}
	})
}
