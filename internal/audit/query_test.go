package audit

import (
	"testing"
	"time"
)

func TestFilterSelectsByKindPatientClientAPIAndHalfOpenWindow(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := Record{Kind: KindAccess, Time: t0, API: "patient-access", ClientID: "app-1", Patients: []string{"p1", "p2"}}
	admin := Record{Kind: KindAdmin, Time: t0, Actor: "admin:alice", Action: "suspend", Target: "app-1"}
	cases := []struct {
		name string
		f    Filter
		r    Record
		want bool
	}{
		{"empty filter matches everything", Filter{}, rec, true},
		{"patient among several", Filter{Patient: "p2"}, rec, true},
		{"other patient", Filter{Patient: "p3"}, rec, false},
		{"patient filter never matches a record without patients", Filter{Patient: "p1"}, Record{Kind: KindAccess, Time: t0}, false},
		{"client", Filter{Client: "app-1"}, rec, true},
		{"other client", Filter{Client: "app-2"}, rec, false},
		{"api", Filter{API: "patient-access"}, rec, true},
		{"other api", Filter{API: "provider-access"}, rec, false},
		{"since is inclusive", Filter{Since: t0}, rec, true},
		{"since after the record", Filter{Since: t0.Add(time.Nanosecond)}, rec, false},
		{"until is exclusive", Filter{Until: t0}, rec, false},
		{"until after the record", Filter{Until: t0.Add(time.Nanosecond)}, rec, true},
		{"window around the record", Filter{Since: t0.Add(-time.Hour), Until: t0.Add(time.Hour)}, rec, true},
		{"window compares instants, not zones", Filter{Since: t0.In(time.FixedZone("EST", -5*3600))}, rec, true},
		{"all members must match", Filter{Patient: "p1", Client: "app-2"}, rec, false},
		{"schema 1 record without kind", Filter{Client: "app-1"}, Record{Time: t0, ClientID: "app-1"}, true},
		{"checkpoint never matches", Filter{}, Record{Kind: KindCheckpoint, Time: t0}, false},
		{"checkpoint never matches the admin kind", Filter{Kind: KindAdmin}, Record{Kind: KindCheckpoint, Time: t0}, false},
		{"access filter never matches an admin entry", Filter{}, admin, false},
		{"admin kind never matches an access record", Filter{Kind: KindAdmin}, rec, false},
		{"admin kind matches an admin entry", Filter{Kind: KindAdmin}, admin, true},
		{"admin entry by the app it changed", Filter{Kind: KindAdmin, Client: "app-1"}, admin, true},
		{"admin entry of another app", Filter{Kind: KindAdmin, Client: "app-2"}, admin, false},
		{"admin entry matched on target, not on client_id", Filter{Kind: KindAdmin, Client: "app-1"}, Record{Kind: KindAdmin, Time: t0, ClientID: "app-1", Target: "app-9"}, false},
		{"admin entry in the window", Filter{Kind: KindAdmin, Since: t0, Until: t0.Add(time.Second)}, admin, true},
		{"admin entry after the window", Filter{Kind: KindAdmin, Until: t0}, admin, false},
		{"admin entry concerns no patient", Filter{Kind: KindAdmin, Patient: "p1"}, admin, false},
		{"admin entry concerns no one API", Filter{Kind: KindAdmin, API: "patient-access"}, admin, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.f.Match(c.r); got != c.want {
				t.Errorf("%+v.Match = %v, want %v", c.f, got, c.want)
			}
		})
	}
}

func TestRedactQueryNeverKeepsAnAccessToken(t *testing.T) {
	for in, want := range map[string]string{
		"patient=p1&_count=5":                "patient=p1&_count=5",
		"access_token=eyJabc&patient=p1":     "access_token=REDACTED&patient=p1",
		"patient=p1&ACCESS_TOKEN=eyJ":        "patient=p1&ACCESS_TOKEN=REDACTED",
		"access%5Ftoken=eyJ&x=1":             "access%5Ftoken=REDACTED&x=1",
		"note=access_token&access_token=eyJ": "note=access_token&access_token=REDACTED",
	} {
		if got := RedactQuery(in); got != want {
			t.Errorf("RedactQuery(%q) = %q, want %q", in, got, want)
		}
	}
}
