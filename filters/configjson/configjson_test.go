package configjson_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/configjson"
)

type rule struct {
	Limit   int                 `json:"limit"`
	Name    string              `json:"name,omitempty"`
	Small   uint8               `json:"small,omitempty"`
	Every   configjson.Duration `json:"every,omitempty"`
	Headers map[string]string   `json:"headers,omitempty"`
}

type doc struct {
	Rules     []rule           `json:"rules"`
	Providers map[string]*rule `json:"providers,omitempty"`
	Matrix    [][]int          `json:"matrix,omitempty"`
	On        bool             `json:"on,omitempty"`
}

func TestUnmarshalErrorsNameTheField(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"wrong type in array element", `{"rules":[{"limit":1},{"limit":"x"}]}`, `rules[1].limit: expected an integer, got a string`},
		{"unknown field", `{"rules":[{"limit":1},{"limitx":2}]}`, `rules[1].limitx: unknown field`},
		{"unknown top-level field", `{"Rules":[]}`, `Rules: unknown field`},
		{"case-sensitive names", `{"rules":[{"LIMIT":1}]}`, `rules[0].LIMIT: unknown field`},
		{"duplicate field", `{"rules":[{"limit":1,"limit":2}]}`, `rules[0].limit: duplicate field`},
		{"duplicate top-level", `{"on":true,"on":false}`, `on: duplicate field`},
		{"map key with dots is quoted", `{"providers":{"a.b":{"nme":1}}}`, `providers["a.b"].nme: unknown field`},
		{"plain map key", `{"providers":{"corp":{"limit":true}}}`, `providers.corp.limit: expected an integer, got a boolean`},
		{"numeric map key is not an index", `{"providers":{"7":{"limit":[]}}}`, `providers.7.limit: expected an integer, got an array`},
		{"nested arrays", `{"matrix":[[1],[2,"x"]]}`, `matrix[1][1]: expected an integer, got a string`},
		{"out of range", `{"rules":[{"small":300}]}`, `rules[0].small: 300 is out of range for an integer`},
		{"fraction for integer", `{"rules":[{"limit":1.5}]}`, `rules[0].limit: expected an integer, got the number 1.5`},
		{"map value type", `{"rules":[{"headers":{"x":1}}]}`, `rules[0].headers.x: expected a string, got a number`},
		{"trailing data", `{"rules":[]} x`, `invalid JSON at byte 13`},
		{"truncated", `{"rules":[{"limit":1}`, `rules: invalid JSON at byte 21`},
		{"invalid UTF-8", "{\"rules\":[{\"name\":\"\xff\"}]}", `rules[0].name: invalid JSON`},
		{"duration number", `{"rules":[{"every":5}]}`, `rules[0].every: expected a duration string such as "1.5s", got the number 5`},
		{"duration garbage", `{"rules":[{"every":"5 parsecs"}]}`, `rules[0].every: invalid duration "5 parsecs"`},
		{"duration negative", `{"rules":[{"every":"-1s"}]}`, `rules[0].every: duration "-1s" is negative`},
		{"not an object", `[1]`, `expected an object, got an array`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var d doc
			err := configjson.Unmarshal([]byte(c.in), &d)
			require.Error(t, err)
			var fe *configjson.FieldError
			require.True(t, errors.As(err, &fe), "error %T is not a *FieldError", err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

func TestUnmarshalAccepts(t *testing.T) {
	var d doc
	require.NoError(t, configjson.Unmarshal([]byte(`{"rules":[{"limit":3,"every":"1m30s","headers":{"a":"b"}}],"providers":{"x.y":{"limit":1}},"on":true}`), &d))
	require.Len(t, d.Rules, 1)
	assert.Equal(t, 3, d.Rules[0].Limit)
	assert.Equal(t, 90*time.Second, d.Rules[0].Every.D())
	assert.Equal(t, map[string]string{"a": "b"}, d.Rules[0].Headers)
	assert.Equal(t, 1, d.Providers["x.y"].Limit)
	assert.True(t, d.On)

	var n doc
	require.NoError(t, configjson.Unmarshal([]byte(`{"rules":null,"providers":{"p":{"limit":1,"every":null}}}`), &n))
	assert.Nil(t, n.Rules)
	assert.Equal(t, configjson.Duration(0), n.Providers["p"].Every)
}

func TestUnmarshalRefusesHugeDocuments(t *testing.T) {
	big := make([]byte, configjson.MaxBytes+1)
	var d doc
	assert.ErrorContains(t, configjson.Unmarshal(big, &d), "more than the")
}

func TestDurationRoundTrip(t *testing.T) {
	b, err := configjson.Duration(1500 * time.Millisecond).MarshalJSON()
	require.NoError(t, err)
	assert.Equal(t, `"1.5s"`, string(b))
	var d configjson.Duration
	require.NoError(t, d.UnmarshalJSON(b))
	assert.Equal(t, 1500*time.Millisecond, d.D())
}

func TestPaths(t *testing.T) {
	assert.Equal(t, "a", configjson.Field("", "a"))
	assert.Equal(t, "a.b", configjson.Field("a", "b"))
	assert.Equal(t, "rules[2]", configjson.Index("rules", 2))
	assert.Equal(t, "p.corp", configjson.Key("p", "corp"))
	assert.Equal(t, `p["a.b"]`, configjson.Key("p", "a.b"))
	assert.Equal(t, `p[""]`, configjson.Key("p", ""))
}

func TestErrorsCollects(t *testing.T) {
	var errs configjson.Errors
	require.NoError(t, errs.Err())
	errs.Add("rules[0].limit", "must be > 0, got %d", -1)
	var one *configjson.FieldError
	require.True(t, errors.As(errs.Err(), &one))
	assert.Equal(t, "rules[0].limit: must be > 0, got -1", errs.Err().Error())

	errs.AddErr("providers.corp", configjson.Errorf("keys[1].n", "invalid base64url"))
	errs.AddErr("rules", configjson.Errorf("[3]", "empty"))
	errs.AddErr("x", errors.New("plain"))
	errs.AddErr("y", nil)
	require.Equal(t, 4, errs.Len())
	assert.Equal(t, "rules[0].limit: must be > 0, got -1\nproviders.corp.keys[1].n: invalid base64url\nrules[3]: empty\nx: plain", errs.Err().Error())
	require.True(t, errors.As(errs.Err(), &one))
	assert.Equal(t, "rules[0].limit", one.Path)
}

// evens is a wire type with its own UnmarshalJSON that reports a path relative to
// itself, as a one-or-many type does for a bad element.
type evens []int

func (e *evens) UnmarshalJSON(b []byte) error {
	var v []int
	if err := configjson.Unmarshal(b, &v); err != nil {
		return err
	}
	for i, n := range v {
		if n%2 != 0 {
			return configjson.Errorf(configjson.Index("", i), "must be even, got %d", n)
		}
	}
	*e = v
	return nil
}

func TestUnmarshalKeepsTheRelativePathOfAWireTypesError(t *testing.T) {
	var d struct {
		Groups map[string]evens `json:"groups"`
	}
	err := configjson.Unmarshal([]byte(`{"groups":{"a":[2,4],"b":[2,3]}}`), &d)
	require.Error(t, err)
	var fe *configjson.FieldError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "groups.b[1]", fe.Path)
	assert.Equal(t, "groups.b[1]: must be even, got 3", err.Error())
}
