package consent

import (
	"errors"
	"fmt"
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
)

type reference struct {
	Reference string `json:"reference"`
}

// consentResource is the part of a Consent the adapter reads.
type consentResource struct {
	ResourceType string    `json:"resourceType"`
	ID           string    `json:"id"`
	Status       string    `json:"status"`
	Patient      reference `json:"patient"`
	Policy       []struct {
		URI string `json:"uri"`
	} `json:"policy"`
	Provision *struct {
		Type   string `json:"type"`
		Period *struct {
			End string `json:"end"`
		} `json:"period"`
	} `json:"provision"`
}

// ErrUnreadableOptOut: an opt-out in force names its member in a way that cannot be read (no Patient
// reference, a conditional or malformed one). Nobody can say whom it protects, so the opted-out set cannot
// be answered: Provider Access refuses everyone (503) until the record is fixed, rather than share the data
// of a member who opted out.
var ErrUnreadableOptOut = errors.New("opt-out names no readable patient")

// optOut returns the member a Consent opts out of Provider Access, if it does at now. An opt-out whose
// period ended no longer counts; an end date that cannot be read keeps it in force.
func (r consentResource) optOut(now time.Time) (string, bool, error) {
	if r.ResourceType != "Consent" || r.Status != "active" || r.Provision == nil || r.Provision.Type != "deny" {
		return "", false, nil
	}
	matched := false
	for _, p := range r.Policy {
		matched = matched || p.URI == OptOutPolicy
	}
	if !matched {
		return "", false, nil
	}
	if p := r.Provision.Period; p != nil && p.End != "" {
		// R4 Period.end includes any matching date/time: an opt-out ending "2026-05" holds through May.
		if _, end, err := fhir.ParseDate(p.End); err == nil && !now.Before(end) {
			return "", false, nil
		}
	}
	// Consent.patient is Reference(Patient): anything else is as unreadable as a malformed Patient reference.
	id, ok := fhir.PatientID(r.Patient.Reference)
	if !ok || id == fhir.UnknownPatient {
		return "", false, fmt.Errorf("%w: Consent/%s patient %q", ErrUnreadableOptOut, r.ID, r.Patient.Reference)
	}
	return id, true, nil
}

// groupResource is the part of a Group the adapter reads.
type groupResource struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id"`
	Member       []groupMember `json:"member"`
}

type groupMember struct {
	Entity    reference `json:"entity"`
	Extension []struct {
		URL          string `json:"url"`
		ValueBoolean *bool  `json:"valueBoolean"`
	} `json:"extension"`
}

// optedOutMember returns the member a Group entry marks as opted out (the opt-out extension with
// valueBoolean true). The member's inactive flag does not matter: opting out does not end the relationship,
// and an ended one stays opted out. A marked entry whose Patient cannot be read is ErrUnreadableOptOut; a
// marked entity of another type (a Device, a nested Group) is no member and is ignored.
func (m groupMember) optedOutMember() (string, bool, error) {
	marked := false
	for _, e := range m.Extension {
		if e.URL == OptOutExtension && e.ValueBoolean != nil && *e.ValueBoolean {
			marked = true
		}
	}
	if !marked {
		return "", false, nil
	}
	id, ok := fhir.PatientID(m.Entity.Reference)
	if !ok {
		return "", false, nil
	}
	if id == fhir.UnknownPatient {
		return "", false, fmt.Errorf("%w: Group member %q", ErrUnreadableOptOut, m.Entity.Reference)
	}
	return id, true, nil
}
