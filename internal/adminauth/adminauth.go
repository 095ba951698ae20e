// Package adminauth guards fhirwall-proxy's admin APIs (the prior-auth reviewers', the app registry's) with
// the admin bearer token: one check, in constant time, for every admin API on the admin listener.
package adminauth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
)

// MinTokenBytes is the shortest admin token accepted (the stack makes 64 hex characters).
const MinTokenBytes = 32

// Token is an admin token, kept as its SHA-256 only.
type Token struct{ hash [sha256.Size]byte }

// New returns the token in b (surrounding white space trimmed), or an error saying how to make a good one.
func New(b []byte) (Token, error) {
	b = bytes.TrimSpace(b)
	if len(b) < MinTokenBytes {
		return Token{}, fmt.Errorf("the admin token has %d bytes, fewer than %d: make one with `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'`", len(b), MinTokenBytes)
	}
	return Token{hash: sha256.Sum256(b)}, nil
}

// Matches reports whether an Authorization header value carries the token. The hashes are compared in
// constant time, so that neither the token's bytes nor its length show in the timing.
func (t Token) Matches(authorization string) bool {
	scheme, given, ok := strings.Cut(authorization, " ")
	h := sha256.Sum256([]byte(strings.TrimSpace(given)))
	return subtle.ConstantTimeCompare(h[:], t.hash[:]) == 1 && ok && strings.EqualFold(scheme, "Bearer")
}

// Require lets a request through to next only with the token; any other gets refuse's 401 with
// WWW-Authenticate (RFC 6750 §3) and a log line naming api, never what was sent.
func (t Token) Require(next http.Handler, api string, log *slog.Logger, refuse func(w http.ResponseWriter, status int, msg string), hint string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !t.Matches(r.Header.Get("Authorization")) {
			log.Warn(api+": refused a request without the admin token", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="fhirwall-admin"`)
			refuse(w, http.StatusUnauthorized, hint)
			return
		}
		next.ServeHTTP(w, r)
	})
}
