package authz

import (
	"testing"

	"github.com/fhirwall/fhirwall/internal/fhir"
)

func TestBodyTooLargeFromAnyEvidence(t *testing.T) {
	max := int64(fhir.MaxBodyBytes)
	cases := []struct {
		name    string
		size    int64
		sent    int
		headers map[string]string
		want    bool
	}{
		{"small", 100, 100, map[string]string{"content-length": "100"}, false},
		{"at the limit", max, int(max), nil, false},
		{"size reported above", max + 1, int(max), nil, true},
		{"bytes sent above", -1, int(max) + 1, nil, true},
		{"content-length above, body truncated", -1, int(max), map[string]string{"content-length": "2000000"}, true},
		{"partial body marked", -1, int(max), map[string]string{"x-envoy-auth-partial-body": "true"}, true},
		{"unknown size, no length", -1, 10, nil, false},
	}
	for _, c := range cases {
		if got := bodyTooLarge(c.size, c.sent, c.headers); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
