package priorauth

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSubmissionRefusesWhatPASForbidsBeforeAnyValidation(t *testing.T) {
	entry := func(url, typ, id string, more string) string {
		return `{"fullUrl":"` + url + `","resource":{"resourceType":"` + typ + `","id":"` + id + `"` + more + `}}`
	}
	claim := func(more string) string {
		return entry("http://x/fhir/Claim/c", "Claim", "c", `,"use":"preauthorization","patient":{"reference":"Patient/p"},`+
			`"insurer":{"reference":"Organization/i"},"provider":{"reference":"Organization/o"},"item":[{"sequence":1}]`+more)
	}
	rest := "," + entry("http://x/fhir/Patient/p", "Patient", "p", "") + "," + entry("http://x/fhir/Organization/i", "Organization", "i", "") +
		"," + entry("http://x/fhir/Organization/o", "Organization", "o", "")
	bundle := func(entries string) string {
		return `{"resourceType":"Bundle","type":"collection","entry":[` + entries + `]}`
	}
	for _, tc := range []struct {
		name, body, want string
	}{
		{"not JSON", `{"resourceType":`, "not JSON"},
		{"not an object", `["Bundle"]`, "not a JSON object"},
		{"not a Bundle", `{"resourceType":"Claim"}`, "not a Bundle"},
		{"Parameters without the Bundle", `{"resourceType":"Parameters","parameter":[{"name":"resource","resource":{"resourceType":"Claim"}}]}`, "does not hold a Bundle"},
		{"not a collection", `{"resourceType":"Bundle","type":"transaction","entry":[` + claim("") + rest + `]}`, "collection"},
		{"no entries", bundle(""), "no entries"},
		{"first entry not the Claim", bundle(entry("http://x/fhir/Patient/q", "Patient", "q", "") + "," + claim("") + rest), "first entry"},
		{"two Claims", bundle(claim("") + rest + "," + entry("http://x/fhir/Claim/d", "Claim", "d", `,"use":"preauthorization"`)), "more than one Claim"},
		{"not a preauthorization", bundle(strings.Replace(claim(""), "preauthorization", "claim", 1) + rest), "preauthorization"},
		{"a reference outside the Bundle", bundle(claim(`,"insurance":[{"coverage":{"reference":"Coverage/elsewhere"}}]`) + rest), "does not resolve"},
		{"an absolute reference outside", bundle(claim(`,"referral":{"reference":"http://other/fhir/ServiceRequest/1"}`) + rest), "does not resolve"},
		{"a fullUrl twice", bundle(claim("") + rest + "," + entry("http://x/fhir/Patient/p", "Patient", "p", "")), "appears twice"},
		{"an entry without fullUrl", bundle(claim("") + rest + `,{"resource":{"resourceType":"Patient"}}`), "no fullUrl"},
		{"items without sequence", bundle(strings.Replace(claim(""), `{"sequence":1}`, `{}`, 1) + rest), "sequence"},
		{"too deep", strings.Repeat("[", 100) + strings.Repeat("]", 100), "deeper"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSubmission([]byte(tc.body))
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrMalformed saying %q", err, tc.want)
			}
		})
	}
	t.Run("urn:uuid references and Parameters are accepted", func(t *testing.T) {
		body := `{"resourceType":"Parameters","parameter":[{"name":"resource","resource":{"resourceType":"Bundle","type":"collection","entry":[` +
			`{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Claim","use":"preauthorization","patient":{"reference":"urn:uuid:2"},` +
			`"insurer":{"reference":"urn:uuid:3"},"provider":{"reference":"urn:uuid:3"},"item":[{"sequence":1}]}},` +
			`{"fullUrl":"urn:uuid:2","resource":{"resourceType":"Patient"}},{"fullUrl":"urn:uuid:3","resource":{"resourceType":"Organization"}}]}}]}`
		s, err := ParseSubmission([]byte(body))
		if err != nil || s.Patient.FullURL != "urn:uuid:2" || s.Provider != s.Insurer {
			t.Fatalf("%v", err)
		}
	})
}

func TestParseSubmissionReadsThePASExamples(t *testing.T) {
	s, err := ParseSubmission(input(t, "submit-referral.json"))
	if err != nil {
		t.Fatal(err)
	}
	if s.LevelOfService != "U" || s.Priority != "normal" || s.Identifier != "http://example.org/PATIENT_EVENT_TRACE_NUMBER|222099" ||
		len(s.Coverages) != 1 || s.ClaimType.Code != "professional" || len(s.Items) != 1 || s.Items[0].Sequence != 1 {
		t.Fatalf("%+v", s)
	}
	if exp, basis := expedited(s); !exp || basis != "levelOfServiceCode" {
		t.Fatal("an urgent referral is expedited")
	}
}

// FuzzParseSubmission: whatever the body, ParseSubmission either refuses it as malformed or returns a
// Submission whose Claim, patient, insurer and provider are entries of the Bundle, and whose Bundle is JSON.
func FuzzParseSubmission(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"resourceType":"Bundle","type":"collection","entry":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := ParseSubmission(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("an error of another kind: %v", err)
			}
			return
		}
		if s.Claim != s.Entries[0] || s.Claim.Type() != "Claim" || s.Patient.Type() != "Patient" || s.Insurer.Type() != "Organization" {
			t.Fatal("parts not read from the Bundle")
		}
		for _, e := range []*BundleEntry{s.Patient, s.Insurer, s.Provider} {
			if s.byURL[e.FullURL] != e {
				t.Fatal("a part is not an entry")
			}
		}
		if !json.Valid(s.Bundle) || len(s.Items) == 0 {
			t.Fatal("no Bundle JSON or no items")
		}
	})
}
