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
	// BearerError is the RFC 6750 §3.1 error code of the WWW-Authenticate challenge ("" on a 401: the plain
	// challenge for a request that presented no token); Scope is the scope that would have been enough.
	BearerError string
	Scope       string
}

// RFC 6750 §3.1 error codes.
const (
	ErrInvalidToken      = "invalid_token"
	ErrInsufficientScope = "insufficient_scope"
)

// Realm is the realm of every Bearer challenge.
const Realm = "fhirwall"

// RetryAfterSeconds is the Retry-After every 503 carries unless its sender knows better (the standalone
// proxy at capacity says 1).
const RetryAfterSeconds = "5"

// The refusals fhirwall uses. "Not found" is the single answer for "does not exist" and "exists but is not
// yours": the body and status are identical, so a client cannot probe for existence.
var (
	Unauthenticated = Refusal{Status: http.StatusUnauthorized, Code: "login", Diagnostics: "a valid access token is required"}
	NotFound        = Refusal{Status: http.StatusNotFound, Code: "not-found", Diagnostics: "resource not found"}
	Forbidden       = Refusal{Status: http.StatusForbidden, Code: "forbidden", Diagnostics: "the access token does not permit this request"}
	NotSupported    = Refusal{Status: http.StatusBadRequest, Code: "not-supported", Diagnostics: "this request is not supported by this API"}
	NotAllowed      = Refusal{Status: http.StatusMethodNotAllowed, Code: "not-supported", Diagnostics: "this interaction is not allowed on this API"}
	TooLarge        = Refusal{Status: http.StatusRequestEntityTooLarge, Code: "too-long", Diagnostics: "the request body is too large"}
	MediaType       = Refusal{Status: http.StatusUnsupportedMediaType, Code: "not-supported", Diagnostics: "the request body's media type is not supported"}
	NotAcceptable   = Refusal{Status: http.StatusNotAcceptable, Code: "not-supported", Diagnostics: "fhirwall answers in FHIR JSON only: ask for application/fhir+json (Accept or _format=json)"}
	TooMany         = Refusal{Status: http.StatusTooManyRequests, Code: "throttled", Diagnostics: "too many requests; retry later"}
	Unavailable     = Refusal{Status: http.StatusServiceUnavailable, Code: "transient", Diagnostics: "the service is temporarily unavailable"}
	RateLimited     = TooMany.WithDiagnostics("Too many requests; retry after the time in Retry-After.")
	Timeout         = Refusal{Status: http.StatusGatewayTimeout, Code: "timeout", Diagnostics: "the FHIR server did not answer in time"}
	// Failed and Rejected are the bodies of Envoy's own replies with any other 5xx or 4xx status.
	Failed   = Refusal{Status: http.StatusBadGateway, Code: "transient", Diagnostics: "the request could not be completed"}
	Rejected = Refusal{Status: http.StatusBadRequest, Code: "invalid", Diagnostics: "the request was rejected"}
	Internal = Refusal{Status: http.StatusInternalServerError, Code: "exception", Diagnostics: "the request could not be processed"}
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

// InvalidToken marks a 401 for a request whose bearer token was refused (RFC 6750 §3.1 invalid_token).
func (r Refusal) InvalidToken() Refusal { r.BearerError = ErrInvalidToken; return r }

// InsufficientScope marks a 403 the token's scopes caused (RFC 6750 §3.1 insufficient_scope); scope, when
// not "", is a scope that would permit the request.
func (r Refusal) InsufficientScope(scope string) Refusal {
	r.BearerError, r.Scope = ErrInsufficientScope, scope
	return r
}

// Challenge is the WWW-Authenticate value of the refusal (RFC 6750 §3), "" when it carries none: every 401,
// and a 403 that says insufficient_scope.
func (r Refusal) Challenge() string {
	c := `Bearer realm="` + Realm + `"`
	switch {
	case r.Status == http.StatusUnauthorized && r.BearerError != "":
		return c + `, error="` + r.BearerError + `"`
	case r.Status == http.StatusUnauthorized:
		return c
	case r.Status == http.StatusForbidden && r.BearerError == ErrInsufficientScope:
		c += `, error="` + ErrInsufficientScope + `"`
		if r.Scope != "" && scopeToken(r.Scope) {
			c += `, scope="` + r.Scope + `"`
		}
		return c
	}
	return ""
}

// scopeToken reports a scope value RFC 6750 §3 admits inside the quoted scope attribute (NQCHAR, no '"' or '\').
func scopeToken(s string) bool {
	for _, c := range s {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

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
	if c := r.Challenge(); c != "" {
		h["www-authenticate"] = c
	}
	if r.Status == http.StatusServiceUnavailable {
		h["retry-after"] = RetryAfterSeconds
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
