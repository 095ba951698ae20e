package consent

import (
	"strings"
	"time"
)

type reference struct {
	Reference string `json:"reference"`
}

// consentResource is the part of a Consent the adapter reads.
type consentResource struct {
	ResourceType string    `json:"resourceType"`
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

// optOut returns the member a Consent opts out of Provider Access, if it does at now. An opt-out whose
// period ended no longer counts; an end date that cannot be read keeps it in force.
func (r consentResource) optOut(now time.Time) (string, bool) {
	if r.ResourceType != "Consent" || r.Status != "active" || r.Provision == nil || r.Provision.Type != "deny" {
		return "", false
	}
	matched := false
	for _, p := range r.Policy {
		matched = matched || p.URI == OptOutPolicy
	}
	if !matched {
		return "", false
	}
	if p := r.Provision.Period; p != nil && p.End != "" {
		if end, ok := endOf(p.End); ok && !now.Before(end) {
			return "", false
		}
	}
	return patientID(r.Patient.Reference)
}

// groupResource is the part of a Group the adapter reads.
type groupResource struct {
	ResourceType string        `json:"resourceType"`
	Member       []groupMember `json:"member"`
}

type groupMember struct {
	Entity    reference `json:"entity"`
	Extension []struct {
		URL          string `json:"url"`
		ValueBoolean *bool  `json:"valueBoolean"`
	} `json:"extension"`
}

// optedOut reports whether the entry carries the opt-out extension with valueBoolean true. The member's
// inactive flag does not matter: opting out does not end the relationship, and an ended one stays opted out.
func (m groupMember) optedOut() bool {
	for _, e := range m.Extension {
		if e.URL == OptOutExtension && e.ValueBoolean != nil && *e.ValueBoolean {
			return true
		}
	}
	return false
}

// endOf returns the first instant after a FHIR date or dateTime (Period.end of a partial date covers it whole).
func endOf(s string) (time.Time, bool) {
	for _, f := range []struct {
		layout string
		step   func(time.Time) time.Time
	}{
		{time.RFC3339Nano, func(t time.Time) time.Time { return t.Add(time.Nanosecond) }},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
	} {
		if t, err := time.Parse(f.layout, s); err == nil {
			return f.step(t), true
		}
	}
	return time.Time{}, false
}

// patientID returns the id of a Patient reference (relative, absolute or versioned).
func patientID(ref string) (string, bool) {
	parts := strings.Split(ref, "/")
	for i := len(parts) - 2; i >= 0; i-- {
		if parts[i] == "Patient" && parts[i+1] != "" {
			return parts[i+1], true
		}
	}
	return "", false
}
