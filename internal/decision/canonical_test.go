package decision

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// decodeCanonical reads one encoding back to its value, refusing anything encode could not have written
// (unknown tags, short data, keys out of order or repeated, trailing bytes). That it exists and that
// FuzzCanonical holds is the proof that the encoding is injective: distinct values, distinct bytes.
func decodeCanonical(b []byte) (any, error) {
	v, rest, err := decodeValue(b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing bytes")
	}
	return v, nil
}

func decodeValue(b []byte, depth int) (any, []byte, error) {
	if depth > maxCanonicalDepth {
		return nil, nil, errors.New("too deep")
	}
	if len(b) == 0 {
		return nil, nil, errors.New("short")
	}
	tag, b := b[0], b[1:]
	switch tag {
	case tagNull:
		return nil, b, nil
	case tagTrue:
		return true, b, nil
	case tagFalse:
		return false, b, nil
	case tagString:
		return decodeString(b)
	case tagArray:
		n, b, err := decodeCount(b)
		if err != nil {
			return nil, nil, err
		}
		out := make([]any, 0, min(n, 1024))
		for range n {
			var v any
			if v, b, err = decodeValue(b, depth+1); err != nil {
				return nil, nil, err
			}
			out = append(out, v)
		}
		return out, b, nil
	case tagObject:
		n, b, err := decodeCount(b)
		if err != nil {
			return nil, nil, err
		}
		out := make(map[string]any, min(n, 1024))
		prev := ""
		for i := range n {
			var k string
			var kv, v any
			if kv, b, err = decodeString(b); err != nil {
				return nil, nil, err
			}
			k = kv.(string)
			if i > 0 && k <= prev {
				return nil, nil, errors.New("keys out of order")
			}
			prev = k
			if v, b, err = decodeValue(b, depth+1); err != nil {
				return nil, nil, err
			}
			out[k] = v
		}
		return out, b, nil
	}
	return nil, nil, errors.New("unknown tag")
}

func decodeCount(b []byte) (int, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) { // every element takes at least one byte
		return 0, nil, errors.New("bad count")
	}
	// Only the shortest varint is canonical: AppendUvarint writes no other.
	if len(binary.AppendUvarint(nil, n)) != w {
		return 0, nil, errors.New("long varint")
	}
	return int(n), b[w:], nil
}

func decodeString(b []byte) (any, []byte, error) {
	n, b, err := decodeCount(b)
	if err != nil {
		return nil, nil, err
	}
	if n > len(b) {
		return nil, nil, errors.New("short string")
	}
	return string(b[:n]), b[n:], nil
}

func encodeCanonical(t testing.TB, v any) []byte {
	t.Helper()
	var e canonicalEncoder
	b, err := e.encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), b...)
}

// Pairs that a careless encoding (concatenation, JSON without types, unsorted keys) would confuse.
func TestCanonicalEncodingTellsApartWhatLooksAlike(t *testing.T) {
	pairs := [][2]any{
		{map[string]any{"a": "bc"}, map[string]any{"ab": "c"}},
		{[]any{"a", "b"}, []any{"ab"}},
		{[]any{"a", "b"}, []any{[]any{"a"}, "b"}},
		{"", nil},
		{"true", true},
		{false, nil},
		{[]any{}, map[string]any{}},
		{[]any{}, nil},
		{map[string]any{"x": nil}, map[string]any{}},
		{map[string]any{"x": []any{}}, map[string]any{"x": map[string]any{}}},
		{map[string]any{"a": "1", "b": "2"}, map[string]any{"a": "2", "b": "1"}},
		{[]any{"1", "2"}, []any{"2", "1"}},
		{"a\x00b", "a"},
		{strings.Repeat("x", 200), strings.Repeat("x", 201)},
	}
	for _, p := range pairs {
		if a, b := encodeCanonical(t, p[0]), encodeCanonical(t, p[1]); string(a) == string(b) {
			t.Errorf("%#v and %#v both encode as %q", p[0], p[1], a)
		}
	}
	// And what is the same value encodes alike, however the map was filled.
	m1, m2 := map[string]any{}, map[string]any{}
	for i := range 50 {
		m1[string(rune('a'+i%26))+strings.Repeat("k", i)] = i%2 == 0
		m2[string(rune('a'+(49-i)%26))+strings.Repeat("k", 49-i)] = (49-i)%2 == 0
	}
	if string(encodeCanonical(t, m1)) != string(encodeCanonical(t, m2)) {
		t.Error("one map, two encodings")
	}
}

func TestCanonicalEncodingRefusesTypesItDoesNotKnow(t *testing.T) {
	var e canonicalEncoder
	for _, v := range []any{1, 1.5, []string{"a"}, map[string]bool{"a": true}, map[string]any{"x": []any{struct{}{}}}} {
		if _, err := e.encode(v); !errors.Is(err, errNotCanonical) {
			t.Errorf("%#v: %v, want errNotCanonical", v, err)
		}
	}
}

// genValue builds a value of the input's types from r, small enough to compare.
func genValue(r *rand.Rand, depth int) any {
	k := r.IntN(6)
	if depth > 3 {
		k = r.IntN(3)
	}
	switch k {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return genString(r)
	case 3:
		out := make([]any, r.IntN(4))
		for i := range out {
			out[i] = genValue(r, depth+1)
		}
		return out
	default:
		out := map[string]any{}
		for range r.IntN(4) {
			out[genString(r)] = genValue(r, depth+1)
		}
		return out
	}
}

func genString(r *rand.Rand) string {
	const alphabet = "ab\x00\x01\xff:/=,s"
	b := make([]byte, r.IntN(4))
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// FuzzCanonical: every value reads back as itself; two values encode alike only if they are equal; and any
// bytes the decoder accepts are the encoding of what it read (one encoding per value).
//
//	go test -run '^$' -fuzz FuzzCanonical -fuzztime 5m ./internal/decision
func FuzzCanonical(f *testing.F) {
	f.Add(uint64(1), uint64(2), []byte("o\x01\x01as\x01b"))
	f.Add(uint64(7), uint64(7), []byte("a\x02s\x00n"))
	f.Fuzz(func(t *testing.T, s1, s2 uint64, raw []byte) {
		a := genValue(rand.New(rand.NewPCG(s1, 0)), 0)
		b := genValue(rand.New(rand.NewPCG(s2, 1)), 0)
		ea, eb := encodeCanonical(t, a), encodeCanonical(t, b)
		back, err := decodeCanonical(ea)
		if err != nil || !reflect.DeepEqual(back, a) {
			t.Fatalf("%#v read back as %#v (%v)", a, back, err)
		}
		if (string(ea) == string(eb)) != reflect.DeepEqual(a, b) {
			t.Fatalf("%#v and %#v: encodings equal %v, values equal %v", a, b, string(ea) == string(eb), reflect.DeepEqual(a, b))
		}
		if v, err := decodeCanonical(raw); err == nil {
			if again := encodeCanonical(t, v); string(again) != string(raw) {
				t.Fatalf("%q decodes to %#v, which encodes as %q", raw, v, again)
			}
		}
	})
}
