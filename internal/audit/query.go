package audit

import (
	"slices"
	"time"
)

// Filter selects access records for `fhirwall audit query` and the readers built on it. An empty member
// matches everything; Since is inclusive and Until exclusive, so consecutive windows [a,b) [b,c) never count
// a record twice.
type Filter struct {
	Patient string // matches a record that names this patient among its Patients
	Client  string // matches ClientID
	API     string // matches API
	Since   time.Time
	Until   time.Time
}

// Match reports whether r passes the filter. Only access records match: a checkpoint read into a Record has
// no request to select on. A record with no kind is an access record of schema 1, written before kinds
// existed.
func (f Filter) Match(r Record) bool {
	if r.Kind != "" && r.Kind != KindAccess {
		return false
	}
	if f.Client != "" && r.ClientID != f.Client {
		return false
	}
	if f.API != "" && r.API != f.API {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.Time.Before(f.Until) {
		return false
	}
	if f.Patient != "" && !slices.Contains(r.Patients, f.Patient) {
		return false
	}
	return true
}
