package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/spf13/viper"
)

// Defaults of the portal (portal:) that are not zero values.
const (
	DefaultReviewerRole  = "fhirwall-reviewer"
	DefaultDeveloperRole = "fhirwall-developer"
	DefaultPortalClient  = "fhirwall-portal"
)

// portalDefaults sets the portal's defaults on v (read calls it beside registryDefaults).
func portalDefaults(v *viper.Viper) {
	v.SetDefault("portal.listen", "")
	v.SetDefault("portal.client_id", DefaultPortalClient)
	v.SetDefault("portal.reviewer_role", DefaultReviewerRole)
	v.SetDefault("portal.developer_role", DefaultDeveloperRole)
	v.SetDefault("portal.secret_overlap", "24h")
	v.SetDefault("portal.session_key_file", "")
	v.SetDefault("portal.dcr.per_minute", 10)
}

// validatePortal reports every problem of portal: and notices:, joined into Validate's list. The portal is
// off when portal.listen is empty; its notices are checked either way (they also become Deprecation and
// Sunset headers on the APIs).
func (c *Config) validatePortal() []error {
	var errs []error
	p := c.Portal
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if p.Listen != "" {
		if _, _, err := net.SplitHostPort(p.Listen); err != nil {
			bad("portal.listen %q: want host:port", p.Listen)
		}
		u, err := url.Parse(p.PublicURL)
		switch {
		case p.PublicURL == "":
			bad("portal.public_url: required with portal.listen (the OIDC redirect URI and the CSRF origin check are built on it)")
		case err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			bad("portal.public_url %q: want an https origin such as https://portal.example.org (the session cookie is Secure)", p.PublicURL)
		}
		if p.TLSCert == "" || p.TLSKey == "" {
			bad("portal.tls_cert and portal.tls_key: required with portal.listen (the portal speaks only TLS)")
		}
		if p.ClientID == "" {
			bad("portal.client_id: required with portal.listen (the portal's own OIDC client in issuers[0]'s realm)")
		}
		if p.ClientSecretFile == "" {
			bad("portal.client_secret_file: required with portal.listen (the portal is a confidential client)")
		}
		if p.SessionKeyFile == "" {
			bad("portal.session_key_file: required with portal.listen (32 random bytes every replica reads; e.g. head -c 32 /dev/urandom | base64)")
		}
		if len(c.Issuers) == 0 {
			bad("portal: signs users in at issuers[0], and there is none")
		}
		if strings.TrimSpace(p.ReviewerRole) == "" || strings.TrimSpace(p.DeveloperRole) == "" {
			bad("portal.reviewer_role and portal.developer_role: must not be empty")
		} else if p.ReviewerRole == p.DeveloperRole {
			bad("portal.reviewer_role and portal.developer_role: must differ (a developer must never review their own app)")
		}
		if p.SecretOverlap < 0 {
			bad("portal.secret_overlap %s: must not be negative", p.SecretOverlap)
		}
		if p.DCR.PerMinute < 0 {
			bad("portal.dcr.per_minute %d: must not be negative", p.DCR.PerMinute)
		}
	} else if p.DCR.Enabled {
		bad("portal.dcr.enabled: DCR is served on portal.listen, which is off")
	}
	apis := map[string]bool{}
	for _, a := range c.APIs {
		apis[a.Name] = true
	}
	ids := map[string]bool{}
	for i, n := range c.Notices {
		at := fmt.Sprintf("notices[%d]", i)
		if n.ID == "" {
			bad("%s.id: required (the Atom entry's id)", at)
		} else if ids[n.ID] {
			bad("%s.id %q: used twice", at, n.ID)
		}
		ids[n.ID] = true
		switch n.Kind {
		case "deprecation", "maintenance", "incident":
		default:
			bad("%s.kind %q: want deprecation, maintenance or incident", at, n.Kind)
		}
		if !apis[n.API] {
			bad("%s.api %q: not one of apis[].name", at, n.API)
		}
		if strings.TrimSpace(n.Title) == "" {
			bad("%s.title: required", at)
		}
		if n.Published.IsZero() {
			bad("%s.published: required (the feed's updated time)", at)
		}
		if n.Kind == "deprecation" && n.Deprecation.IsZero() {
			bad("%s.deprecation: required for a deprecation", at)
		}
		if !n.Sunset.IsZero() && !n.Deprecation.IsZero() && n.Sunset.Before(n.Deprecation) {
			bad("%s.sunset: before its deprecation", at)
		}
		if (n.Kind == "maintenance" || n.Kind == "incident") && n.Start.IsZero() {
			bad("%s.start: required for a %s", at, n.Kind)
		}
		if !n.End.IsZero() && n.End.Before(n.Start) {
			bad("%s.end: before its start", at)
		}
		if n.Link != "" {
			if u, err := url.Parse(n.Link); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				bad("%s.link %q: want an absolute http(s) URL", at, n.Link)
			}
		}
	}
	return errs
}
