package config_test

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/fault/config"
)

// Every field of the wire types is documented in the README's configuration tables
// (as `name` or `parent.name`).
func TestReadmeDocumentsEveryField(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	doc := string(readme)
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, parent string)
	walk = func(typ reflect.Type, parent string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || typ.PkgPath() != reflect.TypeOf(config.Spec{}).PkgPath() {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			assert.True(t, strings.Contains(doc, "`"+name+"`") || strings.Contains(doc, "`"+parent+"."+name+"`") ||
				strings.Contains(doc, "`"+name+"."), "README does not document %s.%s", typ.Name(), name)
			walk(f.Type, name)
		}
	}
	walk(reflect.TypeOf(config.Spec{}), "")
}
