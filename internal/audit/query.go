package audit

import (
	"slices"
	"time"
)

// Filter selects records for `fhirwall audit query` and the readers built on it: access records by default,
// admin entries when Kind is KindAdmin. An empty member matches everything; Since is inclusive and Until
// exclusive, so consecutive windows [a,b) [b,c) never count a record twice.
type Filter struct {
	// Kind is the kind selected: "" or KindAccess for access records, KindAdmin for admin entries. One kind at
	// a time, so a reader that counts requests (the CMS report, the AuditEvent export) never sees a change.
	Kind    string
	Patient string // matches an access record that names this patient among its Patients; no admin entry
	Client  string // matches an access record's ClientID, an admin entry's Target (the app changed)
	API     string // matches an access record's API; no admin entry
	Since   time.Time
	Until   time.Time
}

// Match reports whether r passes the filter. A checkpoint read into a Record has no request or change to
// select on and never matches. A record with no kind is an access record of schema 1, written before kinds
// existed.
func (f Filter) Match(r Record) bool {
	kind := r.Kind
	if kind == "" {
		kind = KindAccess
	}
	want := f.Kind
	if want == "" {
		want = KindAccess
	}
	if kind != want || (kind != KindAccess && kind != KindAdmin) {
		return false
	}
	client := r.ClientID
	if kind == KindAdmin {
		if f.Patient != "" || f.API != "" { // a change to an app concerns no patient and no one API
			return false
		}
		client = r.Target
	}
	if f.Client != "" && client != f.Client {
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
