package jsonenc

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"testing"
	"time"
)

func same(t *testing.T, v any, got []byte, ok bool) {
	t.Helper()
	want, err := json.Marshal(v)
	if (err == nil) != ok {
		t.Fatalf("%#v: encoding/json error %v, appender ok %v", v, err, ok)
	}
	if ok && !bytes.Equal(got, want) {
		t.Fatalf("%#v:\nencoding/json %s\nappender      %s", v, want, got)
	}
}

func TestStringsAreEncodingJSONs(t *testing.T) {
	for _, s := range []string{"", "plain", "<a href='x'>&amp;</a>", "\"\\/\b\f\n\r\t\x00\x01\x1f\x7f", "é\u2028\u2029\U0001F600",
		"\xff", "\xc3(", "\xed\xa0\x80", "a\xe2\x80", "\xf4\x90\x80\x80"} {
		same(t, s, String(nil, s), true)
	}
	for _, ss := range [][]string{nil, {}, {"a"}, {"a", "<b>"}} {
		same(t, ss, Strings(nil, ss), true)
	}
	for _, p := range [][]byte{nil, {}, {0}, []byte("hello, world"), bytes.Repeat([]byte{0xff}, 32)} {
		same(t, p, Bytes(nil, p), true)
	}
	same(t, url.Values(nil), StringsMap(nil, url.Values(nil)), true)
	same(t, url.Values{}, StringsMap(nil, url.Values{}), true)
	same(t, url.Values{"b": {"1", "2"}, "a": nil, "B": {}, "é": {"<"}}, StringsMap(nil, url.Values{"b": {"1", "2"}, "a": nil, "B": {}, "é": {"<"}}), true)
	same(t, http.Header{"Link": {"<x>; rel=a"}}, StringsMap(nil, http.Header{"Link": {"<x>; rel=a"}}), true)
}

func TestNumbersAndTimesAreEncodingJSONs(t *testing.T) {
	for _, f := range []float64{0, math.Copysign(0, -1), 1, -1, 11.482, 1e20, 1e21, 1e-6, 1e-7, 123456789e-15, math.MaxFloat64,
		math.SmallestNonzeroFloat64, math.NaN(), math.Inf(1), math.Inf(-1)} {
		b, ok := Float64(nil, f)
		same(t, f, b, ok)
	}
	for _, tm := range []time.Time{{}, time.Date(2026, 12, 7, 3, 4, 5, 123456789, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", -9*3600-30*60)),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 3600+1)), time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600)),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", -24*3600-60)), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Now()} {
		b, ok := Time(nil, tm)
		same(t, tm, b, ok)
	}
}

// FuzzString: go test ./internal/jsonenc -run '^$' -fuzz FuzzString
func FuzzString(f *testing.F) {
	f.Add("patient=p1&_count=10")
	f.Add("\u2028<\xff>\x00")
	f.Fuzz(func(t *testing.T, s string) {
		same(t, s, String(nil, s), true)
		same(t, []byte(s), Bytes(nil, []byte(s)), true)
		m := url.Values{s: {s, ""}, "k" + s: nil}
		same(t, m, StringsMap(nil, m), true)
	})
}

// FuzzFloat64: go test ./internal/jsonenc -run '^$' -fuzz FuzzFloat64
func FuzzFloat64(f *testing.F) {
	f.Add(11.482)
	f.Add(1e21)
	f.Add(-1e-7)
	f.Fuzz(func(t *testing.T, v float64) {
		b, ok := Float64(nil, v)
		same(t, v, b, ok)
	})
}

// FuzzTime: go test ./internal/jsonenc -run '^$' -fuzz FuzzTime
func FuzzTime(f *testing.F) {
	f.Add(int64(1765076645), int64(123456789), 0)
	f.Add(int64(-62135596801), int64(0), 3600*24)
	f.Add(int64(253402300800), int64(1), -60)
	f.Fuzz(func(t *testing.T, sec, nsec int64, zone int) {
		tm := time.Unix(sec, nsec).In(time.FixedZone("z", zone))
		b, ok := Time(nil, tm)
		same(t, tm, b, ok)
	})
}
