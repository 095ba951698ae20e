package ir

import (
	"errors"
	"net/url"
	"strings"
)

// CORS is one route's cross-origin policy, applied by Envoy's CORS filter before ext_authz: a preflight is
// answered there, without a token, and never reaches fhirwall-proxy or the FHIR server. Exactly one of
// AnyOrigin and Origins is set.
type CORS struct {
	// AnyOrigin admits every origin (the discovery documents); Envoy echoes the origin, never "*".
	AnyOrigin bool
	// Origins are the admitted origins, exact (scheme://host[:port]).
	Origins []string
	// AllowMethods, AllowHeaders, ExposeHeaders and MaxAge are what Envoy answers (comma-separated).
	AllowMethods, AllowHeaders, ExposeHeaders, MaxAge string
}

// Validate checks the policy of route.
func (c *CORS) Validate(route string) error {
	var errs []error
	if c.AnyOrigin && len(c.Origins) > 0 {
		errs = append(errs, invalid("route %q: cors wants either any origin or a list of origins", route))
	}
	for _, o := range c.Origins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.String() != u.Scheme+"://"+u.Host || o != u.String() {
			errs = append(errs, invalid("route %q: cors origin %q: want scheme://host[:port]", route, o))
		}
	}
	for _, v := range []string{c.AllowMethods, c.AllowHeaders, c.ExposeHeaders, c.MaxAge} {
		if v == "" || strings.ContainsAny(v, "%\r\n") {
			errs = append(errs, invalid("route %q: cors header value %q is empty or not plain", route, v))
		}
	}
	return errors.Join(errs...)
}
