package authz

import (
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/ratelimit"
	"github.com/fhirwall/fhirwall/internal/token"
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
		if got := bodyTooLarge(c.size, c.sent, c.headers, fhir.MaxBodyBytes); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRateLimitHeadersNameTheClientTierAndADigestOfTheSubject(t *testing.T) {
	header := func(d *decision.Decision) map[string]string {
		m := map[string]string{}
		for _, h := range rateLimitHeaders(d) {
			m[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		return m
	}
	member := &decision.Decision{Client: &decision.Client{ID: "patient-app"}, Identity: &token.Identity{Subject: "f81d4fae-member-01"}}
	got := header(member)
	if got[ratelimit.ClientHeader] != "patient-app" || got[ratelimit.TierHeader] != ratelimit.DefaultTier {
		t.Fatalf("client and tier: %v", got)
	}
	if u := got[ratelimit.UserHeader]; u != ratelimit.UserKey("f81d4fae-member-01") || strings.Contains(u, "member-01") {
		t.Fatalf("user header %q: want the subject's digest, never the subject", u)
	}
	other := &decision.Decision{Client: &decision.Client{ID: "patient-app"}, Identity: &token.Identity{Subject: "member-02"}}
	if header(other)[ratelimit.UserHeader] == got[ratelimit.UserHeader] {
		t.Fatal("two members share a user key")
	}
	if h := header(&decision.Decision{Client: &decision.Client{ID: "org", Tier: "backend"}, Identity: &token.Identity{}}); h[ratelimit.UserHeader] != "" || h[ratelimit.TierHeader] != "backend" {
		t.Fatalf("no subject: no user header; %v", h)
	}
	if h := header(&decision.Decision{}); len(h) != 0 {
		t.Fatalf("no client: no rate-limit headers (the anonymous bucket); %v", h)
	}
}
