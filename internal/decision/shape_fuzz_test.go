package decision

import (
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/fhirwall/fhirwall/internal/fhir"
)

// FuzzShape: whatever query and Accept a client sends, a shape that is accepted never lets a shaping
// parameter reach the FHIR server, and the FHIR server is asked for JSON unless the client asked for NDJSON.
func FuzzShape(f *testing.F) {
	for _, s := range [][2]string{
		{"_elements=patient,item&_summary=data", ""},
		{"_count=0&patient=member-01", "application/fhir+json"},
		{"_format=xml", "application/fhir+xml;q=1, application/json;q=0.1"},
		{"_summary=count&_total=accurate&_elements=Patient.name", "*/*"},
		{"_getpages=x&_elements=status", "application/fhir+ndjson"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, query, accept string) {
		req, err := fhir.Classify("GET", "/Observation", query, nil, nil)
		if err != nil {
			return
		}
		h := http.Header{}
		if accept != "" {
			h.Set("Accept", accept)
		}
		shape, refusal, _ := readShape(req, h.Values)
		if refusal != nil {
			return
		}
		up, err := url.ParseQuery(upstreamQuery(query, req, shape, map[string]string{"patient": "member-01"}))
		if err != nil {
			t.Fatalf("upstream query does not parse: %v", err)
		}
		for k := range up {
			if slices.Contains(shapingParams, k) {
				t.Fatalf("%s reaches the FHIR server for %q", k, query)
			}
		}
		if up.Get("patient") != "member-01" || len(up["patient"]) != 1 {
			t.Fatalf("narrowing lost for %q: %v", query, up)
		}
	})
}
