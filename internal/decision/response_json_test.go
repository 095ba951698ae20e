package decision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/policy"

	"github.com/fhirwall/fhirwall/test/fuzzcorpus"
)

// refJSON is the path enforcement took before response_json.go: encoding/json's Decoder and the map writer.
var refJSON = jsonCodec{decodeResourceRef, encodeRef}

// decodeResourceRef is the reference reader (encoding/json, as enforcement read answers until issue 18): it decodes a JSON object, keeping numbers as written (FHIR decimals carry their precision).
func decodeResourceRef(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrResponse, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the resource", ErrResponse)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: not a resource", ErrResponse)
	}
	if _, ok := m["resourceType"].(string); !ok {
		return nil, fmt.Errorf("%w: no resourceType", ErrResponse)
	}
	return m, nil
}

// encodeRef is the reference writer (until issue 18): it writes a decoded resource back as compact JSON with resourceType first in every resource (FHIR
// JSON §1.1: readers may rely on it) and the other members in a stable order; numbers stay as written.
func encodeRef(v any, _ int) ([]byte, error) {
	var b bytes.Buffer
	if err := writeJSONRef(&b, v, 0); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrResponse, err)
	}
	return b.Bytes(), nil
}

func writeJSONRef(b *bytes.Buffer, v any, depth int) error {
	if depth > 512 {
		return errors.New("nested too deep")
	}
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			if k != "resourceType" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		if _, ok := t["resourceType"]; ok {
			keys = append([]string{"resourceType"}, keys...)
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeStringRef(b, k)
			b.WriteByte(':')
			if err := writeJSONRef(b, t[k], depth+1); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSONRef(b, e, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case string:
		writeStringRef(b, t)
	case json.Number:
		b.WriteString(string(t))
	case bool:
		b.WriteString(strconv.FormatBool(t))
	case nil:
		b.WriteString("null")
	default:
		return fmt.Errorf("cannot encode %T", v)
	}
	return nil
}

// writeStringRef writes s as a JSON string (RFC 8259 §7); s came from a JSON decoder, so it is valid UTF-8.
func writeStringRef(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == '\u2028' || r == '\u2029':
			b.WriteString(`\u`)
			b.WriteByte(hex[(r>>12)&0xf])
			b.WriteByte(hex[(r>>8)&0xf])
			b.WriteByte(hex[(r>>4)&0xf])
			b.WriteByte(hex[r&0xf])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}

// jsonEdgeCases are the inputs where a hand-written reader most often parts from encoding/json.
var jsonEdgeCases = []string{
	`{"resourceType":"Patient","id":"a","id":"b"}`, // duplicate key: the last wins
	`{"resourceType":"Patient","resourceType":"Observation","subject":{"reference":"Patient/member-02"}}`,
	`{"resourceType":"Patient","id":"member-01","id":"member-02"}`,
	"{\"resourceType\":\"Patient\",\"id\":\"\xff\xfe\"}",     // invalid UTF-8: U+FFFD per byte
	"{\"resourceType\":\"Patient\",\"id\":\"\xed\xa0\x80\"}", // a surrogate in UTF-8
	"{\"resourceType\":\"Patient\",\"i\xffd\":\"x\"}",        // ... in a key
	"\xef\xbb\xbf{\"resourceType\":\"Patient\"}",             // BOM
	`{"resourceType":"Patient"} `,                            // trailing whitespace
	`{"resourceType":"Patient"}x`,                            // trailing data
	`{"resourceType":"Patient"}{"resourceType":"Patient"}`,   // a second value
	`{"resourceType":"Patient"}]`,
	` 	
{"resourceType":"Patient"}`,
	`{"resourceType":"Patient","a":"\ud83d\ude00","b":"\ud83d","c":"\ude00\ud83d","d":"\ud83dx","e":"\ud83d\u0041"}`,
	`{"resourceType":"Patient","a":"\u00e9\u2028\u2029\u0000\"\\\/\b\f\n\r\t<>&"}`,
	`{"resourceType":"Patient","a":"\'"}`,
	`{"resourceType":"Patient","a":"\x41"}`,
	`{"resourceType":"Patient","a":"\u12"}`,
	`{"resourceType":"Patient","a":"\u12G4"}`,
	"{\"resourceType\":\"Patient\",\"a\":\"tab\there\"}",
	"{\"resourceType\":\"Patient\",\"a\":\"\x7f\"}",
	`{"resourceType":"Patient","n":[0,-0,1.50,1e5,1E+5,-1.0e-7,123456789012345678901234567890]}`,
	`{"resourceType":"Patient","n":01}`,
	`{"resourceType":"Patient","n":1.}`,
	`{"resourceType":"Patient","n":.5}`,
	`{"resourceType":"Patient","n":-}`,
	`{"resourceType":"Patient","n":+1}`,
	`{"resourceType":"Patient","n":1e}`,
	`{"resourceType":"Patient","n":NaN}`,
	`{"resourceType":"Patient","n":[true,false,null,{},[]]}`,
	`{"resourceType":"Patient","n":tru}`,
	`{"resourceType":"Patient","n":nulls}`,
	`{"resourceType":"Patient","a":[1,]}`,
	`{"resourceType":"Patient",}`,
	`{"resourceType":"Patient" "a":1}`,
	`{"resourceType":"Patient","a":1`,
	`{"resourceType":"Patient","a":"x`,
	`{"resourceType":"Patient","a":[1 2]}`,
	`{"resourceType":"Patient",'a':1}`,
	`{resourceType:"Patient"}`,
	`{"resourceType":1}`,
	`{"resourceType":null}`,
	`{"resourceType":"OperationOutcome","issue":[{"severity":"error","diagnostics":"Patient/member-02 gone"}]}`,
	`{}`, `null`, `[]`, `"x"`, `1`, ``, ` `, `{`,
	`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","id":"member-01"}},` +
		`{"resource":{"resourceType":"Patient","id":"member-02"},"resource":{"resourceType":"Patient","id":"member-01"}}]}`,
	`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","id":"member-01"},` +
		`"resource":{"resourceType":"Patient","id":"member-02"}}]}`,
}

func deepJSON(depth int) string {
	return `{"resourceType":"Patient","x":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
}

// TestJSONReaderAcceptsExactlyWhatEncodingJSONAccepts: same refusals, same values, same bytes written back.
func TestJSONReaderAcceptsExactlyWhatEncodingJSONAccepts(t *testing.T) {
	cases := slices.Clone(jsonEdgeCases)
	for _, depth := range []int{511, 512, 513, 514, 9999, 10000, 10001, 10002} {
		cases = append(cases, deepJSON(depth))
	}
	for _, body := range cases {
		checkJSONDifferential(t, []byte(body))
	}
}

// checkJSONDifferential holds the reader and writer to encoding/json and the reference writer.
func checkJSONDifferential(t *testing.T, body []byte) {
	t.Helper()
	got, gotErr := decodeResource(body)
	want, wantErr := decodeResourceRef(body)
	if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && !errors.Is(gotErr, ErrResponse)) {
		t.Fatalf("%q: reader error %v, encoding/json %v", trimmed(body), gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: reader read %v, encoding/json %v", trimmed(body), got, want)
	}
	if gotErr != nil {
		return
	}
	gotOut, gotErr := encodeSized(got, len(body))
	wantOut, wantErr := encodeRef(want, 0)
	if (gotErr == nil) != (wantErr == nil) || !bytes.Equal(gotOut, wantOut) {
		t.Fatalf("%q: writer wrote %q (%v), reference %q (%v)", trimmed(body), gotOut, gotErr, wantOut, wantErr)
	}
}

func trimmed(b []byte) []byte {
	if len(b) > 300 {
		return b[:300]
	}
	return b
}

// The writer is held to the reference on values a data-scope transform or a test could build (strings
// that never went through a reader: invalid UTF-8, control characters, line separators).
func TestJSONWriterMatchesReferenceOnBuiltValues(t *testing.T) {
	for _, s := range []string{"", "plain", "\xff", "a\xffb\xc3", "\u2028\u2029", "\x00\x1f\x7f", `"\`, "é😀", "\xed\xa0\x80", "\ufffd"} {
		v := map[string]any{"resourceType": "Patient", s: []any{s, json.Number("1.0"), true, nil}}
		got, err := encode(v)
		want, wantErr := encodeRef(v, 0)
		if err != nil || wantErr != nil || !bytes.Equal(got, want) {
			t.Fatalf("%q: wrote %q (%v), reference %q (%v)", s, got, err, want, wantErr)
		}
	}
}

// FuzzDecodeDifferential: for any bytes, the reader refuses what encoding/json refuses and reads the same
// values, and the writer writes what the reference writer wrote.
func FuzzDecodeDifferential(f *testing.F) {
	for _, s := range enforceSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkJSONDifferential(t, body)
	})
}

// FuzzEnforceDifferential: the same answer enforced through the fast reader and writer and through the
// reference (encoding/json) gives the same status, bytes, patients, categories, removed count and refusal,
// under a patient's compartment, with no compartment, with a data scope that rewrites resources, and on the
// error path.
func FuzzEnforceDifferential(f *testing.F) {
	for i, s := range enforceSeeds(f) {
		f.Add(uint8(i), s)
	}
	f.Fuzz(func(t *testing.T, mode uint8, body []byte) {
		status := 200
		mk := func() *Decision {
			d := decisionFor(me)
			switch mode % 5 {
			case 1:
				d = decisionFor("")
			case 2:
				d.Policy.Obligations.DataScope = "provider-access"
			case 3:
				status = 400
			case 4:
				d.Request.Interaction = fhir.Read
				d.Policy.Obligations.ResourceTypes = map[string]policy.Constraints{"Observation": {"category": {"laboratory"}},
					"ExplanationOfBenefit": {}, "Patient": {}}
			}
			return d
		}
		got, gotErr := newEnforcingCore().EnforceResponse(context.Background(), mk(), status, fhirJSON, body)
		want, wantErr := newEnforcingCore().enforceResponse(context.Background(), mk(), status, fhirJSON, body, refJSON)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("mode %d %q: error %v, reference %v", mode%5, trimmed(body), gotErr, wantErr)
		}
		if gotErr != nil && errors.Is(gotErr, ErrResponse) != errors.Is(wantErr, ErrResponse) {
			t.Fatalf("mode %d: error kind %v, reference %v", mode%5, gotErr, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("mode %d %q:\n got %d %q %q %q removed %d\nwant %d %q %q %q removed %d", mode%5, trimmed(body),
				got.Status, got.Body, got.Patients, got.Categories, got.Removed,
				want.Status, want.Body, want.Patients, want.Categories, want.Removed)
		}
	})
}

// enforceSeeds: every Bundle in testdata, the tests' builders, and the reader's edge cases.
func enforceSeeds(tb testing.TB) [][]byte {
	seeds := fuzzcorpus.Bytes(tb, filepath.Join("testdata", "fuzz", "*", "*"))
	links := []string{"self http://127.0.0.1:8090/fhir/ExplanationOfBenefit?patient=" + me,
		"next http://127.0.0.1:8090/fhir?_getpages=seed&_getpagesoffset=10&_count=10&_bundletype=searchset"}
	contained := strings.Replace(eob("e3", me), `"status"`, `"contained":[{"resourceType":"Observation","id":"c","subject":{"reference":"Patient/`+me+`"}},{"resourceType":"Patient","id":"x"}],"status"`, 1)
	for _, s := range []string{
		eob("e1", me), eob("e2", other), labObs("o1", me), patientRes(me), patientRes(other), practitioner, contained,
		bundle("searchset", 2, links, entry{eob("e1", me), "match"}, entry{eob("e2", other), "match"}, entry{practitioner, "include"}),
		bundle("searchset", 2, links, entry{eob("e1", me), "match"}, entry{labObs("o1", me), "include"}, entry{contained, "match"}),
		bundle("history", 3, nil, entry{labObs("o1", me), ""}, entry{labObs("o1", other), ""}),
		bundle("batch-response", -1, nil, entry{bundle("searchset", 2, links, entry{eob("e1", me), "match"}, entry{eob("e2", other), "match"}), ""}),
		`{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"404","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"Resource Patient/member-02 is not known"}],"text":{"div":"x"}}}}]}`,
		`{"resourceType":"Claim","id":"c1","patient":{"reference":"Patient/member-01"},"billablePeriod":{"start":"2015-01-01"},"total":{"value":10.00,"currency":"USD"},"item":[{"net":{"value":1.5}}]}`,
		`{"resourceType":"ExplanationOfBenefit","id":"e","patient":{"reference":"Patient/member-01"},"billablePeriod":{"start":"2020-01-01"},"payment":{"amount":{"value":3}},"total":[{"amount":{"value":12.30}}],"text":{"div":"<div>$12</div>"}}`,
	} {
		seeds = append(seeds, []byte(s))
	}
	seeds = append(seeds, searchsetN(40), searchPage())
	for _, s := range jsonEdgeCases {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// searchsetN is searchset1000's shape at n entries.
func searchsetN(n int) []byte {
	entries := make([]entry, n)
	for i := range entries {
		p := me
		if i%2 == 1 {
			p = other
		}
		entries[i] = entry{eob(fmt.Sprintf("e%d", i), p), "match"}
	}
	return []byte(bundle("searchset", n, []string{"self http://127.0.0.1:8090/fhir/ExplanationOfBenefit?_count=1000",
		"next http://127.0.0.1:8090/fhir?_getpages=bench-uuid&_getpagesoffset=1000&_count=1000&_bundletype=searchset"}, entries...))
}

// A pooled reader keeps nothing of the answer it read: the next answer, maybe another patient's, can
// neither see nor be given a value of it.
func TestPooledReaderKeepsNothingOfAnAnswer(t *testing.T) {
	r := jsonReaders.New().(*jsonReader)
	if _, err := r.document(searchsetN(10)); err != nil {
		t.Fatal(err)
	}
	r.reset()
	if r.data != nil || r.str != "" {
		t.Error("reader holds the body")
	}
	if r.slab != nil {
		t.Error("reader holds the last answer's array slab")
	}
	for _, s := range append(r.strs[:], r.nums[:]...) {
		if s.s != "" || s.v != nil {
			t.Fatalf("reader holds %q", s.s)
		}
	}
	for _, m := range r.members[:cap(r.members)] {
		if m.key != "" || m.val != nil {
			t.Fatalf("reader holds member %q", m.key)
		}
	}
	for _, v := range r.items[:cap(r.items)] {
		if v != nil {
			t.Fatalf("reader holds item %v", v)
		}
	}
}

// A pooled writer keeps nothing of the answer it wrote either.
func TestPooledWriterKeepsNothingOfAnAnswer(t *testing.T) {
	root, err := decodeResource(searchsetN(10))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // the pool may hand out another writer; any it holds was put back by encodeSized
		if _, err := encodeSized(root, 0); err != nil {
			t.Fatal(err)
		}
		w := jsonWriters.Get().(*jsonWriter)
		if w.b != nil {
			t.Fatal("writer holds the answer's bytes")
		}
		for _, m := range w.members[:cap(w.members)] {
			if m.key != "" || m.val != nil {
				t.Fatalf("writer holds member %q", m.key)
			}
		}
		jsonWriters.Put(w)
	}
}

// Arrays cut from one slab are capped at their length: growing one (enforcement filtering entries) never
// writes into the next.
func TestSlabArraysDoNotShareGrowth(t *testing.T) {
	root, err := decodeResource([]byte(`{"resourceType":"Patient","a":[1],"b":[2,3],"c":[4]}`))
	if err != nil {
		t.Fatal(err)
	}
	a, b := root["a"].([]any), root["b"].([]any)
	if cap(a) != len(a) || cap(b) != len(b) {
		t.Fatalf("cap %d, %d for lengths %d, %d", cap(a), cap(b), len(a), len(b))
	}
	_ = append(a, "x")
	_ = append(b, "y")
	if b[0] != json.Number("2") || b[1] != json.Number("3") || root["c"].([]any)[0] != json.Number("4") {
		t.Fatalf("a neighbour changed: %v", root)
	}
}

// Large bodies (every value a substring of one copy of the body): a long searchset, strings longer than
// the intern limit and than a page, the last value ending the body.
func TestJSONReaderLargeBodies(t *testing.T) {
	long := strings.Repeat("x", 40<<10)
	for _, body := range [][]byte{
		searchsetN(200),
		[]byte(`{"resourceType":"Patient","a":"` + long + `","b":"after","c":["` + long[:internMaxLen] + `","` + long[:internMaxLen+1] + `",1.50]}`),
		[]byte(`{"resourceType":"Patient","` + long + `":"` + long + `"}`),
		[]byte(`{"resourceType":"Patient","n":[` + strings.Repeat(`"abc",12.5,`, 8000) + `"end"]}`),
	} {
		checkJSONDifferential(t, body)
	}
}
