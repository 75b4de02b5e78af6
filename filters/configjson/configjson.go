// Package configjson decodes filter configurations (Envoy/Istio `pluginConfig` JSON)
// strictly into typed wire structs, and reports every problem as a *FieldError that
// names the field path, e.g. `rules[2].limit: must be > 0, got -1`.
//
// Decoding uses github.com/go-json-experiment/json (the design behind Go's
// encoding/json/v2) with unknown members rejected. Beyond that library's defaults
// (duplicate member names, invalid UTF-8 and trailing data are errors; member names
// match case-sensitively), Unmarshal rewrites the library's JSON-pointer locations into
// the dotted paths our filters document, walking the Go type so that array indexes and
// map keys are told apart.
//
// Validation after decoding uses the same paths: build them with Field, Index and Key,
// and collect problems with Errors so that a user sees every error of a config at once.
//
// The package has no ABI calls and compiles for wasip1 and natively, so the controller
// and the CLI validate policies with the very code the filters run.
package configjson

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// FieldError is a configuration error at a field path such as `rules[2].limit` or
// `providers.corp.remote_jwks.http_uri.cluster`. An empty Path means the whole document.
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

// Errorf returns a *FieldError at path.
func Errorf(path, format string, args ...any) *FieldError {
	if len(args) == 0 {
		return &FieldError{Path: path, Msg: format}
	}
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Field is the path of member name inside the object at parent.
func Field(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// Index is the path of element i of the array at parent.
func Index(parent string, i int) string { return parent + "[" + strconv.Itoa(i) + "]" }

// Key is the path of the map entry key inside the object at parent: `parent.key` when
// key is a plain name ([A-Za-z0-9_-]+), `parent["key"]` (Go-quoted) otherwise, so that
// a key containing dots cannot be mistaken for a nested path.
func Key(parent, key string) string {
	if plainName(key) {
		return Field(parent, key)
	}
	return parent + "[" + strconv.Quote(key) + "]"
}

func plainName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Errors collects the problems found while validating a config. The zero value is
// ready to use.
type Errors struct{ list []*FieldError }

// Add records a problem at path.
func (e *Errors) Add(path, format string, args ...any) {
	e.list = append(e.list, Errorf(path, format, args...))
}

// AddErr records err at path: a *FieldError keeps its own path below path (its Path is
// taken as relative to path), any other error becomes the message.
func (e *Errors) AddErr(path string, err error) {
	if err == nil {
		return
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		p := path
		switch {
		case fe.Path == "":
		case path == "":
			p = fe.Path
		case strings.HasPrefix(fe.Path, "["):
			p = path + fe.Path
		default:
			p = path + "." + fe.Path
		}
		e.list = append(e.list, &FieldError{Path: p, Msg: fe.Msg})
		return
	}
	e.list = append(e.list, &FieldError{Path: path, Msg: err.Error()})
}

// Len is the number of problems recorded.
func (e *Errors) Len() int { return len(e.list) }

// List returns the problems in the order they were recorded.
func (e *Errors) List() []*FieldError { return e.list }

// Err returns nil when nothing was recorded, the single *FieldError when there is one,
// and a ListError holding all of them otherwise.
func (e *Errors) Err() error {
	switch len(e.list) {
	case 0:
		return nil
	case 1:
		return e.list[0]
	}
	return ListError(append([]*FieldError(nil), e.list...))
}

// ListError is several configuration errors, one per line when printed.
type ListError []*FieldError

func (l ListError) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find the first *FieldError and errors.Is look through all.
func (l ListError) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// MaxBytes is the largest configuration Unmarshal accepts.
const MaxBytes = 4 << 20

// Unmarshal decodes the JSON document data into v (a pointer to a wire struct)
// strictly: unknown members, duplicate members, wrong types, numbers out of the Go
// type's range, invalid UTF-8 and trailing data are errors. The error is a *FieldError
// naming the path of the offending member.
//
// Caveat: JSON null leaves the Go value at its zero value (absent and null are the
// same); validation decides whether that is allowed.
func Unmarshal(data []byte, v any) error {
	if len(data) > MaxBytes {
		return Errorf("", "config is %d bytes, more than the %d allowed", len(data), MaxBytes)
	}
	err := json.Unmarshal(data, v, json.RejectUnknownMembers(true))
	if err == nil {
		return nil
	}
	return translate(err, reflect.TypeOf(v))
}

func translate(err error, root reflect.Type) error {
	var se *json.SemanticError
	if errors.As(err, &se) {
		path := pointerPath(se.JSONPointer, root)
		switch {
		case errors.Is(se.Err, json.ErrUnknownName):
			return Errorf(path, "unknown field")
		case se.Err != nil && se.GoType != nil && se.JSONKind != 0:
			var fe *FieldError
			if errors.As(se.Err, &fe) { // from a wire type's own UnmarshalJSON
				return below(path, fe)
			}
			if strings.Contains(se.Err.Error(), "out of range") {
				return Errorf(path, "%s is out of range for %s", se.JSONValue, goTypeName(se.GoType))
			}
			return Errorf(path, "expected %s, got %s", goTypeName(se.GoType), jsonKindName(se.JSONKind, se.JSONValue))
		case se.Err != nil:
			var fe *FieldError
			if errors.As(se.Err, &fe) {
				return below(path, fe)
			}
			return Errorf(path, "%v", se.Err)
		case se.GoType != nil:
			return Errorf(path, "expected %s, got %s", goTypeName(se.GoType), jsonKindName(se.JSONKind, se.JSONValue))
		}
		return Errorf(path, "%v", err)
	}
	var sy *jsontext.SyntacticError
	if errors.As(err, &sy) {
		path := pointerPath(sy.JSONPointer, root)
		if errors.Is(sy.Err, jsontext.ErrDuplicateName) {
			return Errorf(path, "duplicate field")
		}
		return Errorf(path, "invalid JSON at byte %d: %v", sy.ByteOffset, sy.Err)
	}
	return Errorf("", "invalid JSON: %v", err)
}

// below is fe, returned by a wire type's own UnmarshalJSON with a path relative to the
// value it decodes (e.g. "[1]" for the second element), placed at path.
func below(path string, fe *FieldError) *FieldError {
	var e Errors
	e.AddErr(path, fe)
	return e.list[0]
}

// pointerPath turns a JSON pointer ("/rules/2/limit") into a field path
// ("rules[2].limit"), walking t so that array elements and map keys are told apart.
func pointerPath(p jsontext.Pointer, t reflect.Type) string {
	path := ""
	for tok := range p.Tokens() {
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		kind := reflect.Invalid
		if t != nil {
			kind = t.Kind()
		}
		switch kind {
		case reflect.Slice, reflect.Array:
			if i, err := strconv.Atoi(tok); err == nil {
				path = Index(path, i)
			} else {
				path = Key(path, tok)
			}
			t = t.Elem()
		case reflect.Map:
			path = Key(path, tok)
			t = t.Elem()
		case reflect.Struct:
			path = Field(path, tok)
			t = fieldType(t, tok)
		default:
			path = Key(path, tok)
			t = nil
		}
	}
	return path
}

// fieldType is the type of the member named name in struct t (json tag name, or the Go
// name when untagged; embedded structs are searched), or nil.
func fieldType(t reflect.Type, name string) reflect.Type {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		n, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && n == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if r := fieldType(ft, name); r != nil {
					return r
				}
			}
			continue
		}
		if n == "" {
			n = f.Name
		}
		if n == name {
			return f.Type
		}
	}
	return nil
}

func goTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeOf(Duration(0)) {
		return "a duration string such as \"1.5s\""
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

func jsonKindName(k jsontext.Kind, v jsontext.Value) string {
	switch k {
	case 'n':
		return "null"
	case 'f', 't':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		if len(v) > 0 && len(v) <= 32 {
			return "the number " + string(v)
		}
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "a JSON value"
}

// Duration is a span of time written as a string in Go's duration syntax ("1.5s",
// "200ms", "10m", "1h30m"), as Envoy and Istio write durations in JSON. Negative
// durations are refused when decoding; ranges are checked by validation.
//
// +kubebuilder:validation:Type=string
// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
type Duration time.Duration

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(time.Duration(d).String())), nil
}

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" { // null is absent, as for every other field
		return nil
	}
	s, err := strconv.Unquote(string(b))
	if err != nil || len(b) < 2 || b[0] != '"' {
		return Errorf("", "expected a duration string such as \"1.5s\", got %s", KindOf(b))
	}
	v, err := time.ParseDuration(s)
	if err != nil || strings.HasPrefix(s, "+") {
		return Errorf("", "invalid duration %q (use a number with a unit: \"1.5s\", \"200ms\", \"10m\")", s)
	}
	if v < 0 {
		return Errorf("", "duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

// KindOf names the kind of the raw JSON value b ("a string", "an array", "the number
// 5", ...) for error messages of wire types with their own UnmarshalJSON.
func KindOf(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	}
	return "the number " + string(b)
}
