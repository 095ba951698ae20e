package gateway

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fhirwall/fhirwall/internal/audit"
)

func TestDeprecationHeadersAreOnTheAnswersOfTheTypeTheyConcern(t *testing.T) {
	gw := newFakeGateway(&fakeSink{records: make(chan audit.Record, 8)}, fakeHAPI(t))
	var asked [][2]string
	gw.ResponseHeaders = func(api, resourceType string) http.Header {
		asked = append(asked, [2]string{api, resourceType})
		if resourceType != "Observation" {
			return nil
		}
		return http.Header{"Deprecation": {"@1796083200"}, "Sunset": {"Wed, 30 Jun 2027 00:00:00 GMT"}}
	}
	front := httptest.NewServer(gw)
	defer front.Close()

	for path, want := range map[string]string{"/Observation?code=x": "@1796083200", "/Observation/o1": "@1796083200", "/Condition?code=x": ""} {
		resp := getAs(t, front.URL, path)
		if got := resp.Header.Get("Deprecation"); resp.StatusCode != http.StatusOK || got != want {
			t.Errorf("%s: %d, Deprecation %q, want 200 and %q", path, resp.StatusCode, got, want)
		}
		if want != "" && resp.Header.Get("Sunset") == "" {
			t.Errorf("%s: no Sunset", path)
		}
	}
	if len(asked) != 3 || asked[0][0] != "patient-access" {
		t.Fatalf("asked for %v, want each answer's API and path type", asked)
	}
}

func TestPathTypeIsTheFirstSegmentAsEnvoysRoutesMatchIt(t *testing.T) {
	for path, want := range map[string]string{"/Observation": "Observation", "/Observation/o1/_history/2": "Observation", "/": "", "": "", "/$export-poll-status": "$export-poll-status"} {
		if got := pathType(path); got != want {
			t.Errorf("pathType(%q) = %q, want %q", path, got, want)
		}
	}
}
