package attribution

import (
	"strings"
	"time"
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
		start, _, ok := parseDate(m.Period.Start)
		if !ok || now.Before(start) {
			return false
		}
	}
	if m.Period.End != "" {
		// FHIR Period.end of a partial date means the end of that day, month or year.
		_, end, ok := parseDate(m.Period.End)
		if !ok || !now.Before(end) {
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

// parseDate reads a FHIR date or dateTime and returns the first instant it covers and the first after it.
func parseDate(s string) (from, to time.Time, ok bool) {
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
			return t, f.step(t), true
		}
	}
	return time.Time{}, time.Time{}, false
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
