package examples

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// marker introduces a checked snippet in the README: the ```go block right after it
// must equal the file (from the first line starting with the quoted text, if given).
var marker = regexp.MustCompile("<!-- example: (\\S+)(?: from \"([^\"]+)\")? -->\n```go\n((?s:.*?))```")

var update = flag.Bool("update", false, "rewrite the README's snippets from the example files")

// TestReadmeSnippetsAreTheExamples checks every marked snippet of the top-level README
// against the example file it names, and that both examples are shown. With -update it
// rewrites the snippets instead: go test ./examples -run Readme -update.
func TestReadmeSnippetsAreTheExamples(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	shown := map[string]bool{}
	updated := marker.ReplaceAllStringFunc(string(readme), func(block string) string {
		m := marker.FindStringSubmatch(block)
		path, from, snippet := m[1], m[2], m[3]
		shown[path] = true
		src, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(path)))
		if !assert.NoError(t, err, path) {
			return block
		}
		want := string(src)
		if from != "" {
			i := strings.Index(want, "\n"+from)
			if !assert.GreaterOrEqual(t, i, 0, "%s has no line starting with %q", path, from) {
				return block
			}
			want = want[i+1:]
		}
		if *update {
			return strings.TrimSuffix(block, snippet+"```") + want + "```"
		}
		assert.Equal(t, want, snippet, "README snippet of %s (go test ./examples -run Readme -update)", path)
		return block
	})
	if *update {
		require.NoError(t, os.WriteFile("../README.md", []byte(updated), 0o644))
	}
	for _, p := range []string{"examples/headerrewrite/main.go", "examples/requireheader/main.go"} {
		assert.True(t, shown[p], "README must show %s", p)
	}
}
