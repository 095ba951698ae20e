package decision

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func checkCarriedEncoding(t *testing.T, w *carried) {
	t.Helper()
	want, werr := json.Marshal(w)
	got, ok := appendCarried(nil, w)
	if (werr == nil) != ok {
		t.Fatalf("encoding/json error %v, hand encoder ok %v", werr, ok)
	}
	if ok && !bytes.Equal(got, want) {
		t.Fatalf("encodings differ:\nencoding/json %s\nhand          %s", want, got)
	}
}

// fill sets every exported member of v, through pointers, slices and maps, to a value that is not empty
// (full) or to an empty one that encoding/json still writes (nil pointers and slices stay nil when !full,
// except where a member is a struct): a member added to any type a carried decision holds is then written by
// encoding/json and, if the hand encoder does not know it, the encodings differ.
func fill(t testing.TB, v reflect.Value, path string, full bool, seed *int) {
	*seed++
	n := *seed
	switch {
	case v.Type() == reflect.TypeFor[time.Time]():
		if full {
			v.Set(reflect.ValueOf(time.Date(2026, 12, 7, 3, n%60, 5, n*1000, time.UTC)))
		}
		return
	}
	switch v.Kind() {
	case reflect.String:
		if full {
			v.SetString(fmt.Sprintf("%s<&>é%d", path, n))
		}
	case reflect.Bool:
		v.SetBool(full)
	case reflect.Int, reflect.Int64:
		if full {
			v.SetInt(int64(n))
		}
	case reflect.Uint8:
		if full {
			v.SetUint(uint64(n % 256))
		}
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(t, p.Elem(), path, full, seed)
		v.Set(p)
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() {
				fill(t, v.Field(i), path+"."+f.Name, full, seed)
			}
		}
	case reflect.Slice:
		if !full {
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(t, s.Index(i), fmt.Sprintf("%s[%d]", path, i), true, seed)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		if full {
			for i := range 3 {
				k := reflect.New(v.Type().Key()).Elem()
				k.SetString(fmt.Sprintf("%s-key-%d", path, 3-i))
				e := reflect.New(v.Type().Elem()).Elem()
				fill(t, e, path+"{}", i != 1, seed) // one empty value among full ones
				m.SetMapIndex(k, e)
			}
		}
		v.Set(m)
	default:
		t.Fatalf("%s: a member of kind %s: teach carry_json.go and this test", path, v.Kind())
	}
}

// TestCarriedEncodingIsEncodingJSONs: the hand encoder writes encoding/json's bytes for every decision the
// carry tests seal, for a carried value whose every member (of every nested type) is set, and for one whose
// every member is empty.
func TestCarriedEncodingIsEncodingJSONs(t *testing.T) {
	for name, d := range carryDecisions(t) {
		t.Run(name, func(t *testing.T) {
			w := toCarried(d)
			checkCarriedEncoding(t, &w)
		})
	}
	for _, full := range []bool{true, false} {
		t.Run(fmt.Sprintf("every member full=%v", full), func(t *testing.T) {
			var w carried
			seed := 0
			fill(t, reflect.ValueOf(&w).Elem(), "carried", full, &seed)
			checkCarriedEncoding(t, &w)
		})
	}
	t.Run("zero", func(t *testing.T) { checkCarriedEncoding(t, &carried{}) })
	t.Run("time outside RFC 3339", func(t *testing.T) {
		w := toCarried(carryDecisions(t)["sandbox"])
		w.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
		checkCarriedEncoding(t, &w)
		c, _ := carryCore(t)
		if _, err := sealCarried(&w, func(p []byte) (string, error) { return c.Carry.Seal(CarryPurpose, p) }); err == nil {
			t.Fatal("a time encoding/json refuses was sealed")
		}
	})
}

// FuzzCarriedEncoding: any carried value encoding/json can read, the hand encoder writes as encoding/json
// does. go test ./internal/decision -run '^$' -fuzz FuzzCarriedEncoding
func FuzzCarriedEncoding(f *testing.F) {
	for _, d := range carryDecisions(f) {
		w := toCarried(d)
		b, _ := json.Marshal(w)
		f.Add(b)
	}
	var w carried
	seed := 0
	fill(f, reflect.ValueOf(&w).Elem(), "carried", true, &seed)
	b, _ := json.Marshal(w)
	f.Add(b)
	f.Fuzz(func(t *testing.T, plain []byte) {
		var w carried
		if json.Unmarshal(plain, &w) != nil {
			return
		}
		checkCarriedEncoding(t, &w)
	})
}
