// Command wasmsize breaks a Go-built .wasm down by package: the bytes of each
// function body in the code section, named by the module's name section, summed per Go
// package (or per -prefix), beside the data section (which the name section does not
// split: type data, strings, tables) and the rest. It is how docs/benchmarks.md says
// what each dependency costs the bundle:
//
//	go run ./hack/wasmsize [-prefix P]... [-top 25] build/meshplug.wasm
//
// Compare two modules with -diff: go run ./hack/wasmsize -diff build/auth.wasm build/meshplug.wasm
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

func main() {
	var prefixes []string
	flag.Func("prefix", "also sum the packages starting with this (linker-mangled) prefix into one row, e.g. github.com_go_json_experiment_json (repeatable)", func(p string) error {
		prefixes = append(prefixes, p)
		return nil
	})
	top := flag.Int("top", 25, "rows to print (0 = all)")
	diff := flag.Bool("diff", false, "two modules: print the groups whose size differs, second minus first")
	flag.Parse()
	if flag.NArg() != 1 && !(*diff && flag.NArg() == 2) {
		fmt.Fprintln(os.Stderr, "usage: wasmsize [-prefix P]... [-top N] FILE.wasm | -diff A.wasm B.wasm")
		os.Exit(2)
	}
	var sizes []map[string]int
	for _, f := range flag.Args() {
		b, err := os.ReadFile(f)
		if err != nil {
			fail(err)
		}
		s, err := breakdown(b, prefixes)
		if err != nil {
			fail(fmt.Errorf("%s: %w", f, err))
		}
		sizes = append(sizes, s)
	}
	rows := sizes[0]
	if *diff {
		rows = map[string]int{}
		for k, v := range sizes[1] {
			rows[k] = v - sizes[0][k]
		}
		for k, v := range sizes[0] {
			if _, ok := sizes[1][k]; !ok {
				rows[k] = -v
			}
		}
	}
	print(rows, *top)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "wasmsize:", err)
	os.Exit(1)
}

func print(rows map[string]int, top int) {
	type row struct {
		name string
		n    int
	}
	var rs []row
	total := 0
	for k, v := range rows {
		if v != 0 {
			rs = append(rs, row{k, v})
		}
		total += v
	}
	sort.Slice(rs, func(i, j int) bool {
		if abs(rs[i].n) != abs(rs[j].n) {
			return abs(rs[i].n) > abs(rs[j].n)
		}
		return rs[i].name < rs[j].name
	})
	fmt.Printf("%12s  %s\n", "bytes", "group")
	for i, r := range rs {
		if top > 0 && i == top {
			rest := 0
			for _, r := range rs[i:] {
				rest += r.n
			}
			fmt.Printf("%12d  (%d more)\n", rest, len(rs)-i)
			break
		}
		fmt.Printf("%12d  %s\n", r.n, r.name)
	}
	fmt.Printf("%12d  total\n", total)
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// breakdown sums the module's bytes: each function body by its group, the data
// section as "[data]", the name section as "[names]", every other section as
// "[other sections]".
func breakdown(b []byte, prefixes []string) (map[string]int, error) {
	if len(b) < 8 || !bytes.Equal(b[:4], []byte("\x00asm")) {
		return nil, errors.New("not a wasm module")
	}
	r := bytes.NewReader(b[8:])
	out := map[string]int{"[header]": 8}
	var imports int  // imported functions: function indices start after them
	var bodies []int // code section body sizes (with their size prefix), by defined index
	names := map[int]string{}
	for r.Len() > 0 {
		id, _ := r.ReadByte()
		start := r.Len()
		size, err := uleb(r)
		if err != nil {
			return nil, err
		}
		hdr := start - r.Len() + 1
		sec := make([]byte, size)
		if _, err := io.ReadFull(r, sec); err != nil {
			return nil, err
		}
		s := bytes.NewReader(sec)
		switch id {
		case 2: // imports
			n, _ := uleb(s)
			for range n {
				skipName(s)
				skipName(s)
				kind, _ := s.ReadByte()
				switch kind {
				case 0:
					imports++
					_, _ = uleb(s)
				case 1: // table: reftype + limits
					_, _ = s.ReadByte()
					skipLimits(s)
				case 2:
					skipLimits(s)
				case 3:
					_, _ = s.ReadByte()
					_, _ = s.ReadByte()
				}
			}
			out["[other sections]"] += hdr + int(size)
		case 10: // code
			n, _ := uleb(s)
			before := s.Len()
			for range n {
				at := s.Len()
				bs, err := uleb(s)
				if err != nil {
					return nil, err
				}
				_, _ = s.Seek(int64(bs), io.SeekCurrent)
				bodies = append(bodies, at-s.Len())
			}
			out["[code section overhead]"] += hdr + int(size) - (before - s.Len())
		case 11:
			out["[data]"] += hdr + int(size)
		case 0:
			name := readName(s)
			if name == "name" {
				parseNames(s, names)
				out["[names]"] += hdr + int(size)
			} else {
				out["[custom "+name+"]"] += hdr + int(size)
			}
		default:
			out["[other sections]"] += hdr + int(size)
		}
	}
	for i, n := range bodies {
		name, ok := names[imports+i]
		if !ok {
			name = "?"
		}
		out[group(name, prefixes)] += n
	}
	return out, nil
}

func parseNames(s *bytes.Reader, names map[int]string) {
	for s.Len() > 0 {
		sub, _ := s.ReadByte()
		size, _ := uleb(s)
		if sub != 1 {
			_, _ = s.Seek(int64(size), io.SeekCurrent)
			continue
		}
		n, _ := uleb(s)
		for range n {
			idx, _ := uleb(s)
			names[int(idx)] = readName(s)
		}
	}
}

// domain matches the start of a package path with a domain, as Go's wasm linker
// writes it ("github.com_", "golang.org_").
var domain = regexp.MustCompile(`^[a-z0-9.-]+\.(com|org|net|io|dev|in|land|sh|xyz)_`)

// group is the Go package of a function name as Go's wasm linker writes it, with the
// package path's "/" (and "-") as "_": "runtime.mallocgc", "fmt.(*pp).printArg" as
// "fmt.__pp_.printArg", "github.com_go_json_experiment_json.(*decodeState).next". A
// package path with a domain ends at the first "." after the domain. With prefix, the
// groups are cut to the longest of the given prefixes they start with.
func group(sym string, prefixes []string) string {
	from := 0
	if m := domain.FindStringIndex(sym); m != nil {
		from = m[1]
	}
	pkg := sym
	if dot := strings.IndexByte(sym[from:], '.'); dot >= 0 {
		pkg = sym[:from+dot]
	}
	best := ""
	for _, p := range prefixes {
		if strings.HasPrefix(pkg, p) && len(p) > len(best) {
			best = p
		}
	}
	if best != "" {
		return best + "*"
	}
	return pkg
}

func uleb(r *bytes.Reader) (uint64, error) { return binary.ReadUvarint(r) }

func readName(r *bytes.Reader) string {
	n, _ := uleb(r)
	b := make([]byte, n)
	_, _ = io.ReadFull(r, b)
	return string(b)
}

func skipName(r *bytes.Reader) { _ = readName(r) }

func skipLimits(r *bytes.Reader) {
	flags, _ := r.ReadByte()
	_, _ = uleb(r)
	if flags&1 != 0 {
		_, _ = uleb(r)
	}
}
