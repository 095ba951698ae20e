package consent

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"
)

// An opt-out in force whose member cannot be read by fhir.PatientID (the compartment check's parser) makes
// the set unanswerable: sharing nobody beats sharing an opted-out member.
func TestOptOutOfAMemberNobodyCanReadFailsClosed(t *testing.T) {
	for _, ref := range []string{"Patient/member-01/extra", "Patient/../member-01", "patient/member-01",
		"Patient?identifier=FWM0001", "Patient/", "Group/g1", ""} {
		t.Run(ref, func(t *testing.T) {
			f := newFakeFHIR(t)
			c := optOut(1)
			c["patient"] = map[string]any{"reference": ref}
			f.consents = append(f.consents, c)
			cl, _ := newClient(f, Options{})
			if got, err := cl.OptedOut(context.Background()); !errors.Is(err, ErrUnreadableOptOut) || got != nil {
				t.Errorf("%v, %v; want ErrUnreadableOptOut and no set", sorted(got), err)
			}
		})
	}
}

func TestGroupOptOutMarkOnAnUnreadableMemberFailsClosed(t *testing.T) {
	for _, ref := range []string{"Patient/member-01/extra", "Patient/../x", "Patient?identifier=FWM0001"} {
		t.Run(ref, func(t *testing.T) {
			f := newFakeFHIR(t)
			f.groups[0]["member"] = append(f.groups[0]["member"].([]any), map[string]any{
				"entity":    map[string]any{"reference": ref},
				"extension": []any{map[string]any{"url": OptOutExtension, "valueBoolean": true}}})
			c, _ := newClient(f, Options{})
			if _, err := c.OptedOut(context.Background()); !errors.Is(err, ErrUnreadableOptOut) {
				t.Errorf("err %v, want ErrUnreadableOptOut", err)
			}
		})
	}
}

func TestUnreadableReferencesWithoutAnOptOutChangeNothing(t *testing.T) {
	f := newFakeFHIR(t)
	f.groups[0]["member"] = append(f.groups[0]["member"].([]any),
		map[string]any{"entity": map[string]any{"reference": "Patient/member-01/extra"}},
		// a marked Device is not a member
		map[string]any{"entity": map[string]any{"reference": "Device/d1"},
			"extension": []any{map[string]any{"url": OptOutExtension, "valueBoolean": true}}})
	permit := optOut(2)
	permit["provision"] = map[string]any{"type": "permit"}
	permit["patient"] = map[string]any{"reference": "Patient/../member-02"}
	f.consents = append(f.consents, permit)
	c, _ := newClient(f, Options{})
	got, err := c.OptedOut(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"member-05", "member-12", "member-20", "member-22"}; !slices.Equal(sorted(got), want) {
		t.Errorf("opted out %v, want %v", sorted(got), want)
	}
}

func TestOptOutEndDatesAreReadStrictlyAndAnUnreadableOneKeepsItInForce(t *testing.T) {
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		end     string
		inForce bool
	}{
		{"2026-05-31", false},
		{"2026-06-01", true}, // Period.end includes the whole day
		{"2026-06", true},
		{"2026-05", false},
		{"2026-06-01T11:59:59Z", false},
		{"2026-06-01T13:59:59+02:00", false}, // 11:59:59Z
		{"2026-06-01T12:00:00Z", true},
		{"2026-13-01", true}, // unreadable: still in force
		{"2026-02-30", true},
		{"2026-05-31T10:00:00", true}, // no zone: unreadable
		{"yesterday", true},
	} {
		t.Run(tc.end, func(t *testing.T) {
			raw, _ := json.Marshal(map[string]any{"resourceType": "Consent", "status": "active",
				"patient": map[string]any{"reference": "Patient/member-01"}, "policy": []any{map[string]any{"uri": OptOutPolicy}},
				"provision": map[string]any{"type": "deny", "period": map[string]any{"end": tc.end}}})
			var c consentResource
			if err := json.Unmarshal(raw, &c); err != nil {
				t.Fatal(err)
			}
			id, ok, err := c.optOut(at)
			if err != nil || ok != tc.inForce || ok && id != "member-01" {
				t.Errorf("%q, %v, %v; want in force %v", id, ok, err, tc.inForce)
			}
		})
	}
}
