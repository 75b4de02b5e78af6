package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// FieldError is a configuration error at a field path such as
// `rules[2].match.regex` or `providers.corp.remote_jwks.http_uri.cluster`.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

func ferr(path, format string, args ...any) *FieldError {
	if len(args) == 0 {
		return &FieldError{Path: path, Msg: format}
	}
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// decodeStrict decodes JSON into string, json.Number, bool, nil, []any and
// map[string]any, refusing duplicate object members at any depth and trailing data.
func decodeStrict(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	v, err := decodeValue(d, "", 0)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, ferr("", "trailing data after the JSON document")
	}
	return v, nil
}

const maxDepth = 32

func decodeValue(d *json.Decoder, path string, depth int) (any, error) {
	if depth > maxDepth {
		return nil, ferr(path, "nested too deeply")
	}
	tok, err := d.Token()
	if err != nil {
		return nil, ferr(path, "invalid JSON: %v", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for d.More() {
				kt, err := d.Token()
				if err != nil {
					return nil, ferr(path, "invalid JSON: %v", err)
				}
				k, ok := kt.(string)
				if !ok {
					return nil, ferr(path, "invalid JSON")
				}
				p := join(path, k)
				if _, dup := m[k]; dup {
					return nil, ferr(p, "duplicate field")
				}
				v, err := decodeValue(d, p, depth+1)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if _, err := d.Token(); err != nil {
				return nil, ferr(path, "invalid JSON: %v", err)
			}
			return m, nil
		case '[':
			a := []any{}
			for i := 0; d.More(); i++ {
				v, err := decodeValue(d, path+"["+strconv.Itoa(i)+"]", depth+1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			if _, err := d.Token(); err != nil {
				return nil, ferr(path, "invalid JSON: %v", err)
			}
			return a, nil
		}
		return nil, ferr(path, "invalid JSON")
	default:
		return tok, nil
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "unknown"
}

// obj walks one JSON object, remembering which fields were read so that done() can
// report the first unknown one.
type obj struct {
	path string
	m    map[string]any
	used map[string]bool
}

func asObj(path string, v any) (*obj, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, ferr(path, "must be an object, got %s", typeName(v))
	}
	return &obj{path: path, m: m, used: map[string]bool{}}, nil
}

func (o *obj) p(key string) string { return join(o.path, key) }

func (o *obj) get(key string) (any, bool) {
	v, ok := o.m[key]
	if ok {
		o.used[key] = true
	}
	return v, ok
}

func (o *obj) has(key string) bool { _, ok := o.m[key]; return ok }

func (o *obj) done() error {
	var unknown []string
	for k := range o.m {
		if !o.used[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return ferr(o.p(unknown[0]), "unknown field")
}

func (o *obj) str(key string, dst *string) error {
	v, ok := o.get(key)
	if !ok {
		return nil
	}
	s, ok := v.(string)
	if !ok {
		return ferr(o.p(key), "must be a string, got %s", typeName(v))
	}
	*dst = s
	return nil
}

func (o *obj) reqStr(key string, dst *string) error {
	if err := o.str(key, dst); err != nil {
		return err
	}
	if *dst == "" {
		return ferr(o.p(key), "required")
	}
	return nil
}

func (o *obj) boolean(key string, dst *bool) error {
	v, ok := o.get(key)
	if !ok {
		return nil
	}
	b, ok := v.(bool)
	if !ok {
		return ferr(o.p(key), "must be true or false, got %s", typeName(v))
	}
	*dst = b
	return nil
}

func (o *obj) integer(key string, dst *int64, lo, hi int64) error {
	v, ok := o.get(key)
	if !ok {
		return nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return ferr(o.p(key), "must be an integer, got %s", typeName(v))
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return ferr(o.p(key), "must be an integer, got %s", string(n))
	}
	if i < lo || i > hi {
		return ferr(o.p(key), "must be in [%d, %d], got %d", lo, hi, i)
	}
	*dst = i
	return nil
}

// duration reads a duration string ("2s", "0.5s", "500ms", "10m"); protobuf JSON
// durations ("600s", "1.5s") are accepted as is.
func (o *obj) duration(key string, dst *time.Duration, min, max time.Duration) error {
	v, ok := o.get(key)
	if !ok {
		return nil
	}
	s, ok := v.(string)
	if !ok {
		return ferr(o.p(key), "must be a duration string like \"2s\" or \"500ms\", got %s", typeName(v))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return ferr(o.p(key), "invalid duration %q (use e.g. \"2s\", \"500ms\")", s)
	}
	if d < min || d > max {
		return ferr(o.p(key), "must be in [%s, %s], got %s", min, max, d)
	}
	*dst = d
	return nil
}

func (o *obj) array(key string) ([]any, string, error) {
	v, ok := o.get(key)
	if !ok {
		return nil, "", nil
	}
	a, ok := v.([]any)
	if !ok {
		return nil, "", ferr(o.p(key), "must be an array, got %s", typeName(v))
	}
	return a, o.p(key), nil
}

// strList reads an array of non-empty strings, checking each with check (if not nil)
// and refusing duplicates.
func (o *obj) strList(key string, check func(path, s string) (string, error)) ([]string, error) {
	a, path, err := o.array(key)
	if err != nil || a == nil {
		return nil, err
	}
	out := make([]string, 0, len(a))
	seen := map[string]bool{}
	for i, v := range a {
		ip := path + "[" + strconv.Itoa(i) + "]"
		s, ok := v.(string)
		if !ok {
			return nil, ferr(ip, "must be a string, got %s", typeName(v))
		}
		if s == "" {
			return nil, ferr(ip, "must not be empty")
		}
		if check != nil {
			if s, err = check(ip, s); err != nil {
				return nil, err
			}
		}
		if seen[s] {
			return nil, ferr(ip, "duplicate value %q", s)
		}
		seen[s] = true
		out = append(out, s)
	}
	return out, nil
}

func (o *obj) object(key string) (*obj, error) {
	v, ok := o.get(key)
	if !ok {
		return nil, nil
	}
	return asObj(o.p(key), v)
}

// isToken reports whether s is an RFC 9110 token (header names, methods, cookie names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// headerName validates and lower-cases a header name.
func headerName(path, s string) (string, error) {
	if !isToken(s) {
		return "", ferr(path, "invalid header name %q", s)
	}
	return strings.ToLower(s), nil
}
