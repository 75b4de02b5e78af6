package config_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fieldDocs maps "TypeName.FieldName" to the field's doc comment in spec.go.
func fieldDocs(t *testing.T) map[string]string {
	f, err := parser.ParseFile(token.NewFileSet(), "spec.go", nil, parser.ParseComments)
	require.NoError(t, err)
	out := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok {
			return true
		}
		if st, ok := ts.Type.(*ast.StructType); ok {
			for _, fld := range st.Fields.List {
				if fld.Doc != nil {
					out[ts.Name.Name+"."+fld.Names[0].Name] = fld.Doc.Text()
				}
			}
		}
		return false
	})
	return out
}

// lookup finds the struct field at a dotted README path below t.
func lookup(t reflect.Type, path string) (reflect.Type, reflect.StructField, bool) {
	parts := strings.Split(path, ".")
	for i, p := range parts {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		found := false
		for j := 0; j < t.NumField(); j++ {
			f := t.Field(j)
			if n, _, _ := strings.Cut(f.Tag.Get("json"), ","); n == p {
				if i == len(parts)-1 {
					return t, f, true
				}
				t, found = f.Type, true
				break
			}
		}
		if !found {
			return nil, reflect.StructField{}, false
		}
	}
	return nil, reflect.StructField{}, false
}

// TestREADMEDefaultsMatchDocComments: a default value in a README row (a backticked
// value, a number or a boolean that is not the Go zero value) is the one the field's
// doc comment gives after "Default".
func TestREADMEDefaultsMatchDocComments(t *testing.T) {
	docs := fieldDocs(t)
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	skip := map[string]bool{"{}": true, "[]": true, `""`: true, "false": true, "0": true}
	section, checked := "", 0
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "## ") {
			section = ""
		}
		if h, ok := strings.CutPrefix(line, "### "); ok {
			section = strings.ToLower(strings.TrimSpace(h))
			continue
		}
		var typ reflect.Type
		for ty, sec := range sectionOf {
			if sec == section {
				typ = ty
			}
		}
		cells := strings.Split(line, " | ")
		if typ == nil || !strings.HasPrefix(line, "| `") || len(cells) < 3 {
			continue
		}
		def := strings.ReplaceAll(strings.TrimSpace(cells[2]), "**", "")
		value := ""
		if _, rest, ok := strings.Cut(def, "`"); ok {
			value, _, _ = strings.Cut(rest, "`")
		} else if w := strings.Fields(def); len(w) > 0 && (w[0] == "true" || strings.Trim(w[0], "0123456789") == "") {
			value = w[0]
		}
		if value == "" || skip[value] {
			continue
		}
		name := strings.Trim(strings.Fields(cells[0][2:])[0], "`")
		owner, f, ok := lookup(typ, name)
		require.True(t, ok, "%s: %s", section, name)
		doc := docs[owner.Name()+"."+f.Name]
		_, after, ok := strings.Cut(doc, "Default")
		if assert.True(t, ok, "%s.%s: the doc comment gives no default (README: %s)", owner.Name(), f.Name, value) {
			assert.Contains(t, after, value, "%s.%s: README default vs doc comment", owner.Name(), f.Name)
		}
		checked++
	}
	assert.Greater(t, checked, 15)
}
