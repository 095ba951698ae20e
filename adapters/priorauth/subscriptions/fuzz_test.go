package subscriptions

import (
	"errors"
	"net/url"
	"testing"
)

// FuzzParseSubscription: whatever a client sends, parse either refuses it with ErrInvalid or returns a
// subscription that keeps every rule (the PAS topic, the owner's identifiers only, a registered host).
func FuzzParseSubscription(f *testing.F) {
	f.Add(subscriptionJSON("http://127.0.0.1:9/hook", "orgIdentifier=1234567893", ContentIDOnly, nil))
	f.Add(subscriptionJSON("https://127.0.0.1/hook", "org-identifier=http://hl7.org/fhir/sid/us-npi|1234567893", ContentFullResource,
		map[string]any{"channel.extension": []any{map[string]any{"url": extHeartbeat, "valueUnsignedInt": 60}}}))
	f.Add([]byte(`{"resourceType":"Subscription","channel":{"header":["a:b"]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := parse(body, orgA)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("refusal without ErrInvalid: %v", err)
			}
			return
		}
		u, err := url.Parse(s.Endpoint)
		if err != nil || !HostAllowed(u, orgA.NotifyHosts) || (u.Scheme != "https" && !isLoopback(u.Hostname())) {
			t.Fatalf("endpoint %q accepted", s.Endpoint)
		}
		for _, f := range s.Filter {
			if f != orgA.OrgIdentifiers[0] {
				t.Fatalf("filter %q accepted", f)
			}
		}
		if len(s.Filter) == 0 {
			t.Fatal("no filter")
		}
		if _, err := checkHeaders(s.Headers); err != nil {
			t.Fatalf("stored headers do not pass again: %v", err)
		}
	})
}
