// Package outcome builds every refusal fhirwall sends to a client: a FHIR R4 OperationOutcome with a
// status code chosen so that it reveals nothing the client may not know.
package outcome

import (
	"encoding/json"
	"net/http"
)

// ContentType is the media type of every refusal body.
const ContentType = "application/fhir+json"

// Refusal is a client-facing refusal. Code is a FHIR issue-type code
// (http://hl7.org/fhir/R4/valueset-issue-type.html).
type Refusal struct {
	Status      int
	Code        string
	Diagnostics string
}

// The refusals fhirwall uses. "Not found" is the single answer for "does not exist" and "exists but is not
// yours": the body and status are identical, so a client cannot probe for existence.
var (
	Unauthenticated = Refusal{http.StatusUnauthorized, "login", "a valid access token is required"}
	NotFound        = Refusal{http.StatusNotFound, "not-found", "resource not found"}
	Forbidden       = Refusal{http.StatusForbidden, "forbidden", "the access token does not permit this request"}
	NotSupported    = Refusal{http.StatusBadRequest, "not-supported", "this request is not supported by this API"}
	NotAllowed      = Refusal{http.StatusMethodNotAllowed, "not-supported", "this interaction is not allowed on this API"}
	TooLarge        = Refusal{http.StatusRequestEntityTooLarge, "too-long", "the request body is too large"}
	MediaType       = Refusal{http.StatusUnsupportedMediaType, "not-supported", "the request body's media type is not supported"}
	NotAcceptable   = Refusal{http.StatusNotAcceptable, "not-supported", "fhirwall answers in FHIR JSON only: ask for application/fhir+json (Accept or _format=json)"}
	TooMany         = Refusal{http.StatusTooManyRequests, "throttled", "too many requests; retry later"}
	Unavailable     = Refusal{http.StatusServiceUnavailable, "transient", "the service is temporarily unavailable"}
	Internal        = Refusal{http.StatusInternalServerError, "exception", "the request could not be processed"}
)

// ForStatus returns the refusal used for an HTTP status, if fhirwall refuses with that status.
func ForStatus(status int) (Refusal, bool) {
	for _, r := range []Refusal{NotSupported, Unauthenticated, Forbidden, NotFound, NotAllowed, NotAcceptable, TooLarge, MediaType, TooMany, Internal, Unavailable} {
		if r.Status == status {
			return r, true
		}
	}
	return Refusal{}, false
}

// WithDiagnostics returns a copy with another human-readable message. Callers must not put anything in it
// that depends on data the client may not see.
func (r Refusal) WithDiagnostics(msg string) Refusal { r.Diagnostics = msg; return r }

// Body renders the OperationOutcome.
func (r Refusal) Body() []byte {
	type issue struct {
		Severity    string `json:"severity"`
		Code        string `json:"code"`
		Diagnostics string `json:"diagnostics,omitempty"`
	}
	b, err := json.Marshal(struct {
		ResourceType string  `json:"resourceType"`
		Issue        []issue `json:"issue"`
	}{"OperationOutcome", []issue{{"error", r.Code, r.Diagnostics}}})
	if err != nil { // cannot happen with these types; never send an empty refusal
		return []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`)
	}
	return b
}

// Headers are the response headers every refusal carries.
func (r Refusal) Headers() map[string]string {
	h := map[string]string{"content-type": ContentType, "cache-control": "no-store", "pragma": "no-cache"}
	if r.Status == http.StatusUnauthorized {
		h["www-authenticate"] = `Bearer realm="fhirwall"`
	}
	return h
}

// Write sends the refusal on an http.ResponseWriter.
func (r Refusal) Write(w http.ResponseWriter) {
	for k, v := range r.Headers() {
		w.Header().Set(k, v)
	}
	w.WriteHeader(r.Status)
	_, _ = w.Write(r.Body())
}
