package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/filters/configjson"
	"github.com/meshplug/meshplug/internal/yamldoc"
)

// policyDoc is one document of a policy file, decoded and validated.
type policyDoc struct {
	file   string
	index  int // 1-based
	line   int
	data   []byte                  // the document's YAML
	policy *v1alpha1.TrafficPolicy // nil when it could not be decoded
	err    error
}

// where names the document for error messages: `file:line: document 2 (TrafficPolicy
// shop/orders)`.
func (d policyDoc) where() string { return d.whereLine(d.line) }

// at names the field at path for messages about it: where(), with the line of the
// field's key (`file:17: document 2 (...)`), or of the deepest part of the path the
// document has.
func (d policyDoc) at(path string) string {
	if l := fieldLine(d.data, path); l > 0 {
		return d.whereLine(d.line + l - 1)
	}
	return d.where()
}

func (d policyDoc) whereLine(line int) string {
	s := fmt.Sprintf("%s:%d: document %d", d.file, line, d.index)
	if d.policy != nil && d.policy.Name != "" {
		s += " (" + d.policy.String() + ")"
	}
	return s
}

// errorLines are d's problems, one line each, led by where().
func (d policyDoc) errorLines() []string {
	var fes configjson.ListError
	switch e := d.err.(type) {
	case nil:
		return nil
	case configjson.ListError:
		fes = e
	case *configjson.FieldError:
		fes = configjson.ListError{e}
	default:
		return []string{d.where() + ": " + d.err.Error()}
	}
	out := make([]string, len(fes))
	for i, fe := range fes {
		out[i] = d.at(fe.Path) + ": " + fe.Error()
		if fe.Msg == "unknown field" {
			out[i] += didYouMean(fe.Path)
		}
	}
	return out
}

// readPolicies decodes and validates every document of files ("-" is stdin).
func readPolicies(files []string, stdin io.Reader) ([]policyDoc, error) {
	var out []policyDoc
	for _, f := range files {
		var b []byte
		var err error
		if f == "-" {
			b, err = io.ReadAll(stdin)
		} else {
			b, err = os.ReadFile(f)
		}
		if err != nil {
			return nil, err
		}
		docs := yamldoc.Split(b)
		if len(docs) == 0 {
			out = append(out, policyDoc{file: f, index: 1, line: 1, err: fmt.Errorf("no YAML document")})
		}
		for i, doc := range docs {
			d := policyDoc{file: f, index: i + 1, line: doc.Line, data: doc.Data}
			d.policy, d.err = v1alpha1.Decode(doc.Data)
			if d.err == nil {
				d.err = d.policy.Validate()
			}
			out = append(out, d)
		}
	}
	return out, nil
}

// report prints every document's errors to w and returns errReported if there were
// any.
func report(w io.Writer, docs []policyDoc) error {
	var lines []string
	for _, d := range docs {
		lines = append(lines, d.errorLines()...)
	}
	if len(lines) == 0 {
		return nil
	}
	fmt.Fprintln(w, strings.Join(lines, "\n"))
	return errReported
}
