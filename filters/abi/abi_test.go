package abi

import (
	"errors"
	"testing"

	"github.com/meshplug/meshplug/internal/race"
)

func TestPairsRoundTripAndView(t *testing.T) {
	pairs := []Pair{{":method", "GET"}, {":path", "/a?b"}, {"x-dup", "1"}, {"x-dup", "2"}, {"empty", ""}, {"", "no name"}}
	enc := EncodePairs(pairs)
	if len(enc) != EncodedPairsSize(pairs) {
		t.Fatalf("size %d, want %d", len(enc), EncodedPairsSize(pairs))
	}
	got, err := DecodePairs(enc)
	if err != nil || len(got) != len(pairs) {
		t.Fatalf("decode: %v %v", got, err)
	}
	for i := range pairs {
		if got[i] != pairs[i] {
			t.Errorf("pair %d = %v, want %v", i, got[i], pairs[i])
		}
	}
	v := PairsView(enc)
	for _, c := range []struct {
		name, want string
		ok         bool
	}{{":path", "/a?b", true}, {"x-dup", "1", true}, {"empty", "", true}, {"", "no name", true}, {"missing", "", false}, {":metho", "", false}} {
		if got, ok := v.Get(c.name); got != c.want || ok != c.ok {
			t.Errorf("Get(%q) = %q %v, want %q %v", c.name, got, ok, c.want, c.ok)
		}
	}
	all := v.AppendTo(nil)
	if len(all) != len(pairs) {
		t.Fatalf("AppendTo gave %v, want %v", all, pairs)
	}
	for i := range pairs {
		if all[i] != pairs[i] {
			t.Errorf("AppendTo pair %d = %v, want %v", i, all[i], pairs[i])
		}
	}
	buf := make([]Pair, 0, len(pairs))
	if allocs := testing.AllocsPerRun(100, func() { buf = v.AppendTo(buf[:0]) }); allocs != 0 && !race.Enabled {
		t.Errorf("AppendTo into a large enough slice allocates %v times", allocs)
	}
	if n := v.Count("x-dup"); n != 2 {
		t.Errorf("Count(x-dup) = %d", n)
	}
	if all := v.AppendValues(nil, "x-dup"); len(all) != 2 || all[0] != "1" || all[1] != "2" {
		t.Errorf("AppendValues(x-dup) = %q", all)
	}
	if all := v.AppendValues([]string{"keep"}, "missing"); len(all) != 1 {
		t.Errorf("AppendValues(missing) = %q", all)
	}
	vbuf := make([]string, 0, 4)
	if allocs := testing.AllocsPerRun(100, func() { vbuf = v.AppendValues(vbuf[:0], "x-dup") }); allocs != 0 && !race.Enabled {
		t.Errorf("AppendValues allocates %v times", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { v.Get("empty") }); allocs != 0 && !race.Enabled {
		t.Errorf("Get allocates %v times", allocs)
	}
}

func TestMalformedPairs(t *testing.T) {
	good := EncodePairs([]Pair{{"a", "b"}, {"cc", "dd"}})
	for i := 1; i < len(good); i++ {
		if _, err := DecodePairs(good[:i]); !errors.Is(err, ErrMalformedPairs) {
			t.Errorf("truncated at %d: err %v", i, err)
		}
		PairsView(good[:i]).Get("cc") // must not panic
		PairsView(good[:i]).AppendValues(nil, "cc")
	}
	bad := append([]byte(nil), good...)
	bad[0] = 0xff // count far larger than the data
	if _, err := DecodePairs(bad); err == nil {
		t.Error("huge count accepted")
	}
	if _, ok := PairsView(bad).Get("a"); ok {
		t.Error("view read a malformed map")
	}
	if p, err := DecodePairs(nil); err != nil || p != nil {
		t.Errorf("empty input: %v %v", p, err)
	}
}

func FuzzDecodePairs(f *testing.F) {
	f.Add(EncodePairs([]Pair{{"a", "b"}}))
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		pairs, err := DecodePairs(b)
		v := PairsView(b)
		all := v.AppendTo(nil) // must not panic on any input
		if err != nil {
			return
		}
		if len(all) != len(pairs) {
			t.Fatalf("AppendTo gave %d entries, want %d", len(all), len(pairs))
		}
		for i := range pairs {
			if all[i] != pairs[i] {
				t.Fatalf("AppendTo entry %d = %v, want %v", i, all[i], pairs[i])
			}
		}
		counts := map[string]int{}
		firsts := map[string]string{}
		for _, p := range pairs {
			if _, seen := firsts[p.Key]; !seen {
				firsts[p.Key] = p.Value
			}
			counts[p.Key]++
		}
		for k, want := range firsts {
			if got, ok := v.Get(k); !ok || got != want {
				t.Fatalf("view Get(%q) = %q %v, want %q", k, got, ok, want)
			}
			if got := v.Count(k); got != counts[k] {
				t.Fatalf("view Count(%q) = %d, want %d", k, got, counts[k])
			}
			if all := v.AppendValues(nil, k); len(all) != counts[k] || all[0] != want {
				t.Fatalf("view AppendValues(%q) = %q", k, all)
			}
		}
		if re := EncodePairs(pairs); len(b) > 0 && string(re) != string(b[:len(re)]) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func TestPairsCursor(t *testing.T) {
	pairs := []Pair{{":method", "GET"}, {"x-dup", "1"}, {"x-dup", "2"}, {"empty", ""}, {"", "no name"}}
	enc := EncodePairs(pairs)
	var got []Pair
	for c := PairsView(enc).Cursor(); ; {
		k, v, ok := c.Next()
		if !ok {
			break
		}
		got = append(got, Pair{k, v})
	}
	if len(got) != len(pairs) {
		t.Fatalf("cursor read %v", got)
	}
	for i := range pairs {
		if got[i] != pairs[i] {
			t.Errorf("entry %d = %v, want %v", i, got[i], pairs[i])
		}
	}
	for i := 0; i < len(enc); i++ { // truncated: stops early, never panics
		n := 0
		for c := PairsView(enc[:i]).Cursor(); ; n++ {
			if _, _, ok := c.Next(); !ok {
				break
			}
		}
		if n >= len(pairs) {
			t.Errorf("truncated at %d: read %d entries", i, n)
		}
	}
	v := PairsView(enc)
	if allocs := testing.AllocsPerRun(100, func() {
		for c := v.Cursor(); ; {
			if _, _, ok := c.Next(); !ok {
				break
			}
		}
	}); allocs != 0 && !race.Enabled {
		t.Errorf("cursor allocates %v times", allocs)
	}
}

func TestIsGRPCContentType(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "application/grpc;charset=utf-8": false,
		"application/grpc-web": false, "application/grpcx": false, "application/json": false, "": false, "application/grp": false,
	} {
		if got := IsGRPCContentType(ct); got != want {
			t.Errorf("IsGRPCContentType(%q) = %v", ct, got)
		}
	}
}
