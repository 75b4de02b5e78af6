package config_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/configjson"
	"github.com/meshplug/meshplug/filters/fault/config"
)

// An Envoy HTTPFault (as in Envoy's fault filter docs, JSON form) is a valid rule.
const envoyStyle = `{"faults": [{
  "delay": {"fixed_delay": "7s", "percentage": {"numerator": 100}},
  "abort": {"http_status": 503, "percentage": {"numerator": 5000, "denominator": "TEN_THOUSAND"}},
  "headers": [{"name": "end-user", "string_match": {"exact": "jason"}},
              {"name": ":path", "prefix_match": "/reviews"}],
  "downstream_nodes": ["productpage"],
  "upstream_cluster": "reviews",
  "max_active_faults": 10
}]}`

func TestParseEnvoyStyle(t *testing.T) {
	c, err := config.Parse([]byte(envoyStyle))
	require.NoError(t, err)
	require.Len(t, c.Rules, 1)
	r := c.Rules[0]
	assert.Equal(t, "faults[0]", r.Name)
	assert.Equal(t, 7*time.Second, r.Delay.Fixed)
	assert.Equal(t, config.Percent{Numerator: 100, Denominator: 100}, r.Delay.Percentage)
	assert.Equal(t, uint32(503), r.Abort.HTTPStatus)
	assert.Equal(t, config.Percent{Numerator: 5000, Denominator: 10000}, r.Abort.Percentage)
	assert.Equal(t, []byte(config.DefaultAbortBody), r.Abort.Body)
	require.Len(t, r.Headers, 2)
	assert.Equal(t, config.MatchExact, r.Headers[0].Kind)
	assert.Equal(t, config.MatchPrefix, r.Headers[1].Kind)
	assert.True(t, r.DownstreamNodes["productpage"])
	assert.Equal(t, uint64(10), r.MaxActive)
	assert.True(t, c.Capped)
	assert.ElementsMatch(t, []string{"end-user", ":path", config.HeaderDownstreamNode}, c.HeaderNames)
}

func TestParseHeaderControlled(t *testing.T) {
	c, err := config.Parse([]byte(`{"max_active_faults": 3, "random_seed": 7, "faults": [
	  {"name": "hdr", "delay": {"header_delay": {"max_delay": "10s"}, "percentage": {"numerator": 100}},
	   "abort": {"header_abort": {}, "percentage": {"numerator": 100}, "body": "nope",
	             "response_headers": [{"name": "X-Fault", "value": "1"}]}}]}`))
	require.NoError(t, err)
	r := c.Rules[0]
	assert.True(t, r.Delay.FromHeader)
	assert.Equal(t, 10*time.Second, r.Delay.MaxDelay)
	assert.True(t, r.Abort.FromHeader)
	assert.Equal(t, []byte("nope"), r.Abort.Body)
	assert.Equal(t, [][2]string{{"x-fault", "1"}}, r.Abort.Headers)
	assert.Equal(t, uint64(3), r.MaxActive)
	assert.True(t, c.HasSeed)
	assert.Equal(t, uint64(7), c.Seed)
	assert.Subset(t, c.HeaderNames, []string{config.HeaderDelayRequest, config.HeaderDelayRequestPercentage,
		config.HeaderAbortRequest, config.HeaderAbortGrpcRequest, config.HeaderAbortRequestPercentage})
}

func TestParseErrorsNameTheField(t *testing.T) {
	pct := `"percentage": {"numerator": 100}`
	for _, tc := range []struct{ name, json, path, msg string }{
		{"no faults", `{"faults": []}`, "faults", "at least one"},
		{"unknown field", `{"faults": [{"delay": {"fixed_delay": "1s", ` + pct + `, "x": 1}}]}`, "faults[0].delay.x", "unknown field"},
		{"neither", `{"faults": [{"name": "a"}]}`, "faults[0]", "needs delay or abort"},
		{"no percentage", `{"faults": [{"abort": {"http_status": 503}}]}`, "faults[0].abort.percentage", "required"},
		{"bad denominator", `{"faults": [{"abort": {"http_status": 503, "percentage": {"numerator": 1, "denominator": "THOUSAND"}}}]}`, "faults[0].abort.percentage.denominator", "HUNDRED"},
		{"numerator too big", `{"faults": [{"abort": {"http_status": 503, "percentage": {"numerator": 101}}}]}`, "faults[0].abort.percentage.numerator", "0–100 (the denominator)"},
		{"status low", `{"faults": [{"abort": {"http_status": 199, ` + pct + `}}]}`, "faults[0].abort.http_status", "200–599"},
		{"status high", `{"faults": [{"abort": {"http_status": 600, ` + pct + `}}]}`, "faults[0].abort.http_status", "200–599"},
		{"grpc high", `{"faults": [{"abort": {"grpc_status": 17, ` + pct + `}}]}`, "faults[0].abort.grpc_status", "0–16"},
		{"two aborts", `{"faults": [{"abort": {"grpc_status": 1, "http_status": 500, ` + pct + `}}]}`, "faults[0].abort", "only one"},
		{"no abort kind", `{"faults": [{"abort": {` + pct + `}}]}`, "faults[0].abort", "needs http_status"},
		{"two delays", `{"faults": [{"delay": {"fixed_delay": "1s", "header_delay": {}, ` + pct + `}}]}`, "faults[0].delay", "only one"},
		{"no delay kind", `{"faults": [{"delay": {` + pct + `}}]}`, "faults[0].delay", "needs fixed_delay"},
		{"zero delay", `{"faults": [{"delay": {"fixed_delay": "0s", ` + pct + `}}]}`, "faults[0].delay.fixed_delay", "at least 1ms"},
		{"sub-ms delay", `{"faults": [{"delay": {"fixed_delay": "500us", ` + pct + `}}]}`, "faults[0].delay.fixed_delay", "at least 1ms"},
		{"bad duration", `{"faults": [{"delay": {"fixed_delay": "7", ` + pct + `}}]}`, "faults[0].delay.fixed_delay", "invalid duration"},
		{"rate limit", `{"faults": [{"response_rate_limit": {"fixed_limit": {"limit_kbps": 1}}, "abort": {"http_status": 500, ` + pct + `}}]}`, "faults[0].response_rate_limit", "not supported"},
		{"runtime key", `{"faults": [{"delay_percent_runtime": "x", "abort": {"http_status": 500, ` + pct + `}}]}`, "faults[0].delay_percent_runtime", "unknown field"},
		{"matcher none", `{"faults": [{"headers": [{"name": "a"}], "abort": {"http_status": 500, ` + pct + `}}]}`, "faults[0].headers[0]", "needs string_match"},
		{"matcher two", `{"faults": [{"headers": [{"name": "a", "exact_match": "x", "present_match": true}], "abort": {"http_status": 500, ` + pct + `}}]}`, "faults[0].headers[0]", "only one"},
		{"matcher two in string_match", `{"faults": [{"headers": [{"name": "a", "string_match": {"exact": "x", "prefix": "y"}}], "abort": {"http_status": 500, ` + pct + `}}]}`, "faults[0].headers[0].string_match", "only one"},
		{"matcher bad regex", `{"faults": [{"headers": [{"name": "a", "safe_regex_match": {"regex": "("}}], "abort": {"http_status": 500, ` + pct + `}}]}`, "faults[0].headers[0].safe_regex_match.regex", "invalid RE2"},
		{"matcher bad name", `{"faults": [{"headers": [{"name": "a b", "present_match": true}], "abort": {"http_status": 500, ` + pct + `}}]}`, "faults[0].headers[0].name", "invalid header name"},
		{"reply header pseudo", `{"faults": [{"abort": {"http_status": 500, ` + pct + `, "response_headers": [{"name": ":status", "value": "1"}]}}]}`, "faults[0].abort.response_headers[0].name", "set by the filter"},
		{"reply header CRLF", `{"faults": [{"abort": {"http_status": 500, ` + pct + `, "response_headers": [{"name": "x", "value": "a\r\nb: c"}]}}]}`, "faults[0].abort.response_headers[0].value", "CR, LF"},
		{"max_delay zero", `{"faults": [{"delay": {"header_delay": {"max_delay": "0s"}, ` + pct + `}}]}`, "faults[0].delay.header_delay.max_delay", "at least 1ms"},
		{"negative cap", `{"max_active_faults": -1, "faults": [{"abort": {"http_status": 500, ` + pct + `}}]}`, "max_active_faults", "must be 0–4294967295"},
		{"huge rule cap", `{"faults": [{"max_active_faults": 4294967296, "abort": {"http_status": 500, ` + pct + `}}]}`, "faults[0].max_active_faults", "must be 0–4294967295"},
		{"negative numerator", `{"faults": [{"abort": {"http_status": 503, "percentage": {"numerator": -1}}}]}`, "faults[0].abort.percentage.numerator", "0–100"},
		{"negative grpc", `{"faults": [{"abort": {"grpc_status": -1, ` + pct + `}}]}`, "faults[0].abort.grpc_status", "0–16"},
		{"negative seed", `{"random_seed": -1, "faults": [{"abort": {"grpc_status": 1, ` + pct + `}}]}`, "random_seed", ">= 0"},
		{"rate limit in a later rule", `{"faults": [{"abort": {"http_status": 500, ` + pct + `}}, {"response_rate_limit": {}}]}`, "faults[1].response_rate_limit", "not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.json))
			require.Error(t, err)
			var fe *configjson.FieldError
			require.True(t, errors.As(err, &fe), "%T %v", err, err)
			assert.Equal(t, tc.path, fe.Path, "%v", err)
			assert.Contains(t, fe.Msg, tc.msg)
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	_, err := config.Parse([]byte(`{"faults": [{"abort": {"http_status": 100}}, {"delay": {"fixed_delay": "1s"}}]}`))
	var list configjson.ListError
	require.True(t, errors.As(err, &list), "%v", err)
	assert.Len(t, list, 3)
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(envoyStyle))
	f.Add([]byte(`{"faults": [{"delay": {"header_delay": {}, "percentage": {"numerator": 1, "denominator": "MILLION"}}}]}`))
	f.Add([]byte(`{"faults": [{"headers": [{"name": "a", "safe_regex_match": {"regex": "a+"}, "invert_match": true}], "abort": {"grpc_status": 14, "percentage": {"numerator": 100}}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data)
		if err != nil {
			var fe *configjson.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a FieldError: %v", err, err)
			}
			return
		}
		for _, r := range c.Rules {
			for _, p := range []*config.Percent{pctOf(r.Delay), pctOfA(r.Abort)} {
				if p != nil && (p.Denominator == 0 || p.Numerator > p.Denominator) {
					t.Fatalf("bad percent %+v", p)
				}
			}
			if r.Abort != nil && !r.Abort.FromHeader && r.Abort.HTTPStatus != 0 && (r.Abort.HTTPStatus < 200 || r.Abort.HTTPStatus > 599) {
				t.Fatalf("bad status %d", r.Abort.HTTPStatus)
			}
			if r.Delay != nil && !r.Delay.FromHeader && r.Delay.Fixed <= 0 {
				t.Fatalf("bad delay %v", r.Delay.Fixed)
			}
		}
	})
}

func pctOf(d *config.Delay) *config.Percent {
	if d == nil {
		return nil
	}
	return &d.Percentage
}

func pctOfA(a *config.Abort) *config.Percent {
	if a == nil {
		return nil
	}
	return &a.Percentage
}
