package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"
)

// marshalReflect is what every access record was before encode.go: encoding/json by reflection.
func marshalReflect(a accessRecord) ([]byte, error) { return json.Marshal(a) }

func checkSameEncoding(t *testing.T, a accessRecord) {
	t.Helper()
	want, werr := marshalReflect(a)
	got, gerr := encodeAccess(&a)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("encoding/json error %v, hand encoder error %v", werr, gerr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encodings differ:\nencoding/json %s\nhand          %s", want, got)
	}
}

// TestAccessRecordEncodingIsEncodingJSONs: the hand encoder writes the bytes encoding/json wrote, for the
// records the spool writes and for every awkward value a string, a number or a time can hold.
func TestAccessRecordEncodingIsEncodingJSONs(t *testing.T) {
	base := accessRecord(benchRecord(7))
	base.Schema, base.Kind = SchemaVersion, KindAccess
	cases := map[string]func(a *accessRecord){
		"as written": func(*accessRecord) {},
		"zero":       func(a *accessRecord) { *a = accessRecord{} },
		"empty lists": func(a *accessRecord) {
			a.Reasons, a.Scopes, a.Patients, a.DataCategories = []string{}, []string{}, []string{}, []string{}
		},
		"split":             func(a *accessRecord) { a.SplitID, a.Part, a.Parts = "x", 2, 3 },
		"traced":            func(a *accessRecord) { a.TraceID = "4bf92f3577b34da6a3ce929d0e0e4736" },
		"chained":           func(a *accessRecord) { a.Chain, a.Seq, a.PrevHash, a.Hash = "c", 9, GenesisHash, GenesisHash },
		"html and controls": func(a *accessRecord) { a.Query = "a=<b>&c=\"d\"\\\b\f\n\r\t\x00\x1f\x7f" },
		"unicode":           func(a *accessRecord) { a.Path = "/Patient/é\u2028\u2029\U0001F600\xff\xc3(\xed\xa0\x80" },
		"negative status":   func(a *accessRecord) { a.Status, a.Bytes = -1, math.MinInt64 },
		"floats":            func(a *accessRecord) { a.UpstreamMillis = 1e21 },
		"tiny float":        func(a *accessRecord) { a.UpstreamMillis = 1e-7 },
		"negative float":    func(a *accessRecord) { a.UpstreamMillis = -123456.789e-12 },
		"max float":         func(a *accessRecord) { a.UpstreamMillis = math.MaxFloat64 },
		"NaN":               func(a *accessRecord) { a.UpstreamMillis = math.NaN() },
		"Inf":               func(a *accessRecord) { a.UpstreamMillis = math.Inf(-1) },
		"zone": func(a *accessRecord) {
			a.Time = time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", -(5*3600+30*60)))
		},
		"zone with seconds":  func(a *accessRecord) { a.Time = time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600+17)) },
		"zone of 24 hours":   func(a *accessRecord) { a.Time = time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 24*3600)) },
		"year 10000":         func(a *accessRecord) { a.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"year -1":            func(a *accessRecord) { a.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) },
		"zero time":          func(a *accessRecord) { a.Time = time.Time{} },
		"admin members left": func(a *accessRecord) { a.Actor, a.After = "admin:x", json.RawMessage(`{}`) },
		"policy":             func(a *accessRecord) { a.Policy = benchPolicy() },
		"policy truncated": func(a *accessRecord) {
			a.Policy = &PolicyVerdict{Truncated: true, Status: 403, Reasons: []string{"insufficient_scope"}, Revision: "r"}
		},
		"policy without reasons": func(a *accessRecord) { a.Policy = &PolicyVerdict{Input: json.RawMessage(`{}`)} },
		"policy input html": func(a *accessRecord) {
			a.Policy = &PolicyVerdict{Input: json.RawMessage(`{"q":"<b>& "}`)}
		},
		"policy input spaced":  func(a *accessRecord) { a.Policy = &PolicyVerdict{Input: json.RawMessage(` { "a" : [ 1 , 2 ] } `)} },
		"policy input invalid": func(a *accessRecord) { a.Policy = &PolicyVerdict{Input: json.RawMessage(`{"a":`)} },
		"policy input scalar":  func(a *accessRecord) { a.Policy = &PolicyVerdict{Input: json.RawMessage(`1e3`)} },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			a := base
			mod(&a)
			checkSameEncoding(t, a)
		})
	}
}

// TestEveryRecordMemberIsHandEncoded fills every member of Record (by reflection, so a member added later is
// filled too) and compares: a member the hand encoder does not know fails here, not in a SIEM.
func TestEveryRecordMemberIsHandEncoded(t *testing.T) {
	var a accessRecord
	v := reflect.ValueOf(&a).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch name := v.Type().Field(i).Name; {
		case name == "Actor" || name == "Action" || name == "Target" || name == "Reason" || name == "Before" || name == "After":
			continue // an access record never carries them: encode clears them
		case name == "Policy":
			f.Set(reflect.ValueOf(benchPolicy()))
			pv := reflect.ValueOf(f.Interface().(*PolicyVerdict)).Elem()
			for j := range pv.NumField() { // a member added to PolicyVerdict and left zero fails here
				if pv.Field(j).IsZero() {
					t.Fatalf("PolicyVerdict.%s: teach benchPolicy and encode.go", pv.Type().Field(j).Name)
				}
			}
		case f.Type() == reflect.TypeFor[time.Time]():
			f.Set(reflect.ValueOf(time.Date(2026, 12, 7, 3, 4, 5, 600, time.UTC)))
		default:
			switch f.Kind() {
			case reflect.String:
				f.SetString(name + "-value")
			case reflect.Bool:
				f.SetBool(true)
			case reflect.Int, reflect.Int64:
				f.SetInt(int64(i + 2))
			case reflect.Uint64:
				f.SetUint(uint64(i + 2))
			case reflect.Float64:
				f.SetFloat(float64(i) + 0.25)
			case reflect.Slice:
				if f.Type().Elem().Kind() != reflect.String {
					t.Fatalf("member %s: a new kind of slice, teach encode.go and this test", name)
				}
				f.Set(reflect.ValueOf([]string{name, "b"}))
			default:
				t.Fatalf("member %s of kind %s: teach encode.go and this test", name, f.Kind())
			}
		}
	}
	checkSameEncoding(t, a)
}

// FuzzAccessRecordEncoding: for any strings, numbers and times, the hand encoder's bytes (or its error) are
// encoding/json's. go test ./internal/audit -run '^$' -fuzz FuzzAccessRecordEncoding
func FuzzAccessRecordEncoding(f *testing.F) {
	f.Add("patient-access", "/ExplanationOfBenefit", "patient=p1&_count=10", "member-0001", 11.482, int64(4817), 200, int64(1765000000), int64(123456789), 0, uint64(0))
	f.Add("\u2028<>&", "\xff\xfe", "a\x00b", "", math.Inf(1), int64(-1), -5, int64(-62135596800-1), int64(0), 3600*25, uint64(1))
	f.Add("", "", "", "é", 1e-7, int64(0), 0, int64(253402300800), int64(999999999), -3600*24, uint64(math.MaxUint64))
	f.Add(" {\"a\": 1}", "r", `{"api":"x","request":{"params":[]}}`, "", 0.5, int64(1), 200, int64(1), int64(1), 0, uint64(3))
	f.Fuzz(func(t *testing.T, api, path, query, patient string, ms float64, n int64, status int, sec, nsec int64, zone int, seq uint64) {
		checkSameEncoding(t, withFuzzPolicy(accessRecord(benchRecord(1)), query, path, status, seq))
		a := accessRecord(benchRecord(1))
		a.API, a.Path, a.Query, a.UpstreamMillis, a.Bytes, a.Status, a.Seq = api, path, query, ms, n, status, seq
		a.Patients = []string{patient, query}
		a.Time = time.Unix(sec, nsec).In(time.FixedZone("z", zone))
		if seq%3 == 0 {
			a.Reasons, a.Scopes = nil, []string{}
			a.SplitID, a.Part, a.Parts = path, status, int(n)
		}
		checkSameEncoding(t, a)
	})
}

// benchPolicy is a Patient Access search's policy member as Decide records it, every member set.
func benchPolicy() *PolicyVerdict {
	return &PolicyVerdict{
		Input: json.RawMessage(`{"api":"patient-access","authenticated":true,"identity":{"client_id":"patient-app",` +
			`"fhir_user":"Patient/member-0042","other_scopes":["openid","fhirUser","launch/patient"],"patient":"member-0042",` +
			`"scopes":[{"context":"patient","permissions":{"c":false,"d":false,"r":true,"s":true,"u":false},"raw":"patient/ExplanationOfBenefit.rs",` +
			`"resource_type":"ExplanationOfBenefit"}],"subject":"5f0c2d7e-3b8a-4e61-9a2f-1d6c8b7e4a90"},"request":{"conditional":false,` +
			`"id":"","interaction":"search-type","method":"GET","params":[{"chain":[],"key":"patient","modifier":"","name":"patient",` +
			`"target_type":"","values":["member-0042"]}],"patient_params":["patient","beneficiary"],"resource_type":"ExplanationOfBenefit","version_id":""}}`),
		Truncated: true, Allow: true, Status: 200, Reasons: []string{"patient_scope"}, Revision: "sha256:3f1c9a0e5b7d2c48",
	}
}

// withFuzzPolicy gives a fuzzed record a policy member whose input is any bytes (valid JSON or not).
func withFuzzPolicy(a accessRecord, input, revision string, status int, seq uint64) accessRecord {
	a.Policy = &PolicyVerdict{Input: json.RawMessage(input), Truncated: seq%2 == 1, Allow: seq%5 == 0, Status: status,
		Reasons: []string{revision}, Revision: revision}
	if seq%7 == 0 {
		a.Policy.Reasons = nil
	}
	return a
}
