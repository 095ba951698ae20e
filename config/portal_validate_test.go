package config

import (
	"strings"
	"testing"
	"time"
)

func validPortalConfig() *Config {
	return &Config{Issuers: []Issuer{{URL: "http://127.0.0.1:8180/realms/fhirwall"}}, APIs: []API{{Name: "patient-access"}},
		Portal: Portal{Listen: "127.0.0.1:9443", PublicURL: "https://127.0.0.1:9443", TLSCert: "tls.crt", TLSKey: "tls.key",
			ClientID: DefaultPortalClient, ClientSecretFile: "portal.secret", SessionKeyFile: "portal.key",
			ReviewerRole: DefaultReviewerRole, DeveloperRole: DefaultDeveloperRole, SecretOverlap: 24 * time.Hour}}
}

func TestPortalConfigRefusesWhatWouldServeItUnsafely(t *testing.T) {
	if errs := validPortalConfig().validatePortal(); len(errs) != 0 {
		t.Fatalf("valid portal refused: %v", errs)
	}
	if errs := (&Config{}).validatePortal(); len(errs) != 0 {
		t.Fatalf("a portal that is off refused: %v", errs)
	}
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		edit func(c *Config)
		want string
	}{
		"plain http origin":      {func(c *Config) { c.Portal.PublicURL = "http://127.0.0.1:9443" }, "portal.public_url"},
		"origin with a path":     {func(c *Config) { c.Portal.PublicURL = "https://x.example/portal" }, "portal.public_url"},
		"no TLS":                 {func(c *Config) { c.Portal.TLSKey = "" }, "portal.tls_cert"},
		"no session key":         {func(c *Config) { c.Portal.SessionKeyFile = "" }, "portal.session_key_file"},
		"no client secret":       {func(c *Config) { c.Portal.ClientSecretFile = "" }, "portal.client_secret_file"},
		"one role for both":      {func(c *Config) { c.Portal.DeveloperRole = c.Portal.ReviewerRole }, "must differ"},
		"bad listen":             {func(c *Config) { c.Portal.Listen = "9443" }, "portal.listen"},
		"DCR without the portal": {func(c *Config) { c.Portal = Portal{DCR: DCR{Enabled: true}} }, "portal.dcr.enabled"},
		"notice of no API": {func(c *Config) {
			c.Notices = []Notice{{ID: "n", Kind: "incident", API: "nope", Title: "t", Published: day, Start: day}}
		}, "notices[0].api"},
		"notice kind": {func(c *Config) {
			c.Notices = []Notice{{ID: "n", Kind: "party", API: "patient-access", Title: "t", Published: day}}
		}, "notices[0].kind"},
		"sunset before deprecation": {func(c *Config) {
			c.Notices = []Notice{{ID: "n", Kind: "deprecation", API: "patient-access", Title: "t", Published: day, Deprecation: day, Sunset: day.Add(-time.Hour)}}
		}, "notices[0].sunset"},
		"duplicate notice id": {func(c *Config) {
			n := Notice{ID: "n", Kind: "maintenance", API: "patient-access", Title: "t", Published: day, Start: day}
			c.Notices = []Notice{n, n}
		}, "used twice"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := validPortalConfig()
			tc.edit(c)
			errs := c.validatePortal()
			var all []string
			for _, e := range errs {
				all = append(all, e.Error())
			}
			if !strings.Contains(strings.Join(all, "\n"), tc.want) {
				t.Errorf("errors %q, want one about %s", all, tc.want)
			}
		})
	}
}
