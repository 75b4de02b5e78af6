package main_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshplug/meshplug/filters/ratelimit/config"
	"github.com/meshplug/meshplug/testenv"
)

// rawCodec lets the fake service answer any bytes (malformed replies included).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// fakeRLS is a gRPC server on loopback that records the RateLimitRequests it gets
// and answers with answer (a marshalled RateLimitResponse, raw bytes, or an error).
type fakeRLS struct {
	mu     sync.Mutex
	got    []*rlsv3.RateLimitRequest
	method string
	answer func(*rlsv3.RateLimitRequest) ([]byte, error)
	addr   string
}

func startFakeRLS(t testing.TB, answer func(*rlsv3.RateLimitRequest) ([]byte, error)) *fakeRLS {
	t.Helper()
	f := &fakeRLS{answer: answer}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(ss)
		var b []byte
		if err := ss.RecvMsg(&b); err != nil {
			return err
		}
		var req rlsv3.RateLimitRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		f.mu.Lock()
		f.got, f.method = append(f.got, &req), method
		answer := f.answer
		f.mu.Unlock()
		out, err := answer(&req)
		if err != nil {
			return err
		}
		return ss.SendMsg(&out)
	}))
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	f.addr = l.Addr().String()
	return f
}

func (f *fakeRLS) requests() []*rlsv3.RateLimitRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*rlsv3.RateLimitRequest(nil), f.got...)
}

func marshal(m *rlsv3.RateLimitResponse) ([]byte, error) { return proto.Marshal(m) }

func startGlobal(t *testing.T, workers int, cfg string, clusters map[string]string) *testenv.Host {
	t.Helper()
	return testenv.NewForTest(t, testenv.Options{Workers: workers, Clusters: clusters},
		testenv.Plugin{Name: "ratelimit", VMID: "rl", Wasm: rlWasm(t), Config: []byte(cfg)})
}

const globalCfg = `{"mode":"global","domain":"shop","global":{"cluster":"rls","timeout":"5s"%s},"rules":[
	{"name":"per-user","descriptors":[{"key":"user","header":"x-user"}],"limit":{"requests":10,"unit":"minute"}},
	{"name":"probe","match":{"prefix":"/probe"},"descriptors":[{"key":"all","value":"1"}],"limit":{"requests":1,"unit":"second"},"shadow":true}]}`

func cfgWith(extra string) string { return sprintf(globalCfg, extra) }

// TestGlobalRequestAndOverLimit: the descriptors reach the service as
// RateLimitRequest{domain, descriptors (generic_key = rule name first), hits_addend 1};
// OVER_LIMIT is a 429 whose Retry-After and RateLimit-* come from the over-limit
// status, with the service's response_headers_to_add.
func TestGlobalRequestAndOverLimit(t *testing.T) {
	f := startFakeRLS(t, func(*rlsv3.RateLimitRequest) ([]byte, error) {
		return marshal(&rlsv3.RateLimitResponse{
			OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT,
			Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{
				Code:               rlsv3.RateLimitResponse_OVER_LIMIT,
				CurrentLimit:       &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 10, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE},
				DurationUntilReset: durationpb.New(12500 * time.Millisecond),
			}},
			ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "x-service", Value: "says-no"}, {Key: "bad\r\nname", Value: "x"}, {Key: "x-split", Value: "a\r\nb"}},
		})
	})
	h := startGlobal(t, 2, cfgWith(""), map[string]string{"rls": f.addr})
	resp := h.MustDo(t, testenv.Request{Path: "/cart", Headers: [][2]string{{"x-user", "alice"}}})
	assert.Equal(t, 429, resp.Status)
	assert.True(t, resp.LocalReply)
	assert.Nil(t, resp.Upstream)
	assert.Equal(t, "meshplug_ratelimit_limited", resp.Details)
	hdr := func(n string) string { v, _ := resp.Headers.Get(n); return v }
	assert.Equal(t, "13", hdr("retry-after"))
	assert.Equal(t, "10, 10;w=60", hdr("ratelimit-limit"))
	assert.Equal(t, "0", hdr("ratelimit-remaining"))
	assert.Equal(t, "13", hdr("ratelimit-reset"))
	assert.Equal(t, "says-no", hdr("x-service"))
	_, split := resp.Headers.Get("x-split")
	assert.False(t, split, "a header value with CR/LF from the service is dropped")

	reqs := f.requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", f.method)
	assert.Equal(t, "shop", reqs[0].Domain)
	assert.Equal(t, uint32(1), reqs[0].HitsAddend)
	require.Len(t, reqs[0].Descriptors, 1, "the probe rule does not match /cart")
	e := reqs[0].Descriptors[0].Entries
	require.Len(t, e, 2)
	assert.Equal(t, [4]string{"generic_key", "per-user", "user", "alice"}, [4]string{e[0].Key, e[0].Value, e[1].Key, e[1].Value})
	m, _ := h.Metric("meshplug.ratelimit.service.over_limit")
	assert.Equal(t, int64(1), m)
	m, _ = h.Metric("meshplug.ratelimit.per-user.limited")
	assert.Equal(t, int64(1), m)

	// gRPC requests get grpc-status 8.
	resp = h.MustDo(t, testenv.Request{Path: "/pkg.S/M", Headers: [][2]string{{"x-user", "alice"}, {"content-type", "application/grpc"}}})
	require.NotNil(t, resp.GrpcStatus)
	assert.Equal(t, uint32(8), *resp.GrpcStatus)
}

// TestGlobalOK: an OK answer lets the request through with request_headers_to_add
// replacing the client's copies, and response_headers_to_add on the response;
// headers_on_allowed reports the status with the fewest remaining.
func TestGlobalOK(t *testing.T) {
	f := startFakeRLS(t, func(r *rlsv3.RateLimitRequest) ([]byte, error) {
		st := []*rlsv3.RateLimitResponse_DescriptorStatus{}
		for i := range r.Descriptors {
			st = append(st, &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK,
				CurrentLimit:   &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 10, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE},
				LimitRemaining: uint32(7 - i), DurationUntilReset: durationpb.New(30 * time.Second)})
		}
		return marshal(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: st,
			RequestHeadersToAdd:  []*corev3.HeaderValue{{Key: "x-ratelimit-checked", Value: "yes"}, {Key: ":path", Value: "/admin"}},
			ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "x-quota", Value: "q"}}})
	})
	h := startGlobal(t, 1, `{"mode":"global","headers_on_allowed":true,"global":{"cluster":"rls","timeout":"5s"},"rules":[
		{"name":"a","descriptors":[{"key":"user","header":"x-user"}],"limit":{"requests":10,"unit":"minute"}},
		{"name":"b","descriptors":[{"key":"m","method":true}],"limit":{"requests":10,"unit":"minute"}}]}`, map[string]string{"rls": f.addr})
	resp := h.MustDo(t, testenv.Request{Path: "/x", Headers: [][2]string{{"x-user", "bob"}, {"x-ratelimit-checked", "forged"}}})
	require.NotNil(t, resp.Upstream)
	assert.Equal(t, 200, resp.Status)
	var checked []string
	for _, p := range resp.Upstream.Headers {
		if p.Key == "x-ratelimit-checked" {
			checked = append(checked, p.Value)
		}
	}
	assert.Equal(t, []string{"yes"}, checked, "the service's request header replaces the client's")
	assert.Equal(t, "/x", resp.Upstream.Path, "pseudo-headers from the service are dropped")
	v, _ := resp.Headers.Get("x-quota")
	assert.Equal(t, "q", v)
	v, _ = resp.Headers.Get("ratelimit-remaining")
	assert.Equal(t, "6", v)
	require.Len(t, f.requests(), 1)
	assert.Len(t, f.requests()[0].Descriptors, 2)
	m, _ := h.Metric("meshplug.ratelimit.service.ok")
	assert.Equal(t, int64(1), m)
}

// TestGlobalShadowAndMissingKey: a shadow rule's over-limit status does not reject; a
// request without the key of a missing_key "deny" rule is rejected without a call, one
// with "allow" sends no descriptor (and no call when nothing is left).
func TestGlobalShadowAndMissingKey(t *testing.T) {
	f := startFakeRLS(t, func(r *rlsv3.RateLimitRequest) ([]byte, error) {
		return marshal(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT,
			Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: rlsv3.RateLimitResponse_OVER_LIMIT}}})
	})
	h := startGlobal(t, 1, `{"mode":"global","global":{"cluster":"rls","timeout":"5s"},"rules":[
		{"name":"probe","match":{"prefix":"/probe"},"descriptors":[{"key":"all","value":"1"}],"limit":{"requests":1,"unit":"second"},"shadow":true},
		{"name":"strict","match":{"prefix":"/strict"},"descriptors":[{"key":"user","header":"x-user"}],"limit":{"requests":1,"unit":"second"},"missing_key":"deny"},
		{"name":"lenient","match":{"prefix":"/lenient"},"descriptors":[{"key":"user","header":"x-user"}],"limit":{"requests":1,"unit":"second"}}]}`,
		map[string]string{"rls": f.addr})
	resp := h.MustDo(t, testenv.Request{Path: "/probe"})
	assert.NotNil(t, resp.Upstream, "shadow rules never reject")
	m, _ := h.Metric("meshplug.ratelimit.probe.shadow_limited")
	assert.Equal(t, int64(1), m)

	resp = h.MustDo(t, testenv.Request{Path: "/strict"})
	assert.Equal(t, 429, resp.Status)
	assert.Equal(t, "meshplug_ratelimit_missing_key", resp.Details)
	resp = h.MustDo(t, testenv.Request{Path: "/lenient"})
	assert.NotNil(t, resp.Upstream)
	assert.Len(t, f.requests(), 1, "only the /probe request called the service")
}

// TestGlobalFailureModes: a service that cannot answer (error status, malformed reply,
// statuses not matching the descriptors, timeout, no such cluster, nothing listening)
// lets requests pass by default and rejects them with failure_mode_deny; both count
// service.error, the first also failure_mode_allowed.
func TestGlobalFailureModes(t *testing.T) {
	errorSvc := startFakeRLS(t, func(*rlsv3.RateLimitRequest) ([]byte, error) {
		return nil, status.Error(codes.Unavailable, "redis down")
	})
	junkSvc := startFakeRLS(t, func(*rlsv3.RateLimitRequest) ([]byte, error) { return []byte{0x12, 0x05, 0x08}, nil })
	countSvc := startFakeRLS(t, func(*rlsv3.RateLimitRequest) ([]byte, error) {
		return marshal(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT,
			Statuses: make([]*rlsv3.RateLimitResponse_DescriptorStatus, 3)})
	})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slowSvc := startFakeRLS(t, func(*rlsv3.RateLimitRequest) ([]byte, error) {
		<-release
		return nil, errors.New("late")
	})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := closed.Addr().String()
	require.NoError(t, closed.Close())
	clusters := map[string]string{"error": errorSvc.addr, "junk": junkSvc.addr, "count": countSvc.addr, "slow": slowSvc.addr, "dead": deadAddr}

	for _, cluster := range []string{"error", "junk", "count", "slow", "dead", "no-such-cluster"} {
		for _, deny := range []bool{false, true} {
			name := cluster
			if deny {
				name += "/deny"
			}
			t.Run(name, func(t *testing.T) {
				cfg := sprintf(`{"mode":"global","global":{"cluster":%q,"timeout":"200ms","failure_mode_deny":%v},"rules":[
					{"name":"u","descriptors":[{"key":"user","header":"x-user"}],"limit":{"requests":1,"unit":"second"}}]}`, cluster, deny)
				h := startGlobal(t, 1, cfg, clusters)
				resp := h.MustDo(t, testenv.Request{Headers: [][2]string{{"x-user", "a"}}})
				grpcResp := h.MustDo(t, testenv.Request{Path: "/p.S/M", Headers: [][2]string{{"x-user", "a"}, {"content-type", "application/grpc"}}})
				errs, _ := h.Metric("meshplug.ratelimit.service.error")
				allowed, _ := h.Metric("meshplug.ratelimit.service.failure_mode_allowed")
				assert.Equal(t, int64(2), errs)
				if deny {
					assert.Equal(t, 500, resp.Status)
					assert.Equal(t, "meshplug_ratelimit_service_error", resp.Details)
					assert.JSONEq(t, `{"error":"rate_limit_service_unavailable","message":"rate limit service unavailable"}`, string(resp.Body))
					require.NotNil(t, grpcResp.GrpcStatus)
					assert.Equal(t, uint32(14), *grpcResp.GrpcStatus)
					assert.Equal(t, int64(0), allowed)
				} else {
					assert.NotNil(t, resp.Upstream)
					assert.NotNil(t, grpcResp.Upstream)
					assert.Equal(t, int64(2), allowed)
				}
			})
		}
	}
}

func TestGlobalConfigErrors(t *testing.T) {
	for _, c := range []struct{ cfg, want string }{
		{`{"mode":"global","rules":[{"name":"a","descriptors":[{"key":"k","value":"v"}],"limit":{"requests":1,"unit":"second"}}]}`, "global: required"},
		{`{"mode":"global","global":{"cluster":""},"rules":[{"name":"a","descriptors":[{"key":"k","value":"v"}],"limit":{"requests":1,"unit":"second"}}]}`, "global.cluster: required"},
		{`{"mode":"global","global":{"cluster":"c","timeout":"2m"},"rules":[{"name":"a","descriptors":[{"key":"k","value":"v"}],"limit":{"requests":1,"unit":"second"}}]}`, "global.timeout"},
		{`{"global":{"cluster":"c"},"rules":[{"name":"a","descriptors":[{"key":"k","value":"v"}],"limit":{"requests":1,"unit":"second"}}]}`, "global: only with mode"},
		{`{"mode":"global","global":{"cluster":"c"},"rules":[{"name":"a","descriptors":[{"key":"k","value":"v"}],"limit":{"requests":1,"per":"2s"}}]}`, "rules[0].limit.per"},
		{`{"mode":"global","global":{"cluster":"c"},"rules":[{"name":"a","descriptors":[{"key":"k","value":"v"}],"limit":{"requests":1,"unit":"second","burst":5}}]}`, "rules[0].limit.burst"},
		{`{"mode":"global","global":{"cluster":"c"},"rules":[{"name":"a","missing_key":"anonymous","descriptors":[{"key":"k","header":"x"}],"limit":{"requests":1,"unit":"second"}}]}`, "rules[0].missing_key"},
		{`{"mode":"global","global":{"cluster":"c"},"rules":[{"name":"a","descriptors":[{"key":"generic_key","header":"x"}],"limit":{"requests":1,"unit":"second"}}]}`, "rules[0].descriptors[0].key"},
		{`{"mode":"cluster","rules":[{"name":"a","descriptors":[{"key":"k","value":"v"}],"limit":{"requests":1,"unit":"second"}}]}`, "mode: must be"},
	} {
		_, err := configParse(c.cfg)
		if assert.Error(t, err, c.cfg) {
			assert.Contains(t, err.Error(), c.want)
		}
	}
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

func configParse(s string) (*config.Config, error) { return config.Parse([]byte(s)) }

// TestGlobalLocalPrecheck: with local_precheck, a key this proxy has used up is
// rejected from the local bucket without a call (the fake service admits everything);
// without it every request is asked.
func TestGlobalLocalPrecheck(t *testing.T) {
	for _, precheck := range []bool{false, true} {
		t.Run(fmt.Sprint("precheck=", precheck), func(t *testing.T) {
			f := startFakeRLS(t, func(*rlsv3.RateLimitRequest) ([]byte, error) {
				return marshal(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK})
			})
			h := startGlobal(t, 2, sprintf(`{"mode":"global","global":{"cluster":"rls","timeout":"5s","local_precheck":%v},"rules":[
				{"name":"u","descriptors":[{"key":"user","header":"x-user"}],"limit":{"requests":2,"unit":"hour"}}]}`, precheck),
				map[string]string{"rls": f.addr})
			statuses := []int{}
			for i := 0; i < 4; i++ {
				statuses = append(statuses, h.MustDo(t, testenv.Request{Headers: [][2]string{{"x-user", "a"}}, Worker: i % 2}).Status)
			}
			pre, _ := h.Metric("meshplug.ratelimit.service.precheck_limited")
			if precheck {
				assert.Equal(t, []int{200, 200, 429, 429}, statuses)
				assert.Len(t, f.requests(), 2, "the used-up key is not asked")
				assert.Equal(t, int64(2), pre)
				limited, _ := h.Metric("meshplug.ratelimit.u.limited")
				assert.Equal(t, int64(2), limited)
			} else {
				assert.Equal(t, []int{200, 200, 200, 200}, statuses)
				assert.Len(t, f.requests(), 4)
			}
			allowed, _ := h.Metric("meshplug.ratelimit.u.allowed")
			assert.Equal(t, int64(map[bool]int{false: 4, true: 2}[precheck]), allowed, "passes are counted once, from the service's answer")
		})
	}
}

// TestGlobalClientGoneWhileWaiting: a client that goes away while its request waits
// for the service abandons the call: the late answer is not applied (no metric, no
// reply), and the recycled stream serves the next request normally.
func TestGlobalClientGoneWhileWaiting(t *testing.T) {
	release := make(chan struct{})
	var calls sync.WaitGroup
	calls.Add(1)
	first := true
	var mu sync.Mutex
	f := startFakeRLS(t, func(*rlsv3.RateLimitRequest) ([]byte, error) {
		mu.Lock()
		wait := first
		first = false
		mu.Unlock()
		if wait {
			calls.Done()
			<-release
			return marshal(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT})
		}
		return marshal(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK})
	})
	h := startGlobal(t, 1, cfgWith(""), map[string]string{"rls": f.addr})
	s := h.Start(testenv.Request{Headers: [][2]string{{"x-user", "a"}}})
	calls.Wait() // the call is at the service
	require.False(t, s.Done(), "the request waits for the service")
	s.Reset()
	resp, err := s.Wait(context.Background())
	require.NoError(t, err)
	assert.True(t, resp.Reset)
	close(release)

	resp = h.MustDo(t, testenv.Request{Headers: [][2]string{{"x-user", "a"}}})
	assert.NotNil(t, resp.Upstream, "the next request gets its own answer")
	over, _ := h.Metric("meshplug.ratelimit.service.over_limit")
	ok, _ := h.Metric("meshplug.ratelimit.service.ok")
	assert.Equal(t, int64(0), over, "the abandoned call's answer is not applied")
	assert.Equal(t, int64(1), ok)
	for _, l := range h.Logs() {
		assert.NotContains(t, l.Message, "unknown token")
	}
}
