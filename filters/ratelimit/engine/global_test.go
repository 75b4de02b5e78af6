package engine_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
	"github.com/meshplug/meshplug/filters/ratelimit/engine"
	"github.com/meshplug/meshplug/filters/ratelimit/rls"
)

const globalRules = `{"mode":"global","global":{"cluster":"rls"%s},"rules":[
	{"name":"user","descriptors":[{"key":"u","header":"x-user"}],"limit":{"requests":10,"unit":"minute"}},
	{"name":"strict","match":{"prefix":"/strict"},"descriptors":[{"key":"t","header":"x-tenant"}],"limit":{"requests":5,"unit":"second"},"missing_key":"deny"},
	{"name":"probe","descriptors":[{"key":"all","value":"1"},{"key":"m","method":true}],"limit":{"requests":1,"unit":"second"},"shadow":true}]}`

func globalEngine(t *testing.T, extra string) *engine.Engine {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(globalRules, extra)))
	require.NoError(t, err)
	return engine.New(cfg, nil)
}

func read(e *engine.Engine, path string, headers ...string) *engine.Request {
	pairs := []abi.Pair{{Key: ":method", Value: "GET"}, {Key: ":path", Value: path}}
	for i := 0; i+1 < len(headers); i += 2 {
		pairs = append(pairs, abi.Pair{Key: headers[i], Value: headers[i+1]})
	}
	var r engine.Request
	r.Read(e.Config(), abi.PairsView(abi.EncodePairs(pairs)), "")
	return &r
}

func TestDescriptors(t *testing.T) {
	e := globalEngine(t, "")
	for _, c := range []struct {
		name    string
		path    string
		headers []string
		want    [][]rls.Entry
		limited bool
		events  int
	}{
		{"user and probe", "/a", []string{"x-user", "alice"},
			[][]rls.Entry{{{Key: "generic_key", Value: "user"}, {Key: "u", Value: "alice"}}, {{Key: "generic_key", Value: "probe"}, {Key: "all", Value: "1"}, {Key: "m", Value: "GET"}}}, false, 0},
		{"no user: allow skips the descriptor", "/a", nil,
			[][]rls.Entry{{{Key: "generic_key", Value: "probe"}, {Key: "all", Value: "1"}, {Key: "m", Value: "GET"}}}, false, 1},
		{"repeated header refused without a call", "/a", []string{"x-user", "a", "x-user", "b"},
			[][]rls.Entry{{{Key: "generic_key", Value: "probe"}, {Key: "all", Value: "1"}, {Key: "m", Value: "GET"}}}, true, 1},
		{"missing tenant denies without a call", "/strict", []string{"x-user", "alice"},
			[][]rls.Entry{{{Key: "generic_key", Value: "user"}, {Key: "u", Value: "alice"}}, {{Key: "generic_key", Value: "probe"}, {Key: "all", Value: "1"}, {Key: "m", Value: "GET"}}}, true, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var d engine.Descriptors
			var v engine.Verdict
			e.Descriptors(read(e, c.path, c.headers...), &d, &v)
			assert.Equal(t, c.want, d.Entries)
			assert.Len(t, d.Rules, len(c.want))
			assert.Equal(t, c.limited, v.Limited)
			assert.Equal(t, c.limited, v.MissingKey || v.Refused != "")
			assert.Len(t, v.Events, c.events)
		})
	}
}

func TestDecideGlobal(t *testing.T) {
	e := globalEngine(t, "")
	minute := func(code rls.Code, remaining uint32, reset time.Duration) rls.Status {
		return rls.Status{Code: code, HasLimit: true, RequestsPerUnit: 10, Unit: rls.UnitMinute, LimitRemaining: remaining, DurationUntilReset: reset}
	}
	for _, c := range []struct {
		name       string
		resp       rls.Response
		err        bool
		limited    bool
		events     []engine.Event // user, probe
		limit      string
		remaining  int64
		retryAfter time.Duration
	}{
		{name: "ok, fewest remaining reported",
			resp:   rls.Response{OverallCode: rls.CodeOK, Statuses: []rls.Status{minute(rls.CodeOK, 4, 10*time.Second), {Code: rls.CodeOK, HasLimit: true, RequestsPerUnit: 1, Unit: rls.UnitSecond, LimitRemaining: 0}}},
			events: []engine.Event{engine.EventAllowed, engine.EventAllowed}, limit: "1, 1;w=1", remaining: 0},
		{name: "over limit on the user rule",
			resp:    rls.Response{OverallCode: rls.CodeOverLimit, Statuses: []rls.Status{minute(rls.CodeOverLimit, 0, 42*time.Second), {Code: rls.CodeOK}}},
			limited: true, events: []engine.Event{engine.EventLimited, engine.EventAllowed}, limit: "10, 10;w=60", retryAfter: 42 * time.Second},
		{name: "over limit only on the shadow rule passes",
			resp:   rls.Response{OverallCode: rls.CodeOverLimit, Statuses: []rls.Status{minute(rls.CodeOK, 3, time.Second), {Code: rls.CodeOverLimit}}},
			events: []engine.Event{engine.EventAllowed, engine.EventShadowLimited}, limit: "10, 10;w=60", remaining: 3},
		{name: "an override's limit is reported as the service says",
			resp:    rls.Response{OverallCode: rls.CodeOverLimit, Statuses: []rls.Status{{Code: rls.CodeOverLimit, HasLimit: true, RequestsPerUnit: 1000, Unit: rls.UnitHour, DurationUntilReset: time.Minute}, {Code: rls.CodeOK}}},
			limited: true, events: []engine.Event{engine.EventLimited, engine.EventAllowed}, limit: "1000, 1000;w=3600", retryAfter: time.Minute},
		{name: "no statuses: overall code alone (Limitador)",
			resp:    rls.Response{OverallCode: rls.CodeOverLimit},
			limited: true, events: []engine.Event{engine.EventLimited, engine.EventShadowLimited}},
		{name: "unknown code allows, as Envoy",
			resp:   rls.Response{OverallCode: rls.CodeUnknown},
			events: []engine.Event{engine.EventAllowed, engine.EventAllowed}},
		{name: "status over limit but overall OK: allowed",
			resp:   rls.Response{OverallCode: rls.CodeOK, Statuses: []rls.Status{minute(rls.CodeOverLimit, 0, time.Second), {Code: rls.CodeOK}}},
			events: []engine.Event{engine.EventAllowed, engine.EventAllowed}, limit: "10, 10;w=60"},
		{name: "statuses not one per descriptor",
			resp: rls.Response{OverallCode: rls.CodeOK, Statuses: []rls.Status{{Code: rls.CodeOK}}}, err: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var d engine.Descriptors
			var v engine.Verdict
			e.Descriptors(read(e, "/a", "x-user", "alice"), &d, &v)
			require.Len(t, d.Rules, 2)
			err := e.DecideGlobal(&d, &c.resp, &v)
			if c.err {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.limited, v.Limited)
			var evs []engine.Event
			for _, ev := range v.Events {
				evs = append(evs, ev.Event)
			}
			assert.Equal(t, c.events, evs)
			if c.limit == "" {
				assert.Nil(t, v.Report)
				return
			}
			require.NotNil(t, v.Report)
			assert.Equal(t, c.limit, v.Report.Header)
			assert.Equal(t, c.remaining, v.Outcome.Remaining)
			assert.Equal(t, c.retryAfter, v.Outcome.RetryAfter)
		})
	}
}

func TestDecideFailure(t *testing.T) {
	for _, deny := range []bool{false, true} {
		e := globalEngine(t, fmt.Sprintf(`,"failure_mode_deny":%v,"status_on_error":503`, deny))
		var v engine.Verdict
		e.DecideFailure(&v)
		assert.Equal(t, deny, v.Limited)
		assert.Equal(t, deny, v.ServiceError)
		if deny {
			resp := engine.Reject(e.Config(), read(e, "/a"), &v, nil)
			assert.Equal(t, 503, resp.Status)
			assert.Equal(t, "meshplug_ratelimit_service_error", resp.Details)
		}
	}
}

func TestAppendServiceHeaders(t *testing.T) {
	got := engine.AppendServiceHeaders(nil, []rls.Header{
		{Key: "x-ok", Value: "v"}, {Key: ":path", Value: "/admin"}, {Key: "X-Upper", Value: "v"}, {Key: "x-crlf", Value: "a\r\nb"}, {Key: "x-nul", Value: "a\x00"},
		{Key: "content-length", Value: "0"}, {Key: "host", Value: "evil"}, {Key: "", Value: "v"}, {Key: "x sp", Value: "v"}, {Key: "x-empty", Value: ""},
	})
	assert.Equal(t, []abi.Pair{{Key: "x-ok", Value: "v"}, {Key: "x-upper", Value: "v"}, {Key: "x-empty", Value: ""}}, got)
}
