package config_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/configjson"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
)

const example = `{
  "rules": [
    {"name": "per-consumer", "match": {"prefix": "/api", "methods": ["get", "POST"], "headers": [{"name": "X-Tier", "exact": "free"}]},
     "descriptors": [{"key": "consumer", "header": "X-Consumer"}, {"key": "method", "method": true}],
     "limit": {"requests": 100, "unit": "minute", "burst": 150},
     "overrides": [{"values": {"consumer": "gold-*"}, "limit": {"requests": 1000, "unit": "minute"}},
                   {"values": {"consumer": "ops"}, "unlimited": true}],
     "missing_key": "anonymous"},
    {"name": "per-ip", "descriptors": [{"key": "remote_address", "client_address": true}], "limit": {"requests": 3, "per": "1.5s"}, "shadow": true}
  ],
  "headers": "x-ratelimit", "headers_on_allowed": true, "xff_num_trusted_hops": 1, "max_keys": 1000
}`

func TestParseExample(t *testing.T) {
	c, err := config.Parse([]byte(example))
	require.NoError(t, err)
	assert.Equal(t, "meshplug", c.Domain)
	assert.Equal(t, config.HeadersXRateLimit, c.Headers)
	assert.True(t, c.HeadersOnAllowed)
	assert.Equal(t, 1, c.XFFNumTrustedHops)
	assert.Equal(t, 1000, c.MaxKeys)
	assert.Equal(t, 500, c.Groups)
	assert.Equal(t, 429, c.Status)
	assert.True(t, c.GRPC)
	require.Len(t, c.Rules, 2)
	r := c.Rules[0]
	assert.Equal(t, []string{"GET", "POST"}, r.Match.Methods)
	assert.Equal(t, "x-tier", r.Match.Headers[0].Name)
	assert.Equal(t, config.Entry{Key: "consumer", Source: config.SourceHeader, Name: "x-consumer", Slot: 0}, r.Entries[0])
	assert.Equal(t, 1, r.Match.Headers[0].Slot)
	assert.Equal(t, config.Limit{Requests: 100, Burst: 150, Period: time.Minute, Unit: "minute", ID: "d\x80\xb0\x9d\xc2\xdf\x01\x96\x01", Header: "100, 100;w=60", Step: int64(600 * time.Millisecond)}, r.Limit)
	require.Len(t, r.Overrides, 2)
	assert.Equal(t, []config.ValueMatch{{Entry: 0, Value: "gold-", Prefix: true}}, r.Overrides[0].Values)
	assert.Equal(t, int64(1000), r.Overrides[0].Limit.Burst)
	assert.True(t, r.Overrides[1].Unlimited)
	assert.Equal(t, config.MissingAnonymous, r.MissingKey)
	assert.False(t, r.Shadow)
	assert.True(t, c.Rules[1].Shadow)
	assert.True(t, c.Rules[1].HasClientIP)
	assert.Equal(t, 1500*time.Millisecond, c.Rules[1].Limit.Period)
	assert.Equal(t, int64(3), c.Rules[1].Limit.Burst)
	assert.Equal(t, "3", c.Rules[1].Limit.Header, "no quota policy for a period of 1.5s")
	assert.Equal(t, []string{"x-consumer", "x-tier"}, c.HeaderNames)
	assert.True(t, c.NeedsClientAddress)
}

func TestParseErrorsNameTheField(t *testing.T) {
	rule := func(extra string) string {
		return `{"rules":[{"name":"r","descriptors":[{"key":"k","header":"x"}],"limit":{"requests":1,"unit":"second"}` + extra + `}]}`
	}
	cases := []struct{ name, in, want string }{
		{"no rules", `{}`, `rules: at least one rule is required`},
		{"unknown field", `{"rules":[],"colour":1}`, `colour: unknown field`},
		{"wrong type", `{"rules":[{"name":"r","limit":{"requests":"5"}}]}`, `rules[0].limit.requests: expected an integer, got a string`},
		{"missing name", `{"rules":[{"descriptors":[{"key":"k","header":"x"}],"limit":{"requests":1,"unit":"second"}}]}`, `rules[0].name: required`},
		{"bad name", `{"rules":[{"name":"a b","descriptors":[{"key":"k","header":"x"}],"limit":{"requests":1,"unit":"second"}}]}`, `rules[0].name: must match`},
		{"duplicate name", `{"rules":[{"name":"r","descriptors":[{"key":"k","method":true}],"limit":{"requests":1,"unit":"second"}},{"name":"r","descriptors":[{"key":"k","method":true}],"limit":{"requests":1,"unit":"second"}}]}`, `rules[1].name: duplicate rule name "r"`},
		{"no descriptors", `{"rules":[{"name":"r","limit":{"requests":1,"unit":"second"}}]}`, `rules[0].descriptors: at least one`},
		{"two sources", `{"rules":[{"name":"r","descriptors":[{"key":"k","header":"x","path":true}],"limit":{"requests":1,"unit":"second"}}]}`, `rules[0].descriptors[0]: exactly one of header`},
		{"no source", `{"rules":[{"name":"r","descriptors":[{"key":"k"}],"limit":{"requests":1,"unit":"second"}}]}`, `rules[0].descriptors[0]: exactly one of header`},
		{"pseudo header", `{"rules":[{"name":"r","descriptors":[{"key":"k","header":":path"}],"limit":{"requests":1,"unit":"second"}}]}`, `rules[0].descriptors[0].header: not a header name`},
		{"duplicate key", `{"rules":[{"name":"r","descriptors":[{"key":"k","header":"x"},{"key":"k","method":true}],"limit":{"requests":1,"unit":"second"}}]}`, `rules[0].descriptors[1].key: duplicate descriptor key`},
		{"zero requests", `{"rules":[{"name":"r","descriptors":[{"key":"k","header":"x"}],"limit":{"requests":0,"unit":"second"}}]}`, `rules[0].limit.requests: must be 1..1000000000, got 0`},
		{"bad unit", `{"rules":[{"name":"r","descriptors":[{"key":"k","header":"x"}],"limit":{"requests":1,"unit":"week"}}]}`, `rules[0].limit.unit: must be second, minute, hour or day`},
		{"unit and per", `{"rules":[{"name":"r","descriptors":[{"key":"k","header":"x"}],"limit":{"requests":1,"unit":"second","per":"1s"}}]}`, `rules[0].limit: unit and per are exclusive`},
		{"no period", `{"rules":[{"name":"r","descriptors":[{"key":"k","header":"x"}],"limit":{"requests":1}}]}`, `rules[0].limit: one of unit and per is required`},
		{"per too short", `{"rules":[{"name":"r","descriptors":[{"key":"k","header":"x"}],"limit":{"requests":1,"per":"10us"}}]}`, `rules[0].limit.per: must be 1ms..24h`},
		{"per not a duration", `{"rules":[{"name":"r","descriptors":[{"key":"k","header":"x"}],"limit":{"requests":1,"per":60}}]}`, `rules[0].limit.per: expected a duration string`},
		{"huge burst", `{"rules":[{"name":"r","descriptors":[{"key":"k","header":"x"}],"limit":{"requests":1,"unit":"day","burst":1000000000}}]}`, `rules[0].limit.burst: burst × period is too large`},
		{"override unknown key", rule(`,"overrides":[{"values":{"tier":"gold"},"unlimited":true}]`), `rules[0].overrides[0].values.tier: the rule has no descriptor entry with this key`},
		{"override both", rule(`,"overrides":[{"values":{"k":"gold"},"unlimited":true,"limit":{"requests":1,"unit":"second"}}]`), `rules[0].overrides[0]: limit and unlimited are exclusive`},
		{"override neither", rule(`,"overrides":[{"values":{"k":"gold"}}]`), `rules[0].overrides[0]: one of limit and unlimited is required`},
		{"override limit", rule(`,"overrides":[{"values":{"k":"gold"},"limit":{"requests":-1,"unit":"second"}}]`), `rules[0].overrides[0].limit.requests: must be 1..`},
		{"missing_key", rule(`,"missing_key":"maybe"`), `rules[0].missing_key: must be "allow", "anonymous" or "deny"`},
		{"regex", rule(`,"match":{"regex":"("}`), `rules[0].match.regex: invalid regexp`},
		{"prefix and path", rule(`,"match":{"prefix":"/a","path":"/b"}`), `rules[0].match: at most one of prefix, path and regex`},
		{"header match kind", rule(`,"match":{"headers":[{"name":"x"}]}`), `rules[0].match.headers[0]: exactly one of exact, prefix and present`},
		{"method", rule(`,"match":{"methods":["GE T"]}`), `rules[0].match.methods[0]: not a method token`},
		{"headers style", `{"headers":"draft","rules":[]}`, `headers: must be "ratelimit", "x-ratelimit" or "none"`},
		{"hops", `{"xff_num_trusted_hops":17,"rules":[]}`, `xff_num_trusted_hops: must be 0..16`},
		{"max_keys", `{"max_keys":10,"rules":[]}`, `max_keys: must be 64..4194304`},
		{"status", `{"status":200,"rules":[]}`, `status: must be 400..599`},
		{"duplicate field", `{"rules":[],"rules":[]}`, `rules: duplicate field`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse([]byte(c.in))
			require.Error(t, err)
			var fe *configjson.FieldError
			assert.True(t, errors.As(err, &fe), "%T", err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

func TestParseReportsAllErrors(t *testing.T) {
	_, err := config.Parse([]byte(`{"status":1,"rules":[{"name":"","descriptors":[],"limit":{"requests":0,"unit":"second"}}]}`))
	require.Error(t, err)
	var l configjson.ListError
	require.True(t, errors.As(err, &l))
	assert.Len(t, l, 4)
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte(`{"rules":[{"name":"r","descriptors":[{"key":"k","header":"x"}],"limit":{"requests":1,"unit":"second"}}]}`))
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
			if r.Limit.Burst < 1 || r.Limit.Period <= 0 || len(r.Entries) == 0 {
				t.Fatalf("compiled an invalid rule: %+v", r)
			}
		}
	})
}

// NeedsPath: the reader puts paths in canonical form only for configurations that read
// them (a path condition or a path descriptor).
func TestNeedsPath(t *testing.T) {
	limit := `"limit": {"requests": 1, "unit": "second"}`
	cases := []struct {
		name string
		rule string
		want bool
	}{
		{"header descriptor only", `"descriptors": [{"key": "c", "header": "x-c"}]`, false},
		{"method descriptor and condition", `"match": {"methods": ["GET"]}, "descriptors": [{"key": "m", "method": true}]`, false},
		{"path descriptor", `"descriptors": [{"key": "p", "path": true}]`, true},
		{"exact path condition", `"match": {"path": "/a"}, "descriptors": [{"key": "c", "header": "x-c"}]`, true},
		{"prefix condition", `"match": {"prefix": "/a"}, "descriptors": [{"key": "c", "header": "x-c"}]`, true},
		{"regex condition", `"match": {"regex": "/a.*"}, "descriptors": [{"key": "c", "header": "x-c"}]`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(`{"rules": [{"name": "r", ` + c.rule + `, ` + limit + `}]}`))
			require.NoError(t, err)
			assert.Equal(t, c.want, cfg.NeedsPath)
		})
	}
}

// Step (one request's refill time, rounded up) and Match.Empty are computed once at
// configure time for the per-request path.
func TestLimitStepAndEmptyMatch(t *testing.T) {
	c, err := config.Parse([]byte(example))
	require.NoError(t, err)
	assert.Equal(t, int64(600*time.Millisecond), c.Rules[0].Limit.Step) // 100 per minute
	assert.Equal(t, int64(500*time.Millisecond), c.Rules[1].Limit.Step) // 3 per 1.5s
	assert.Equal(t, int64(60*time.Millisecond), c.Rules[0].Overrides[0].Limit.Step)
	assert.False(t, c.Rules[0].Match.Empty())
	assert.True(t, c.Rules[1].Match.Empty())
	c, err = config.Parse([]byte(`{"rules": [{"name": "r", "descriptors": [{"key": "c", "header": "x-c"}], "limit": {"requests": 7, "per": "1s"}}]}`))
	require.NoError(t, err)
	assert.Equal(t, int64(142857143), c.Rules[0].Limit.Step, "rounded up")
	for _, m := range []string{`{"path": "/a"}`, `{"prefix": "/a"}`, `{"regex": "/a"}`, `{"methods": ["GET"]}`, `{"headers": [{"name": "x-a", "present": true}]}`} {
		c, err := config.Parse([]byte(`{"rules": [{"name": "r", "match": ` + m + `, "descriptors": [{"key": "c", "header": "x-c"}], "limit": {"requests": 1, "unit": "second"}}]}`))
		require.NoError(t, err, m)
		assert.False(t, c.Rules[0].Match.Empty(), m)
	}
}
