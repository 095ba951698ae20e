package fhir

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The reference for PatientsOf and PatientID: the map-and-split implementation they replaced (issue 18),
// kept so the allocation-free one is held to the same answers (TestPatientsOfMatchesRef, FuzzPatientsOf).

func patientsOfRef(resource map[string]any) ([]string, bool) {
	set := map[string]struct{}{}
	rt, _ := resource["resourceType"].(string)
	in := rt == "Patient" || PatientCompartmentPaths[rt] != nil
	collectPatientsRef(resource, set, 0, false)
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out, in
}

func collectPatientsRef(res map[string]any, set map[string]struct{}, depth int, contained bool) {
	if depth > maxWalkDepth {
		set[UnknownPatient] = struct{}{}
		return
	}
	rt, _ := res["resourceType"].(string)
	switch paths := PatientCompartmentPaths[rt]; {
	case rt == "Patient":
		id, _ := res["id"].(string)
		if contained || !IsID(id) {
			id = UnknownPatient
		}
		set[id] = struct{}{}
	case paths != nil:
		for _, p := range paths {
			walkPathRef(res, p, func(ref map[string]any) { addReferenceRef(ref, set) }, depth)
		}
	default:
		for k, v := range res {
			if k != "contained" {
				anyReferenceRef(v, set, depth+1)
			}
		}
	}
	if contained, ok := res["contained"].([]any); ok {
		for _, c := range contained {
			if m, ok := c.(map[string]any); ok {
				collectPatientsRef(m, set, depth+1, true)
			}
		}
	}
}

// walkPath calls fn with every object found at path below v, descending through arrays at every step.
func walkPathRef(v any, path []string, fn func(map[string]any), depth int) {
	if depth > maxWalkDepth {
		return
	}
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			walkPathRef(e, path, fn, depth+1)
		}
	case map[string]any:
		if len(path) == 0 {
			fn(t)
			return
		}
		if next, ok := t[path[0]]; ok {
			walkPathRef(next, path[1:], fn, depth+1)
		}
	}
}

// anyReference records the Patient references anywhere below v.
func anyReferenceRef(v any, set map[string]struct{}, depth int) {
	if depth > maxWalkDepth {
		set[UnknownPatient] = struct{}{}
		return
	}
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			anyReferenceRef(e, set, depth+1)
		}
	case map[string]any:
		if _, isRes := t["resourceType"].(string); isRes {
			// A whole resource inside an element (Parameters.parameter.resource, Bundle.entry.resource):
			// its patients are its container's.
			collectPatientsRef(t, set, depth+1, false)
			return
		}
		addReferenceRef(t, set)
		for _, e := range t {
			anyReferenceRef(e, set, depth+1)
		}
	}
}

// addReference records the patient a Reference element points at, if it points at one.
func addReferenceRef(ref map[string]any, set map[string]struct{}) {
	s, _ := ref["reference"].(string)
	typ, _ := ref["type"].(string)
	if s == "" {
		return // identifier- or display-only: names no resource on this server
	}
	if id, ok := patientIDRef(s); ok {
		set[id] = struct{}{}
	} else if typ == "Patient" && !strings.HasPrefix(s, "#") {
		set[UnknownPatient] = struct{}{}
	}
}

func patientIDRef(ref string) (id string, ok bool) {
	if ref == "" || ref[0] == '#' || strings.HasPrefix(ref, "urn:") {
		return "", false
	}
	if !strings.Contains(ref, "Patient") {
		return "", false
	}
	segs := strings.Split(ref, "/")
	if n := len(segs); n >= 4 && segs[n-2] == "_history" {
		segs = segs[:n-2]
	}
	if n := len(segs); n >= 2 && segs[n-2] == "Patient" && IsID(segs[n-1]) {
		return segs[n-1], true
	}
	for _, s := range segs {
		if s == "Patient" || strings.HasPrefix(s, "Patient?") {
			return UnknownPatient, true
		}
	}
	return "", false
}

// patientsCases: references and resources where an in-place reading most easily parts from a split.
var patientRefCases = []string{
	"", "/", "//", "///", "////", "Patient", "Patient/", "/Patient", "Patient//", "Patient/A/", "/Patient/A",
	"Patient/A/_history", "Patient/A/_history/", "Patient/_history/2", "_history/2", "Patient/A/_history/2/x",
	"x/Patient/A/_history/2", "Patient/_history", "a/Patient/_history/3", "Patient?x/_history/1",
	"http://h/Patient/A/_history/1/_history/2", "Patient/Patient", "Patient/A/B", "B/Patient?x", "Patientx/A",
	"Patient/" + strings.Repeat("a", 65), "Patient/a.b-c", "urn:uuid:Patient/A", "#Patient/A", "Patient/#A",
}

func TestPatientIDMatchesRef(t *testing.T) {
	for _, ref := range patientRefCases {
		id, ok := PatientID(ref)
		wid, wok := patientIDRef(ref)
		if id != wid || ok != wok {
			t.Errorf("%q: got %q %v, the reference %q %v", ref, id, ok, wid, wok)
		}
	}
}

func checkPatientsOf(t *testing.T, raw []byte) {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return
	}
	want, wantIn := patientsOfRef(m)
	got, in := PatientsOf(m)
	if !reflect.DeepEqual(got, want) || in != wantIn {
		t.Fatalf("%s: got %q %v, the reference %q %v", raw, got, in, want, wantIn)
	}
	// Appending after other ids leaves them as they were and adds the same ids.
	prefix := []string{"z", "a"}
	got, in = AppendPatientsOf(slices.Clone(prefix), m)
	if !reflect.DeepEqual(got, append(slices.Clone(prefix), want...)) || in != wantIn {
		t.Fatalf("%s: appended %q %v, the reference %q %v", raw, got, in, want, wantIn)
	}
}

func TestPatientsOfMatchesRef(t *testing.T) {
	for _, ref := range patientRefCases {
		for _, rt := range []string{"Observation", "Task", "Patient"} {
			checkPatientsOf(t, fmt.Appendf(nil, `{"resourceType":%q,"id":%q,"subject":{"reference":%q},"for":{"reference":%q,"type":"Patient"}}`, rt, ref, ref, ref))
		}
	}
	var many strings.Builder
	many.WriteString(`{"resourceType":"Group","member":[`)
	for i := range 100 {
		fmt.Fprintf(&many, `{"entity":{"reference":"Patient/p%d"}},{"entity":{"reference":"Patient/p%d"}},`, i%37, i)
	}
	many.WriteString(`{"entity":{"reference":"Patient?x"}}],"contained":[{"resourceType":"Patient","id":"c"}]}`)
	checkPatientsOf(t, []byte(many.String()))
}

// FuzzPatientsOf: go test ./internal/fhir -run '^$' -fuzz FuzzPatientsOf
func FuzzPatientsOf(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Observation","subject":{"reference":"Patient/a/_history/2"},"performer":[{"reference":"Patient/b"},{"reference":"Patient/a"}]}`))
	f.Add([]byte(`{"resourceType":"Task","for":{"reference":"x/Patient?y","type":"Patient"},"contained":[{"resourceType":"Patient","id":"p"}]}`))
	f.Add([]byte(`{"resourceType":"Patient","id":"p1","link":[{"other":{"reference":"Patient/p2"}}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkPatientsOf(t, raw)
		id, ok := PatientID(string(raw))
		wid, wok := patientIDRef(string(raw))
		if id != wid || ok != wok {
			t.Fatalf("%q: got %q %v, the reference %q %v", raw, id, ok, wid, wok)
		}
	})
}
