package dcr

import (
	"fmt"
	"net/http"
	"strings"
)

// Error codes of the answers. The first four are RFC 7591 §3.2.2's; invalid_token is RFC 6750 §3.1's, as
// RFC 7592 §2 asks for a registration access token that will not do.
const (
	InvalidRedirectURI          = "invalid_redirect_uri"
	InvalidClientMetadata       = "invalid_client_metadata"
	InvalidSoftwareStatement    = "invalid_software_statement"
	UnapprovedSoftwareStatement = "unapproved_software_statement"
	InvalidToken                = "invalid_token"
	// AccessDenied refuses an RFC 7592 update of an app that left the sandbox: production access is a
	// reviewer's to change (RFC 7592 §2.2: 403 when the client may not update itself).
	AccessDenied = "access_denied"
	// TooManyRequests is the 429 of the per-address rate limit (no RFC names one).
	TooManyRequests = "too_many_requests"
	// Conflict is the 409 of an update that raced another change of the same app.
	Conflict = "conflict"
	// ServerError is a 500 or 503: the registry or its audit could not take the change; nothing changed.
	ServerError = "server_error"
)

// Refusal is an answer other than success: its status, its error code and a description for the developer
// (RFC 7591 §3.2.2 error_description). It never holds a secret or token.
type Refusal struct {
	Status      int
	Code        string
	Description string
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Description }

// problems collects the refusals of one request in order; the answer carries the first one's code and every
// description.
type problems []Refusal

func (p *problems) add(code, format string, args ...any) {
	*p = append(*p, Refusal{Status: http.StatusBadRequest, Code: code, Description: fmt.Sprintf(format, args...)})
}

func (p problems) refusal() *Refusal {
	if len(p) == 0 {
		return nil
	}
	descs := make([]string, len(p))
	for i, r := range p {
		descs[i] = r.Description
	}
	msg := strings.Join(descs, "; ")
	if len(msg) > 4096 {
		msg = msg[:4096] + "…"
	}
	return &Refusal{Status: p[0].Status, Code: p[0].Code, Description: msg}
}

func refuse(code, format string, args ...any) *Refusal {
	return &Refusal{Status: http.StatusBadRequest, Code: code, Description: fmt.Sprintf(format, args...)}
}
