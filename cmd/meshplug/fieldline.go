package main

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/meshplug/meshplug/api/v1alpha1"
)

// pathSegment is one step of a field path (`spec.auth.rules[0].require`,
// `providers["a.b"]`): a member name or key, or an array index.
type pathSegment struct {
	name  string
	index int // -1 for a name
}

// parsePath splits a configjson field path into its segments; ok is false for a path
// it cannot read.
func parsePath(p string) ([]pathSegment, bool) {
	var out []pathSegment
	for i := 0; i < len(p); {
		switch p[i] {
		case '.':
			i++
		case '[':
			end := strings.IndexByte(p[i:], ']')
			if end < 0 {
				return nil, false
			}
			inner := p[i+1 : i+end]
			if strings.HasPrefix(inner, `"`) {
				// A quoted key may contain ']': find the closing quote first.
				q, err := strconv.QuotedPrefix(p[i+1:])
				if err != nil || !strings.HasPrefix(p[i+1+len(q):], "]") {
					return nil, false
				}
				k, _ := strconv.Unquote(q)
				out = append(out, pathSegment{name: k, index: -1})
				i += len(q) + 2
				continue
			}
			n, err := strconv.Atoi(inner)
			if err != nil {
				return nil, false
			}
			out = append(out, pathSegment{index: n})
			i += end + 1
		default:
			end := strings.IndexAny(p[i:], ".[")
			if end < 0 {
				end = len(p) - i
			}
			out = append(out, pathSegment{name: p[i : i+end], index: -1})
			i += end
		}
	}
	return out, true
}

// fieldLine is the 1-based line in doc (one YAML document) of the field at path: its
// key for a member, its item for an array element; the line of the deepest part of
// the path the document has when it has not all of it (a required field that is
// missing is reported where its parent is). 0 when doc does not parse.
func fieldLine(doc []byte, path string) int {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil || len(root.Content) == 0 {
		return 0
	}
	segs, ok := parsePath(path)
	if !ok {
		return 0
	}
	n, line := root.Content[0], root.Content[0].Line
	for _, s := range segs {
		var next *yaml.Node
		switch {
		case s.index >= 0 && n.Kind == yaml.SequenceNode && s.index < len(n.Content):
			next = n.Content[s.index]
			line = next.Line
		case s.index < 0 && n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == s.name {
					next = n.Content[i+1]
					line = n.Content[i].Line
				}
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return line
}

// didYouMean is ` (did you mean "x"?)` for an unknown field at path whose name is
// close to a field that its parent (a TrafficPolicy type) has, else "".
func didYouMean(path string) string {
	segs, ok := parsePath(path)
	if !ok || len(segs) == 0 || segs[len(segs)-1].index >= 0 {
		return ""
	}
	t := reflect.TypeFor[v1alpha1.TrafficPolicy]()
	for _, s := range segs[:len(segs)-1] {
		t = deref(t)
		switch t.Kind() {
		case reflect.Slice, reflect.Array, reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			f, ok := jsonField(t, s.name)
			if !ok {
				return ""
			}
			t = f
		default:
			return ""
		}
	}
	t = deref(t)
	if t.Kind() != reflect.Struct {
		return ""
	}
	unknown := segs[len(segs)-1].name
	best, bestDist := "", len(unknown)/3+2
	for _, name := range jsonNames(t) {
		if d := editDistance(strings.ToLower(unknown), strings.ToLower(name)); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// jsonNames are the member names of struct t (embedded inline structs included).
func jsonNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" && (f.Anonymous || strings.Contains(opts, "inline")) {
			if et := deref(f.Type); et.Kind() == reflect.Struct {
				out = append(out, jsonNames(et)...)
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}

// jsonField is the type of the member of struct t named name.
func jsonField(t reflect.Type, name string) (reflect.Type, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "" && (f.Anonymous || strings.Contains(opts, "inline")) {
			if et := deref(f.Type); et.Kind() == reflect.Struct {
				if ft, ok := jsonField(et, name); ok {
					return ft, true
				}
			}
			continue
		}
		if tag == name || tag == "" && f.Name == name {
			return f.Type, true
		}
	}
	return nil, false
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
