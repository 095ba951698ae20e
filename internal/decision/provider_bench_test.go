package decision

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/policies"
)

// providerCore is a Core deciding Provider Access with the real policies, for a provider organisation whose
// attribution group has members members (1% of them opted out).
func providerCore(tb testing.TB, members int) *Core {
	tb.Helper()
	patients := make([]string, members)
	out := map[string]bool{}
	for i := range patients {
		patients[i] = fmt.Sprintf("member-%06d", i)
		if i%100 == 99 {
			out[patients[i]] = true
		}
	}
	data := map[string]any{"apis": map[string]any{"provider-access": map[string]any{"resources": map[string]any{
		"Patient":     map[string]any{"search_params": []any{"_id", "name"}},
		"Observation": map[string]any{"search_params": []any{"_id", "patient", "category", "code"}},
	}}}}
	engine, err := policy.New(context.Background(), policies.FS, data)
	if err != nil {
		tb.Fatal(err)
	}
	c, _, _ := newRegistryCore(fakeRealmRegistry())
	c.Policy = engine
	c.Attribution = &fakeAttribution{lists: map[string]AttributionList{
		"Organization/org-a": NewAttributionList("attribution-org-a", patients)}}
	c.Consent = &fakeConsent{out: out}
	c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	c.Now = time.Now
	return c
}

func providerSearch(c *Core, patient string) *Decision {
	return c.Decide(context.Background(), Input{API: "provider-access", Method: "GET", Path: "/Observation",
		RawQuery: "patient=" + patient, Authorization: []string{"Bearer org-a"}})
}

// TestProviderDecisionsDoNotListTheGroup: whatever the group's size, the policy sees one membership answer
// per named patient and the upstream query names only what the client sent.
func TestProviderDecisionsDoNotListTheGroup(t *testing.T) {
	c := providerCore(t, 100_000)
	for patient, allow := range map[string]bool{"member-000005": true, "member-000099": false, "member-x": false} {
		d := providerSearch(c, patient)
		if d.Allow != allow {
			t.Errorf("%s: allow %v (%v), want %v", patient, d.Allow, d.Reasons, allow)
		}
		if allow && d.UpstreamQuery != "patient="+patient {
			t.Errorf("%s: upstream %q", patient, d.UpstreamQuery)
		}
	}
	d := c.Decide(context.Background(), Input{API: "provider-access", Method: "GET", Path: "/Patient",
		Authorization: []string{"Bearer org-a"}})
	if !d.Allow || d.UpstreamQuery != "_has%3AGroup%3Amember%3A_id=attribution-org-a" {
		t.Fatalf("a Patient search naming nobody: allow %v %v, upstream %q", d.Allow, d.Reasons, d.UpstreamQuery)
	}
}

// BenchmarkProviderDecision decides a provider's search for one named member with an attribution group of 10
// and of 100,000 members (go test -bench ProviderDecision ./internal/decision): the costs should match.
func BenchmarkProviderDecision(b *testing.B) {
	for _, n := range []int{10, 100_000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			c := providerCore(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if d := providerSearch(c, "member-000005"); !d.Allow {
					b.Fatal(d.Reasons)
				}
			}
		})
	}
}
