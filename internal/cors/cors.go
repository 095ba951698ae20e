// Package cors is fhirwall's CORS policy (Fetch standard §3.2, the CORS protocol), one definition that
// Envoy's CORS filter (internal/xds) and the standalone proxy (internal/gateway) both apply.
package cors

import (
	"net/http"
	"slices"
	"strings"
)

// What browser apps may send and read. Credentials are never allowed: SMART apps send a bearer token in
// Authorization, never a cookie, so Access-Control-Allow-Credentials is never sent and no answer is shared
// with a page on the strength of a browser's ambient credentials.
var (
	AllowMethods  = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	AllowHeaders  = []string{"Authorization", "Content-Type", "Accept", "Prefer"}
	ExposeHeaders = []string{"Location", "ETag", "Content-Location", "Last-Modified", "X-Request-Id", "X-Fhirwall-Decision-Id", "Retry-After", "WWW-Authenticate"}
)

// ResponseHeaders are the CORS response headers; an upstream's are removed so only fhirwall's policy speaks.
var ResponseHeaders = []string{"access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-methods",
	"access-control-allow-headers", "access-control-expose-headers", "access-control-max-age"}

// MaxAgeSeconds is how long a browser may cache a preflight's answer.
const MaxAgeSeconds = "600"

// Policy says which origins may read one route's answers.
type Policy struct {
	// AnyOrigin admits every origin (the discovery documents: public, no data); the answer echoes the origin,
	// never "*".
	AnyOrigin bool
	// Origins are the admitted origins, exactly as a browser sends them (scheme://host[:port]).
	Origins []string
}

// Allows reports whether origin may read the answer.
func (p Policy) Allows(origin string) bool {
	if origin == "" || origin == "null" {
		// "null" is an opaque origin (sandboxed frame, file:): admitting it would admit every such page.
		return false
	}
	return p.AnyOrigin || slices.Contains(p.Origins, origin)
}

// IsPreflight reports a CORS preflight: OPTIONS with Origin and Access-Control-Request-Method.
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// Preflight answers a preflight the way Envoy's CORS filter does with forward_not_matching_preflights off:
// 200 either way, with the CORS headers only for an admitted origin, and nothing reaches the decision or
// the FHIR server (there is no token on a preflight, and nothing to decide).
func (p Policy) Preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Add("Vary", "Origin")
	if origin := r.Header.Get("Origin"); p.Allows(origin) {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", strings.Join(AllowMethods, ","))
		h.Set("Access-Control-Allow-Headers", strings.Join(AllowHeaders, ","))
		h.Set("Access-Control-Max-Age", MaxAgeSeconds)
	}
	w.WriteHeader(http.StatusOK)
}

// Actual sets the headers of an answer to a request that carried Origin (any status, refusals included: an
// app reads a 401's WWW-Authenticate only if it may read the answer).
func (p Policy) Actual(h http.Header, origin string) {
	h.Add("Vary", "Origin")
	if p.Allows(origin) {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", strings.Join(ExposeHeaders, ","))
	}
}

// DiscoveryPaths are the documents below an API's base that any origin may read: the CapabilityStatement
// (FHIR R4 capabilities interaction) and the SMART configuration (SMART App Launch 2.x §Discovery).
var DiscoveryPaths = []string{"/metadata", "/.well-known/smart-configuration"}

// ForPath is the policy for a path below an API's base: any origin for the discovery documents, the API's
// configured origins for its data.
func ForPath(apiOrigins []string, path string) Policy {
	if slices.Contains(DiscoveryPaths, path) {
		return Policy{AnyOrigin: true}
	}
	return Policy{Origins: apiOrigins}
}
