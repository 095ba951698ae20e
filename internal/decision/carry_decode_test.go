package decision

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// jsonCarried is the reference readCarried is held to: what decodeCarried did before it, and does still for
// anything readCarried does not take.
func jsonCarried(plain []byte) (carried, error) {
	var w carried
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	err := dec.Decode(&w)
	return w, err
}

// checkCarriedDecoding: when readCarried takes plain, encoding/json decodes it without error to the same value.
func checkCarriedDecoding(t *testing.T, plain []byte) (taken bool) {
	t.Helper()
	got, ok := readCarried(plain)
	if !ok {
		return false
	}
	want, err := jsonCarried(plain)
	if err != nil {
		t.Fatalf("hand reader took what encoding/json refuses (%v): %q", err, plain)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decodings differ for %q:\nencoding/json %+v\nhand          %+v", plain, want, got)
	}
	return true
}

// TestCarriedDecodingIsEncodingJSONs: whatever appendCarried writes — the carry tests' decisions, a value with
// every member of every nested type set, one with every member empty, the zero value — the hand reader takes,
// and reads as encoding/json does.
func TestCarriedDecodingIsEncodingJSONs(t *testing.T) {
	values := map[string]carried{"zero": {}}
	for name, d := range carryDecisions(t) {
		values[name] = toCarried(d)
	}
	for _, full := range []bool{true, false} {
		var w carried
		seed := 0
		fill(t, reflect.ValueOf(&w).Elem(), "carried", full, &seed)
		values[fmt.Sprintf("every member full=%v", full)] = w
	}
	for name, w := range values {
		t.Run(name, func(t *testing.T) {
			plain, ok := appendCarried(nil, &w)
			if !ok {
				t.Fatal("not encodable")
			}
			if !checkCarriedDecoding(t, plain) {
				t.Fatalf("hand reader does not take appendCarried's own bytes: %s", plain)
			}
		})
	}
}

// TestCarriedDecodingLeavesTheRestToEncodingJSON: forms appendCarried never writes are not read by hand, so
// encoding/json's reading of them (its case-insensitive keys, last duplicate wins, null, U+FFFD for a lone
// surrogate) stays the only one.
func TestCarriedDecodingLeavesTheRestToEncodingJSON(t *testing.T) {
	w := toCarried(carryDecisions(t)["sandbox"])
	plain, _ := appendCarried(nil, &w)
	s := string(plain)
	for name, b := range map[string]string{
		"whitespace":          strings.Replace(s, `,"id":`, `, "id":`, 1),
		"duplicate key":       strings.Replace(s, `{"v":1,`, `{"v":1,"v":1,`, 1),
		"key in another case": strings.Replace(s, `"id":`, `"ID":`, 1),
		"unknown key":         strings.Replace(s, `{"v":1,`, `{"v":1,"x":1,`, 1),
		"null string":         strings.Replace(s, `"a":true`, `"a":true,"ua":null`, 1),
		"null object":         strings.Replace(s, `"a":true`, `"a":true,"om":null`, 1),
		"leading zero":        strings.Replace(s, `"v":1`, `"v":01`, 1),
		"float":               strings.Replace(s, `"v":1`, `"v":1.0`, 1),
		"minus zero":          strings.Replace(s, `"v":1`, `"v":-0`, 1),
		"lone surrogate":      strings.Replace(s, `"id":"`, `"id":"\ud800`, 1),
		"invalid UTF-8":       strings.Replace(s, `"id":"`, "\"id\":\"\xff", 1),
		"trailing bytes":      s + " ",
		"escaped time":        strings.Replace(s, `"t":"2`, `"t":"\u0032`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if b == s {
				t.Fatalf("the mutation did not apply to %s", s)
			}
			if _, ok := readCarried([]byte(b)); ok {
				t.Errorf("hand reader took %q", b)
			}
		})
	}
	// What it does take with escapes reads as encoding/json reads it.
	esc := strings.Replace(s, `"id":"`, `"id":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00<`, 1)
	if !checkCarriedDecoding(t, []byte(esc)) {
		t.Fatalf("escapes not taken: %s", esc)
	}
}

// FuzzCarriedDecoding: any bytes the hand reader takes, encoding/json reads to the same value.
// go test ./internal/decision -run '^$' -fuzz FuzzCarriedDecoding
func FuzzCarriedDecoding(f *testing.F) {
	for _, d := range carryDecisions(f) {
		w := toCarried(d)
		b, _ := appendCarried(nil, &w)
		f.Add(b)
	}
	var w carried
	seed := 0
	fill(f, reflect.ValueOf(&w).Elem(), "carried", true, &seed)
	b, _ := appendCarried(nil, &w)
	f.Add(b)
	f.Add([]byte(`{"v":1,"id":"a\u00e9\ud83d\ude00","t":"2026-12-07T03:00:00.5+01:00","in":{"bs":"AAE=","bl":-7}}`))
	f.Fuzz(func(t *testing.T, plain []byte) { checkCarriedDecoding(t, plain) })
}

// A time the hand reader takes is the instant encoding/json reads, zone included.
func TestCarriedDecodingTimeZones(t *testing.T) {
	for _, lit := range []string{"2026-12-07T03:00:00Z", "2026-12-07T03:00:00.123456789+05:30", "2026-12-07T03:00:00-00:00"} {
		plain := []byte(`{"t":"` + lit + `"}`)
		if !checkCarriedDecoding(t, plain) {
			t.Errorf("%s not taken", lit)
		}
	}
	_ = time.UTC
}
