package fhir

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
)

// checkErr fails unless err is nil or of exactly one of the three kinds callers map to a status.
func checkErr(t *testing.T, err error) {
	t.Helper()
	n := 0
	for _, k := range []error{ErrUnsupported, ErrUnsupportedMediaType, ErrTooLarge} {
		if errors.Is(err, k) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error of no single kind: %v", err)
	}
}

// checkRequest holds what every accepted request must satisfy, entries included.
func checkRequest(t *testing.T, r Request, depth int) {
	t.Helper()
	if r.Params == nil || r.Query == nil {
		t.Fatal("nil params or query")
	}
	if r.ResourceType != "" && r.ResourceType != "*" && !IsResourceType(r.ResourceType) {
		t.Fatalf("accepted type %q", r.ResourceType)
	}
	if r.ID != "" && !IsID(r.ID) || r.VersionID != "" && !IsID(r.VersionID) {
		t.Fatalf("accepted id %q/%q", r.ID, r.VersionID)
	}
	for _, p := range r.Params {
		if p.Name == "" || len(p.Values) == 0 {
			t.Fatalf("param %+v", p)
		}
	}
	if len(r.Entries) > 0 && depth > 0 || len(r.Entries) > MaxEntries {
		t.Fatalf("%d entries at depth %d", len(r.Entries), depth)
	}
	for _, e := range r.Entries {
		checkRequest(t, e, depth+1)
	}
}

func FuzzClassify(f *testing.F) {
	f.Add("GET", "/Patient/member-01", "", "", []byte(nil))
	f.Add("POST", "/Observation", "", "application/fhir+json", []byte(obsMember01))
	f.Fuzz(func(t *testing.T, method, path, query, contentType string, body []byte) {
		h := http.Header{}
		if contentType != "" {
			h.Set("Content-Type", contentType)
		}
		r, err := Classify(method, path, query, h.Values, body)
		if err != nil {
			checkErr(t, err)
			return
		}
		checkRequest(t, r, 0)
		if _, err := json.Marshal(r.PolicyInput()); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseForm(f *testing.F) {
	f.Add(`subject:Patient.name=a,b&_has:Observation:patient:code=x`)
	f.Fuzz(func(t *testing.T, s string) {
		params, err := ParseForm(s)
		if err != nil {
			checkErr(t, err)
			return
		}
		for _, p := range params {
			if p.Name == "" || len(p.Values) == 0 || p.Chain == nil {
				t.Fatalf("param %+v", p)
			}
			for i := 0; i < len(p.Key); i++ {
				if !isKeyChar(p.Key[i]) {
					t.Fatalf("key %q", p.Key)
				}
			}
			if p.Has != nil && !IsResourceType(p.Has.TargetType) {
				t.Fatalf("_has type %q", p.Has.TargetType)
			}
		}
	})
}

func FuzzBundle(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/p1"}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		h := http.Header{"Content-Type": {"application/fhir+json"}}
		r, err := Classify("POST", "", "", h.Values, body)
		if err != nil {
			checkErr(t, err)
			return
		}
		if r.Interaction != Batch && r.Interaction != Transaction {
			t.Fatalf("interaction %s", r.Interaction)
		}
		checkRequest(t, r, 0)
	})
}
