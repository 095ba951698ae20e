package attribution

import (
	"context"
	"slices"
	"testing"
	"time"
)

// Member references are read by fhir.PatientID, the parser the compartment check uses: what it cannot read
// attributes nobody.
func TestMemberReferencesTheCompartmentCheckCannotReadAttributeNobody(t *testing.T) {
	for _, tc := range []struct {
		ref string
		id  string
	}{
		{"Patient/member-01", "member-01"},
		{"http://hapi/fhir/Patient/member-01", "member-01"},
		{"Patient/member-01/_history/3", "member-01"},
		{"patient/member-01", ""},       // not the Patient type
		{"Patient/member-01/extra", ""}, // not a reference to a Patient instance
		{"Patient/../member-01", ""},    // dot segment
		{"Patient/..", ""},              // dot segment as the id
		{"Patient/member-01,member-02", ""},
		{"Patient?identifier=FWM0001", ""}, // conditional: no id
		{"Patient/", ""},
		{"#member-01", ""},
		{"Practitioner/pract-01", ""},
		{"", ""},
	} {
		id, ok := patientID(tc.ref)
		if id != tc.id || ok != (tc.id != "") {
			t.Errorf("%q: %q, %v; want %q", tc.ref, id, ok, tc.id)
		}
	}
}

func TestMembershipPeriodsAreReadStrictlyAndFailClosed(t *testing.T) {
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		start, end string
		current    bool
	}{
		{"open", "", "", true},
		{"started", "2024-01-01", "", true},
		{"starts later today", "2026-06-01T13:00:00Z", "", false},
		{"started this morning in another zone", "2026-06-01T13:00:00+02:00", "", true},
		{"ends at the end of today", "", "2026-06-01", true},
		{"ended this month? no: the month is not over", "", "2026-06", true},
		{"ended last month", "", "2026-05", false},
		{"ends this second", "", "2026-06-01T12:00:00Z", true},
		{"ended a second ago", "", "2026-06-01T11:59:59Z", false},
		{"month 13", "2016-13-01", "", false},
		{"day 30 of February", "", "2027-02-30", false},
		{"time without a zone", "2024-01-01T00:00:00", "", false},
		{"prose", "", "soon", false},
		{"year 0", "0000", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := member{Period: &period{Start: tc.start, End: tc.end}}
			if got := m.current(at); got != tc.current {
				t.Errorf("current = %v, want %v", got, tc.current)
			}
		})
	}
}

func TestLooseMemberReferencesAreLeftOutOfTheList(t *testing.T) {
	f := newFakeFHIR(t)
	g := f.groups[0]
	g["member"] = append(g["member"].([]any)[:1],
		map[string]any{"entity": map[string]any{"reference": "Patient/member-02/extra"}},
		map[string]any{"entity": map[string]any{"reference": "Patient/../member-03"}},
		map[string]any{"entity": map[string]any{"reference": "patient/member-04"}},
		map[string]any{"entity": map[string]any{"reference": "Patient?identifier=FWM0005"}},
		map[string]any{"entity": map[string]any{"reference": "Patient/member-06"}, "period": map[string]any{"start": "2016-13-01"}})
	c, _ := newClient(f, Options{})
	got, err := c.Attributed(context.Background(), "Organization/org-a")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"member-01"}; !slices.Equal(got.Patients, want) {
		t.Errorf("patients %v, want %v", got.Patients, want)
	}
}
