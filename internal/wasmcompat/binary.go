package wasmcompat

import (
	"errors"
	"fmt"
)

// Section ids of the WebAssembly binary format (core spec 5.5.2).
const (
	secCustom   = 0
	secType     = 1
	secImport   = 2
	secFunction = 3
	secTable    = 4
	secMemory   = 5
	secGlobal   = 6
	secExport   = 7
	secStart    = 8
	secElement  = 9
	secCode     = 10
	secData     = 11
	secDataCnt  = 12
)

// Value types.
const (
	valI32 = 0x7f
	valI64 = 0x7e
)

var errTruncated = errors.New("truncated")

// reader reads the binary format from a byte slice; the first error sticks.
type reader struct {
	b   []byte
	pos int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("offset %d: %s", r.pos, fmt.Sprintf(format, args...))
	}
}

func (r *reader) done() bool { return r.err != nil || r.pos >= len(r.b) }

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.pos >= len(r.b) {
		r.fail("%v", errTruncated)
		return 0
	}
	c := r.b[r.pos]
	r.pos++
	return c
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || r.pos+n > len(r.b) {
		r.fail("%v: want %d bytes", errTruncated, n)
		return nil
	}
	s := r.b[r.pos : r.pos+n]
	r.pos += n
	return s
}

// u32 reads an unsigned LEB128 of at most 32 bits and returns it with its encoded width.
func (r *reader) u32w() (uint32, int) {
	var v uint64
	start := r.pos
	for shift := 0; ; shift += 7 {
		if shift >= 35 {
			r.fail("u32 LEB128 too long")
			return 0, 0
		}
		c := r.byte()
		if r.err != nil {
			return 0, 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			break
		}
	}
	if v > 0xffffffff {
		r.fail("u32 LEB128 overflows")
		return 0, 0
	}
	return uint32(v), r.pos - start
}

func (r *reader) u32() uint32 {
	v, _ := r.u32w()
	return v
}

// sleb skips a signed LEB128 of at most maxBits bits.
func (r *reader) sleb(maxBits int) {
	n := 0
	for {
		c := r.byte()
		if r.err != nil {
			return
		}
		n++
		if n*7 > maxBits+7 {
			r.fail("signed LEB128 too long")
			return
		}
		if c&0x80 == 0 {
			return
		}
	}
}

func (r *reader) name() string {
	n := r.u32()
	return string(r.bytes(int(n)))
}

// appendU32 appends v as unsigned LEB128, minimal.
func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

// appendU32Width appends v as unsigned LEB128 padded to width bytes when it fits (Go's
// linker writes relocated function indices as 5-byte LEB128; keeping the width keeps
// the function bodies' sizes), else minimal.
func appendU32Width(b []byte, v uint32, width int) []byte {
	min := len(appendU32(nil, v))
	if width <= min || width > 5 {
		return appendU32(b, v)
	}
	for i := 0; i < width-1; i++ {
		b = append(b, byte(v&0x7f)|0x80)
		v >>= 7
	}
	return append(b, byte(v&0x7f))
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}

// section is one section of a module, its payload as it appears in the file.
type section struct {
	id      byte
	name    string // custom sections
	payload []byte // after the id and size (custom: after the name too)
}

const wasmHeader = "\x00asm\x01\x00\x00\x00"

func parseSections(b []byte) ([]section, error) {
	if len(b) < 8 || string(b[:8]) != wasmHeader {
		return nil, errors.New("not a WebAssembly binary module (no \\0asm version 1 header)")
	}
	r := &reader{b: b, pos: 8}
	var out []section
	for !r.done() {
		id := r.byte()
		size := r.u32()
		payload := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("section %d: %w", id, r.err)
		}
		s := section{id: id, payload: payload}
		if id == secCustom {
			pr := &reader{b: payload}
			s.name = pr.name()
			if pr.err != nil {
				return nil, fmt.Errorf("custom section name: %w", pr.err)
			}
			s.payload = payload[pr.pos:]
		}
		if id > secDataCnt {
			return nil, fmt.Errorf("unknown section id %d", id)
		}
		out = append(out, s)
	}
	return out, r.err
}

func encodeSections(secs []section) []byte {
	out := []byte(wasmHeader)
	for _, s := range secs {
		payload := s.payload
		if s.id == secCustom {
			payload = append(appendName(nil, s.name), s.payload...)
		}
		out = append(out, s.id)
		out = appendU32(out, uint32(len(payload)))
		out = append(out, payload...)
	}
	return out
}

// funcType is a function signature.
type funcType struct {
	params, results []byte
}

func (t funcType) String() string {
	name := func(vs []byte) string {
		s := "("
		for i, v := range vs {
			if i > 0 {
				s += ", "
			}
			switch v {
			case valI32:
				s += "i32"
			case valI64:
				s += "i64"
			case 0x7d:
				s += "f32"
			case 0x7c:
				s += "f64"
			default:
				s += fmt.Sprintf("0x%02x", v)
			}
		}
		return s + ")"
	}
	return name(t.params) + " -> " + name(t.results)
}

func (t funcType) equal(o funcType) bool {
	return string(t.params) == string(o.params) && string(t.results) == string(o.results)
}

func parseTypes(p []byte) ([]funcType, error) {
	r := &reader{b: p}
	n := r.u32()
	var out []funcType
	for i := uint32(0); i < n && r.err == nil; i++ {
		if f := r.byte(); f != 0x60 {
			r.fail("type %d: form 0x%02x is not a function type", i, f)
			break
		}
		np := r.u32()
		params := r.bytes(int(np))
		nr := r.u32()
		results := r.bytes(int(nr))
		out = append(out, funcType{params: params, results: results})
	}
	return out, r.err
}

// importEntry is one import; desc is its description bytes as in the file.
type importEntry struct {
	module, name string
	kind         byte
	typeIdx      uint32 // kind 0 (function)
	raw          []byte // the whole entry as encoded
}

func parseImports(p []byte) ([]importEntry, error) {
	r := &reader{b: p}
	n := r.u32()
	var out []importEntry
	for i := uint32(0); i < n && r.err == nil; i++ {
		start := r.pos
		e := importEntry{module: r.name(), name: r.name(), kind: r.byte()}
		switch e.kind {
		case 0: // function
			e.typeIdx = r.u32()
		case 1: // table: reftype, limits
			r.byte()
			skipLimits(r)
		case 2: // memory: limits
			skipLimits(r)
		case 3: // global: valtype, mut
			r.byte()
			r.byte()
		default:
			r.fail("import %d: unknown kind %d", i, e.kind)
		}
		e.raw = r.b[start:r.pos]
		out = append(out, e)
	}
	if r.err == nil && r.pos != len(p) {
		r.fail("import section: %d bytes left over", len(p)-r.pos)
	}
	return out, r.err
}

func skipLimits(r *reader) {
	switch flag := r.byte(); flag {
	case 0:
		r.u32()
	case 1:
		r.u32()
		r.u32()
	default:
		r.fail("limits flag 0x%02x not supported", flag)
	}
}
