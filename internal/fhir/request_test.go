package fhir

import (
	"errors"
	"testing"
)

func TestClassifyUnderstoodInteractions(t *testing.T) {
	cases := []struct {
		method, path, query string
		want                Interaction
		typ, id, vid        string
	}{
		{"GET", "/metadata", "", Capabilities, "", "", ""},
		{"GET", "/ExplanationOfBenefit", "patient=member-01", SearchType, "ExplanationOfBenefit", "", ""},
		{"GET", "/Patient/member-01", "", Read, "Patient", "member-01", ""},
		{"GET", "/Observation/obs-1/_history/2", "", VRead, "Observation", "obs-1", "2"},
	}
	for _, c := range cases {
		r, err := Classify(c.method, c.path, c.query)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		if r.Interaction != c.want || r.ResourceType != c.typ || r.ID != c.id || r.VersionID != c.vid {
			t.Errorf("%s %s: got %+v", c.method, c.path, r)
		}
	}
}

func TestClassifyRefusesWhatItDoesNotUnderstand(t *testing.T) {
	cases := []struct{ method, path, query string }{
		{"POST", "/Patient", ""},             // writes come later
		{"DELETE", "/Patient/member-01", ""}, // writes come later
		{"GET", "/", ""},                     // system search
		{"GET", "/Patient/a/../b", ""},       // dot segment
		{"GET", "/Patient/a%2Fb", ""},        // encoded slash
		{"GET", "/Patient//a", ""},           // empty segment
		{"GET", "/Patient/a;x=y", ""},        // matrix parameter
		{"GET", "/patient/a", ""},            // not a type name
		{"GET", "/Patient/a/_history", ""},   // instance history comes later
		{"GET", "/Patient/$everything", ""},  // operations come later
		{"GET", "/Patient/member-01", "_elements=name"},
		{"GET", "/Patient", "name=%zz"}, // malformed query
		{"GET", "/Patient/" + string(make([]byte, 65)), ""},
	}
	for _, c := range cases {
		if _, err := Classify(c.method, c.path, c.query); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s %s?%s: want ErrUnsupported, got %v", c.method, c.path, c.query, err)
		}
	}
}

func FuzzClassify(f *testing.F) {
	f.Add("GET", "/Patient/member-01", "")
	f.Add("GET", "/ExplanationOfBenefit", "patient=member-01&patient=member-02")
	f.Add("GET", "/Observation/x/_history/1", "")
	f.Fuzz(func(t *testing.T, method, path, query string) {
		r, err := Classify(method, path, query)
		if err != nil {
			return
		}
		if r.Params == nil {
			t.Fatal("nil params")
		}
		if r.Interaction != Capabilities && !IsResourceTypeName(r.ResourceType) {
			t.Fatalf("accepted type %q", r.ResourceType)
		}
		if (r.Interaction == Read || r.Interaction == VRead) && !IsID(r.ID) {
			t.Fatalf("accepted id %q", r.ID)
		}
	})
}
