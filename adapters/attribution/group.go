package attribution

import (
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
)

// group is the part of an attribution Group the adapter reads.
type group struct {
	ResourceType   string    `json:"resourceType"`
	ID             string    `json:"id"`
	Active         *bool     `json:"active"`
	ManagingEntity reference `json:"managingEntity"`
	Member         []member  `json:"member"`
}

type member struct {
	Entity    reference   `json:"entity"`
	Period    *period     `json:"period"`
	Inactive  bool        `json:"inactive"`
	Extension []extension `json:"extension"`
}

type reference struct {
	Reference string `json:"reference"`
}

type period struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type extension struct {
	URL            string     `json:"url"`
	ValueReference *reference `json:"valueReference"`
}

// current reports whether the membership holds at now: not inactive, and now within its period. A date
// that cannot be read ends the membership: an unreadable period must not widen access.
func (m member) current(now time.Time) bool {
	if m.Inactive {
		return false
	}
	if m.Period == nil {
		return true
	}
	if m.Period.Start != "" {
		start, _, err := fhir.ParseDate(m.Period.Start)
		if err != nil || now.Before(start) {
			return false
		}
	}
	if m.Period.End != "" {
		// R4 Period.end includes any matching date/time: "2026-05" ends when June begins.
		_, end, err := fhir.ParseDate(m.Period.End)
		if err != nil || !now.Before(end) {
			return false
		}
	}
	return true
}

func (m member) attributedTo(practitioner string) bool {
	for _, e := range m.Extension {
		if e.URL == ATRAttributedProvider && e.ValueReference != nil && e.ValueReference.Reference == practitioner {
			return true
		}
	}
	return false
}

// namesPractitioners reports whether any member carries the ATR attributed-provider extension, that is
// whether the Group attributes at practitioner level rather than only to its organisation.
func (g group) namesPractitioners() bool {
	for _, m := range g.Member {
		for _, e := range m.Extension {
			if e.URL == ATRAttributedProvider {
				return true
			}
		}
	}
	return false
}

// patientID returns the id of the Patient a member entity names (fhir.PatientID: relative, absolute or
// versioned). A reference that names a Patient but no readable id (conditional, malformed, "Patient/a/b")
// attributes nobody: fhir.UnknownPatient stands for "some patient" in compartment checks, and putting it
// in a provider's list would let every resource naming an unreadable patient through.
func patientID(ref string) (string, bool) {
	id, ok := fhir.PatientID(ref)
	if !ok || id == fhir.UnknownPatient {
		return "", false
	}
	return id, true
}
