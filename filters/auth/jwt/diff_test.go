package jwt

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/meshplug/meshplug/internal/race"
)

// DiffParse and DiffDecodeObject let the external fuzz targets run the differential
// check.
var (
	DiffParse        = diffParse
	DiffDecodeObject = diffDecodeObject
)

// diffParse runs Parse and the reference implementation on the same input and
// describes the first difference: accept/reject, Reason and Detail of an error, or any
// decoded field (reflect.DeepEqual, so Go types of Raw values must match too).
func diffParse(raw string, maxBytes int) string {
	got, gerr := Parse(raw, maxBytes)
	want, werr := refParse(raw, maxBytes)
	if (gerr == nil) != (werr == nil) {
		return fmt.Sprintf("accept differs: new err=%v, reference err=%v", gerr, werr)
	}
	if gerr != nil {
		g, ok1 := gerr.(*Error)
		w, ok2 := werr.(*Error)
		if !ok1 || !ok2 || *g != *w {
			return fmt.Sprintf("error differs: new %#v, reference %#v", gerr, werr)
		}
		return ""
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("decoded differently:\n new       %#v\n reference %#v", got, want)
	}
	return ""
}

func diffDecodeObject(b []byte) string {
	got, gerr := decodeObject(b)
	want, werr := refDecodeObject(b)
	if want != nil {
		want = refNumbers(want).(map[string]any)
	}
	if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
		return fmt.Sprintf("error differs: new %v, reference %v", gerr, werr)
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("decoded differently:\n new       %#v\n reference %#v", got, want)
	}
	return ""
}

func b64s(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// token assembles a compact JWS from raw header and payload JSON (the signature is
// never checked by Parse).
func token(header, payload string) string {
	return b64s(header) + "." + b64s(payload) + ".c2ln"
}

const goodHeader = `{"alg":"HS256","typ":"JWT","kid":"k1"}`
const goodPayload = `{"iss":"https://idp","sub":"alice","aud":"api","exp":2000,"iat":1000}`

// edgeJSON are hand-picked documents around every rule of the decoder; each is tried
// as a header, as a payload and on its own.
var edgeJSON = []string{
	``, ` `, `{`, `}`, `[`, `]`, `:`, `,`, `{}`, ` {} `, "\t{\r\n}\n", `{} `, `{}x`, `{}{}`, `{} 1`, `{}]`, `{},`,
	`[]`, `[1]`, `"x"`, `"x"{}`, `"x`, `"\x"`, `1`, `-`, `-0`, `1.`, `1.x`, `01`, `0x`, `1e`, `1ex`, `1e5`, `1.5x`,
	`true`, `tru`, `trux`, `truex`, `nul`, `null`, `false`, `x`, "\xef\xbb\xbf{}", "\x00{}",
	`{"a"}`, `{"a":}`, `{"a":1,}`, `{,"a":1}`, `{"a":1 "b":2}`, `{"a":1,"b"}`, `{"a" :1 , "b" : 2 }`, `{"a":1`, `{"a":1,"a"`,
	`{"a":1,"a":x`, `{"a":x,"a":1}`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, "{\"\xff\":1,\"\xfe\":2}", `{"\ud800":1,"\udfff":2}`,
	`{"a":{"b":1,"b":2}}`, `{"a":[{"b":1,"b":2}]}`, `{"a":01}`, `{"a":-0}`, `{"a":1e400}`, `{"a":-1e400}`, `{"a":1e-400}`,
	`{"a":12345678901234567890123456789}`, `{"a":1.0e+2}`, `{"a":1E-2}`, `{"a":.5}`, `{"a":+1}`, `{"a":NaN}`, `{"a":Infinity}`,
	`{"a":[]}`, `{"a":{}}`, `{"a":[1,2,[3,[4,{}]]]}`, `{"a":[1,]}`, `{"a":[,1]}`, `{"a":[1 2]}`, `{"a":{"b"}}`, `{"a":{"b":1,}}`,
	`{"a":"\u0000"}`, `{"a":"\ud83d\ude00"}`, `{"a":"\ud83d"}`, `{"a":"\ude00"}`, `{"a":"\ud83d\u0041"}`, `{"a":"\ud83d\ud83d\ude00"}`,
	`{"a":"\ud83dx"}`, `{"a":"\ud83d\"}`, `{"a":"\u12"}`, `{"a":"\u12G4"}`, `{"a":"\'"}`, `{"a":"\/\b\f\n\r\t\"\\"}`, `{"a":"\U0041"}`,
	"{\"a\":\"\x01\"}", "{\"a\":\"\x7f\"}", "{\"a\":\"\xff\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xc3\"}", "{\"a\":\"\xef\xbf\xbd\"}",
	"{\"a\":\"é\\n\xff\"}", `{"a":"caf\u00e9"}`, `{"a":true,"b":false,"c":null}`, `{"a":truee}`, `{"a":nul}`,
	`{"alg":"HS256"}`, `{"alg":"none"}`, `{"alg":"HS256","alg":"HS256"}`, `{"\u0061lg":"HS256"}`, `{"alg":"HS256","\u0061lg":"x"}`,
	`{"alg":"HS\u0032256"}`, `{"alg":"HS25\u0036"}`, `{"alg":1}`, `{"alg":null}`, `{"alg":["HS256"]}`, `{"alg":"HS256","kid":null}`,
	`{"alg":"HS256","kid":"é\ud800"}`, `{"alg":"HS256","typ":1}`, `{"alg":"HS256","crit":[]}`, `{"alg":"HS256","enc":1}`,
	`{"alg":"nope","crit":1}`, `{"alg":"nope","kid":1}`, `{"alg":"HS256","x5c":[{"a":[1,2,{"b":null}]}],"jku":"u"}`,
	`{"kid":"x"}`, `{"alg":"HS256"} x`, `{"alg":"HS256","a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"a":19}`,
	`{"iss":"i","sub":"s","jti":"j","aud":["a","b"],"exp":1.5,"nbf":-1,"iat":12345678901}`, `{"iss":1}`, `{"sub":null}`, `{"jti":[]}`,
	`{"aud":[]}`, `{"aud":"x"}`, `{"aud":["x",null]}`, `{"aud":{}}`, `{"aud":null}`, `{"exp":"1"}`, `{"exp":-0}`, `{"exp":1e308}`,
	`{"exp":1e309}`, `{"exp":-1e309}`, `{"exp":1e-400}`, `{"exp":4.9e-324}`, `{"exp":2e-324}`, `{"nbf":true}`, `{"iat":null}`,
	`{"exp":179769313486231580793728971405303415079934132710037826936173778980444968292764750373396250543}`,
	`{"exp":1797693134862315807937289714053034150799341327100378269361737789804449682927647503733962505430}`,
	`{"scope":"a b","roles":["x",1,true,null,1.5e3],"realm_access":{"roles":["admin"]},"n":12345678901234567890}`,
	`{"exp":2000,"exp":2000}`, `{"\u0065xp":"x"}`, `{"":1}`, `{"":1,"":2}`,
}

// randJSON generates random, mostly valid JSON for the differential tests: registered
// claim and header names, escapes, invalid UTF-8, odd numbers, nesting and duplicates.
type randJSON struct {
	r *rand.Rand
	b strings.Builder
}

var (
	randKeys = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "alg", "kid", "typ", "crit", "enc", "scope", "roles",
		"a", "b", "", `\u0061lg`, `\u0065xp`, "é", "\xff", `\ud800`, `\ud83d\ude00`, `a\"b`, `x\\y`}
	randStrings = []string{"", "HS256", "RS256", "ES384", "none", "HS256 ", "api", "https://idp", "a b c", `\u0000`, `\ud83d\ude00`,
		`\ud800`, `\udc00`, `\ud800\ud800`, `\ud800\u0041`, `\ud800x`, `\n\t\r\b\f\/\\\"`, "\xff", "\xed\xa0\x80", "é", "日本",
		"\xc3", "\xef\xbf\xbd", `\u00e9`, `\uFFFD`, `\uD83D\uDE00`, "\x7f"}
	randNums = []string{"0", "-0", "1", "-1", "1.5", "2000", "1000", "1e400", "-1e400", "1e-400", "1E+2", "0.0", "12345678901234567890",
		"1e308", "1.7976931348623157e308", "1.8e308", "4.9e-324", "-0.0e-0", "9007199254740993", "1500", "1561"}
	randWS = []string{"", "", "", " ", "\n", "\t", "\r\n  "}
)

func (g *randJSON) ws() { g.b.WriteString(randWS[g.r.IntN(len(randWS))]) }

func (g *randJSON) str(choices []string) {
	g.b.WriteByte('"')
	for n := g.r.IntN(3); n >= 0; n-- {
		g.b.WriteString(choices[g.r.IntN(len(choices))])
	}
	g.b.WriteByte('"')
}

func (g *randJSON) value(depth int) {
	g.ws()
	k := g.r.IntN(10)
	if depth > 4 {
		k %= 6
	}
	switch k {
	case 0, 1:
		g.str(randStrings)
	case 2, 3:
		g.b.WriteString(randNums[g.r.IntN(len(randNums))])
	case 4:
		g.b.WriteString([]string{"true", "false", "null"}[g.r.IntN(3)])
	case 5:
		g.b.WriteString(fmt.Sprint(g.r.Int64N(1<<53) - 1<<52))
	case 6, 7:
		g.object(depth + 1)
	default:
		g.b.WriteByte('[')
		n := g.r.IntN(5)
		for i := range n {
			if i > 0 {
				g.ws()
				g.b.WriteByte(',')
			}
			g.value(depth + 1)
		}
		g.ws()
		g.b.WriteByte(']')
	}
	g.ws()
}

func (g *randJSON) object(depth int) {
	g.b.WriteByte('{')
	n := g.r.IntN(7)
	for i := range n {
		if i > 0 {
			g.b.WriteByte(',')
		}
		g.ws()
		g.str(randKeys[:g.r.IntN(len(randKeys))+1])
		g.ws()
		g.b.WriteByte(':')
		g.value(depth)
	}
	g.ws()
	g.b.WriteByte('}')
}

// doc returns a random top-level document; about one in three is then mutated by a
// byte-level edit so that rejections are exercised too.
func (g *randJSON) doc() string {
	g.b.Reset()
	g.ws()
	g.object(0)
	g.ws()
	s := g.b.String()
	if g.r.IntN(3) == 0 && len(s) > 0 {
		const alphabet = "{}[]:,\"\\ 0-1e.tfnu\x00\x1f\xff"
		i := g.r.IntN(len(s))
		switch g.r.IntN(3) {
		case 0:
			s = s[:i] + s[i+1:]
		case 1:
			s = s[:i] + string(alphabet[g.r.IntN(len(alphabet))]) + s[i:]
		default:
			s = s[:i] + string(alphabet[g.r.IntN(len(alphabet))]) + s[i+1:]
		}
	}
	return s
}

func TestDiffEdgeCases(t *testing.T) {
	for _, js := range edgeJSON {
		if d := diffDecodeObject([]byte(js)); d != "" {
			t.Errorf("decodeObject(%q): %s", js, d)
		}
		for _, tok := range []string{token(js, goodPayload), token(goodHeader, js), token(js, js)} {
			if d := diffParse(tok, 1<<20); d != "" {
				t.Errorf("Parse of %q: %s", js, d)
			}
		}
	}
}

func TestDiffRandomJSON(t *testing.T) {
	g := &randJSON{r: rand.New(rand.NewPCG(1, 2))}
	accepted := 0
	for i := 0; i < scaled(30000); i++ {
		js := g.doc()
		if d := diffDecodeObject([]byte(js)); d != "" {
			t.Fatalf("decodeObject(%q): %s", js, d)
		}
		hdr := goodHeader
		if i%4 == 0 {
			hdr = js
		}
		tok := token(hdr, js)
		if d := diffParse(tok, 1<<20); d != "" {
			t.Fatalf("Parse(%q / %q): %s", hdr, js, d)
		}
		if _, err := Parse(tok, 1<<20); err == nil {
			accepted++
		}
	}
	// Guard against a generator that only produces rejections.
	if accepted < 1000 {
		t.Fatalf("only %d of the random tokens were accepted", accepted)
	}
}

// TestDiffNesting: encoding/json allows 10000 levels in one member value.
func TestDiffNesting(t *testing.T) {
	for _, n := range []int{1, 100, 9999, 10000, 10001, 12000} {
		for _, open := range []string{"[", `{"a":`} {
			close := "]"
			if open != "[" {
				close = "}"
			}
			js := `{"x":` + strings.Repeat(open, n) + "1" + strings.Repeat(close, n) + "}"
			if d := diffDecodeObject([]byte(js)); d != "" {
				t.Fatalf("depth %d %s: %s", n, open, d[:min(len(d), 300)])
			}
			if d := diffParse(token(goodHeader, js), 1<<20); d != "" {
				t.Fatalf("Parse, depth %d %s: %s", n, open, d[:min(len(d), 300)])
			}
			if d := diffParse(token(`{"alg":"HS256","x":`+strings.Repeat(open, n)+"1"+strings.Repeat(close, n)+"}", goodPayload), 1<<20); d != "" {
				t.Fatalf("header, depth %d %s: %s", n, open, d[:min(len(d), 300)])
			}
		}
	}
	// And the limit is real (so the cases above test both sides of it).
	if _, err := decodeObject([]byte(`{"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + "}")); err == nil {
		t.Fatal("10001 levels accepted")
	}
	if _, err := decodeObject([]byte(`{"x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "}")); err != nil {
		t.Fatalf("10000 levels: %v", err)
	}
}

// TestDiffSegments compares the base64url decoding on its own, including every
// length modulo 4, every trailing-bit pattern and bytes outside the alphabet.
func TestDiffSegments(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=\n\r .\x00\xff"
	for i := 0; i < scaled(200000); i++ {
		n := r.IntN(12)
		b := make([]byte, n)
		for j := range b {
			if r.IntN(20) == 0 {
				b[j] = chars[r.IntN(len(chars))]
			} else {
				b[j] = chars[r.IntN(64)]
			}
		}
		s := string(b)
		got, gok := decodeSegment(s)
		want, wok := refDecodeSegment(s)
		if gok != wok || gok && string(got) != string(want) {
			t.Fatalf("decodeSegment(%q) = %x, %v; reference %x, %v", s, got, gok, want, wok)
		}
		if d := diffParse(token(goodHeader, goodPayload)[:len(b64s(goodHeader))+1]+s+".c2ln", 0); d != "" {
			t.Fatalf("payload segment %q: %s", s, d)
		}
		if d := diffParse(s+"."+b64s(goodPayload)+".c2ln", 0); d != "" {
			t.Fatalf("header segment %q: %s", s, d)
		}
		if d := diffParse(token(goodHeader, goodPayload)[:len(token(goodHeader, goodPayload))-4]+s, 0); d != "" {
			t.Fatalf("signature segment %q: %s", s, d)
		}
	}
}

// FuzzDecodeObject compares the JSON decoder with encoding/json on raw bytes (the
// token fuzz target reaches it only through base64url).
func FuzzDecodeObject(f *testing.F) {
	for _, js := range edgeJSON {
		f.Add([]byte(js))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if d := diffDecodeObject(b); d != "" {
			t.Fatalf("decodeObject(%q): %s", b, d)
		}
		if d := diffParse(token(goodHeader, string(b)), 1<<16); d != "" {
			t.Fatalf("payload %q: %s", b, d)
		}
		if d := diffParse(token(string(b), goodPayload), 1<<16); d != "" {
			t.Fatalf("header %q: %s", b, d)
		}
	})
}

// scaled shrinks a random-case count under the race detector, which makes this pure,
// single-goroutine code ~10x slower without finding anything more in it.
func scaled(n int) int {
	if race.Enabled {
		return n / 10
	}
	return n
}
