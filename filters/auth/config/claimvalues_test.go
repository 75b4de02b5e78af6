package config_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/configjson"
)

// refClaimValues is ClaimValues.UnmarshalJSON as it was with encoding/json (before
// issue 23 moved it to go-json-experiment so that auth.wasm links one JSON library).
func refClaimValues(b []byte) (config.ClaimValues, bool) {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if json.Unmarshal(b, &s) != nil {
			return nil, false
		}
		return config.ClaimValues{s}, true
	}
	if len(b) > 0 && b[0] == '[' {
		var raw []json.RawMessage
		if json.Unmarshal(b, &raw) != nil {
			return nil, false
		}
		out := make(config.ClaimValues, 0, len(raw))
		for _, r := range raw {
			var s string
			if len(r) == 0 || r[0] != '"' || json.Unmarshal(r, &s) != nil {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, string(b) == "null"
}

// TestClaimValuesJSON: required_claims values read exactly as before or more strictly.
// Each row is decoded both ways a ClaimValues is decoded — inside a configuration by
// configjson (what the filter does) and by a direct UnmarshalJSON call (what an
// encoding/json user such as the Kubernetes API machinery does) — and whatever is
// accepted must be what the encoding/json-based reference read.
func TestClaimValuesJSON(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want config.ClaimValues // nil with err == "" means absent (null)
		err  string             // substring of the configjson error ("" = accepted)
		// direct is the substring of the direct UnmarshalJSON error when it differs
		// from err (the wrapper's error names the path, the direct one does not).
		direct string
	}{
		{name: "string", doc: `"admin"`, want: config.ClaimValues{"admin"}},
		{name: "array", doc: `["a", "b"]`, want: config.ClaimValues{"a", "b"}},
		{name: "empty array", doc: `[]`, want: config.ClaimValues{}},
		{name: "null is absent", doc: `null`},
		{name: "escaped letters", doc: `"\u0061dmin"`, want: config.ClaimValues{"admin"}},
		{name: "escaped surrogate pair", doc: `"\ud83d\ude00"`, want: config.ClaimValues{"\U0001F600"}},
		{name: "NUL escape kept", doc: `["a\u0000b"]`, want: config.ClaimValues{"a\x00b"}},
		{name: "case kept", doc: `["Admin","ADMIN"]`, want: config.ClaimValues{"Admin", "ADMIN"}},
		// Stricter than encoding/json, which read these as U+FFFD.
		{name: "unpaired high surrogate", doc: `"a\ud800"`, err: "invalid", direct: "invalid string"},
		{name: "unpaired low surrogate in array", doc: `["a\udc00"]`, err: "invalid", direct: "invalid array"},
		{name: "raw invalid UTF-8", doc: "\"a\xffb\"", err: "invalid", direct: "invalid string"},
		{name: "raw invalid UTF-8 in array", doc: "[\"a\xffb\"]", err: "invalid", direct: "invalid array"},
		// Stricter: encoding/json let a duplicate name inside an element pass to the
		// element check.
		{name: "object with duplicate names", doc: `[{"a":1,"a":2}]`, err: "duplicate", direct: "invalid array"},
		{name: "number", doc: `1`, err: "must be a string or an array of strings, got the number 1"},
		{name: "bool", doc: `true`, err: "must be a string or an array of strings, got a boolean"},
		{name: "object", doc: `{"a":"b"}`, err: "must be a string or an array of strings, got an object"},
		{name: "number element", doc: `["a", 1]`, err: "[1]: must be a string, got the number 1"},
		{name: "null element", doc: `[null]`, err: "[0]: must be a string, got null"},
		{name: "nested array", doc: `[["a"]]`, err: "[0]: must be a string, got an array"},
		{name: "object element", doc: `[{"a":"b"}]`, err: "[0]: must be a string, got an object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var w struct {
				V config.ClaimValues `json:"v"`
			}
			err := configjson.Unmarshal([]byte(`{"v":`+c.doc+`}`), &w)
			var direct config.ClaimValues
			derr := direct.UnmarshalJSON([]byte(c.doc))
			old, oldOK := refClaimValues([]byte(c.doc))
			if c.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.err)
				require.Error(t, derr)
				want := c.direct
				if want == "" {
					want = c.err
				}
				assert.Contains(t, derr.Error(), want)
				return
			}
			require.NoError(t, err)
			require.NoError(t, derr)
			assert.Equal(t, c.want, w.V)
			assert.Equal(t, c.want, direct)
			require.True(t, oldOK, "accepted now but refused by the encoding/json reference")
			assert.Equal(t, old, w.V, "read differently from the encoding/json reference")
		})
	}
}
