package config_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/configjson"
)

// sectionOf maps the wire types that have their own README section to that section.
var sectionOf = map[reflect.Type]string{
	reflect.TypeFor[config.Spec]():          "top level",
	reflect.TypeFor[config.ProviderSpec]():  "providers",
	reflect.TypeFor[config.APIKeysSpec]():   "api_keys",
	reflect.TypeFor[config.BasicAuthSpec](): "basic_auth",
	reflect.TypeFor[config.ExtAuthzSpec]():  "ext_authz",
	reflect.TypeFor[config.RuleSpec]():      "rules",
}

// documented lists the rows a section's table must have for wire type t: one per
// field, nested objects flattened with dots (`remote_jwks.http_uri.uri`) unless they
// have their own section; arrays of objects are one row whose type names the
// element's fields (`{name, value_prefix}`), given in elems.
func documented(t reflect.Type, prefix string, rows map[string]bool, elems map[string]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		_, own := sectionOf[ft]
		if ft.Kind() == reflect.Struct && !own {
			documented(ft, prefix+name+".", rows, elems)
			continue
		}
		rows[prefix+name] = true
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			if _, own := sectionOf[ft.Elem()]; !own {
				var names []string
				for j := 0; j < ft.Elem().NumField(); j++ {
					n, _, _ := strings.Cut(ft.Elem().Field(j).Tag.Get("json"), ",")
					names = append(names, n)
				}
				elems[prefix+name] = "{" + strings.Join(names, ", ") + "}"
			}
		}
	}
}

// TestREADMETablesMatchSpec keeps ../README.md's configuration tables true: every
// field of the wire types has exactly one row in its section, and no row names a field
// that does not exist.
func TestREADMETablesMatchSpec(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	got := map[string]map[string]bool{}
	gotType := map[string]map[string]string{}
	section := ""
	tick := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "## ") && !strings.HasPrefix(line, "## Configuration") {
			section = ""
		}
		if h, ok := strings.CutPrefix(line, "### "); ok {
			section = strings.ToLower(strings.TrimSpace(h))
			got[section], gotType[section] = map[string]bool{}, map[string]string{}
			continue
		}
		if section == "" || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, " | ")
		require.GreaterOrEqual(t, len(cells), 2, line)
		for _, m := range tick.FindAllStringSubmatch(cells[0], -1) {
			assert.False(t, got[section][m[1]], "%s: %s has two rows", section, m[1])
			got[section][m[1]] = true
			if e := regexp.MustCompile(`\{[a-z0-9_, ]+\}`).FindString(cells[1]); e != "" {
				gotType[section][m[1]] = e
			}
		}
	}
	for typ, section := range sectionOf {
		want, wantElems := map[string]bool{}, map[string]string{}
		documented(typ, "", want, wantElems)
		require.Contains(t, got, section, "README has no ### %s table", section)
		assert.Equal(t, sorted(want), sorted(got[section]), "README ### %s rows vs %s fields", section, typ.Name())
		for f, e := range wantElems {
			assert.Equal(t, e, gotType[section][f], "README ### %s: the type of %s names the element's fields", section, f)
		}
	}
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestSpecFieldsHaveDocComments: the doc comments are the field reference (go doc, the
// CRD's OpenAPI descriptions), so none may be missing.
func TestSpecFieldsHaveDocComments(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "spec.go", nil, parser.ParseComments)
	require.NoError(t, err)
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok {
			return true
		}
		if st, ok := ts.Type.(*ast.StructType); ok {
			for _, fld := range st.Fields.List {
				assert.NotNil(t, fld.Doc, "%s.%s has no doc comment", ts.Name.Name, fld.Names[0].Name)
			}
		}
		return false
	})
}

// TestSpecRoundTrip: a Spec marshalled back to JSON (as the renderers do) compiles to
// the same Config, including the fields whose empty value differs from absent.
func TestSpecRoundTrip(t *testing.T) {
	raw := mustJSON(full())
	var s config.Spec
	require.NoError(t, configjson.Unmarshal(raw, &s))
	m := full()
	m["ext_authz"].(map[string]any)["allowed_client_headers"] = []any{}
	raw = mustJSON(m)
	s = config.Spec{}
	require.NoError(t, configjson.Unmarshal(raw, &s))
	want, err := config.Compile(&s)
	require.NoError(t, err)
	assert.Empty(t, want.ExtAuthz.AllowedClientHeaders)
	assert.Empty(t, want.Identity.ProviderHeader)

	again, err := config.Parse(mustJSON(s))
	require.NoError(t, err)
	assert.Equal(t, want, again)
}
