package decision

import (
	"net/http"
	"strconv"
	"strings"
)

// HeaderEdit is what a face changes in the upstream answer's headers before it leaves: Remove first, then
// Set. Names are canonical (http.CanonicalHeaderKey); Envoy's face lower-cases them.
type HeaderEdit struct {
	Set    map[string]string
	Remove []string
}

// HiddenResponseHeaders never leave, whatever the FHIR server sends: its product and version banner tells an
// attacker which server's weaknesses to try, and says nothing a client needs.
var HiddenResponseHeaders = []string{"X-Powered-By"}

// DefaultRetryAfter is the wait, in seconds, a bulk export poll answer in progress names when the FHIR
// server names none (Bulk Data 2.0 §Status request: servers SHOULD send Retry-After).
const DefaultRetryAfter = "5"

// AnswerHeaders says how the upstream's headers change on the way out of an allowed request, the same in both
// faces. upstream reads the FHIR server's header. Refusals and answers enforcement replaced carry fhirwall's
// own headers and never pass through here.
//
//   - HiddenResponseHeaders are removed.
//   - A 503 of the FHIR server's without a usable Retry-After gets DefaultRetryAfter.
//   - Every answer says Cache-Control: no-store and Pragma: no-cache (RFC 9111 §5.2.2.5; Pragma for HTTP/1.0
//     caches): answers of these APIs carry patient data, and no shared or browser cache may keep them.
//   - A bulk export poll still in progress (202) carries the server's Retry-After when it is a delay or a
//     date (HAPI says 120), else DefaultRetryAfter.
//   - The deprecation notices that concern the request (Core.Notices) are announced: Deprecation, Sunset, Link.
//   - The complete status (200) is application/json (Bulk Data 2.0 §Complete Status), which is UTF-8: HAPI
//     labels it ISO-8859-1, and enforcement re-encodes it as UTF-8 anyway.
func AnswerHeaders(d *Decision, status int, upstream func(name string) string) HeaderEdit {
	e := HeaderEdit{Set: map[string]string{"Cache-Control": "no-store", "Pragma": "no-cache"}, Remove: HiddenResponseHeaders}
	if status == http.StatusServiceUnavailable && !validRetryAfter(upstream("Retry-After")) {
		// Every 503 a client gets says when to come back, the FHIR server's own included.
		e.Set["Retry-After"] = DefaultRetryAfter
	}
	if d != nil && d.Allow {
		for name, v := range d.notices {
			e.Set[name] = strings.Join(v, ", ") // RFC 9110 §5.3: one field line holds the list (Link)
		}
	}
	if d == nil || !d.Allow || !isExportPoll(d.Request) || d.Input.Method != http.MethodGet {
		return e
	}
	switch status {
	case http.StatusAccepted:
		if !validRetryAfter(upstream("Retry-After")) {
			e.Set["Retry-After"] = DefaultRetryAfter
		}
	case http.StatusOK:
		e.Set["Content-Type"] = "application/json"
	}
	return e
}

// validRetryAfter: RFC 9110 §10.2.3, delay-seconds or an HTTP-date.
func validRetryAfter(v string) bool {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return n > 0
	}
	_, err := http.ParseTime(v)
	return err == nil
}
