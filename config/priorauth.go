package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/viper"
)

// PriorAuthAPI is the name of the Prior Authorization API (CMS-0057-F, Da Vinci PAS 2.0.1); its section
// prior_auth must be complete whenever an API of this name is configured.
const PriorAuthAPI = "prior-auth"

// PriorAuth configures the Prior Authorization API's adapter (adapters/priorauth): who this payer is on the
// FHIR server, the rules and the utilization management (UM) system that decide, the profile validator every
// request Bundle must pass, the reviewers' admin API and the Subscription notifications.
type PriorAuth struct {
	// Insurer is this payer's Organization on the FHIR server (Organization/<id>); a submitted Claim's
	// insurer must name it.
	Insurer string `mapstructure:"insurer"`
	// InsurerIdentifiers are the identifiers (system|value) of this payer; the request Bundle's insurer
	// Organization must carry one of them.
	InsurerIdentifiers []string `mapstructure:"insurer_identifiers"`
	// MemberIdentifierSystem is the system of the member number: the Bundle Patient's identifier in this
	// system names the member.
	MemberIdentifierSystem string `mapstructure:"member_identifier_system"`
	// RulesFile holds the item rules (which items need prior auth, which are approved, denied, pended or
	// referred to UM); relative to the configuration file, like registry.file.
	RulesFile string `mapstructure:"rules_file"`
	// UM is the payer's utilization management system; URL empty: the rules alone decide, and an item they
	// refer to UM is pended for review.
	UM PriorAuthUM `mapstructure:"um"`
	// Validator is the profile validator service (test/tools/fhir-validator serve mode); required: a
	// request Bundle nobody validated is never accepted (down: 503).
	Validator PriorAuthValidator `mapstructure:"validator"`
	// AdminTokenFile holds the bearer token of the review admin API (on proxy.admin); empty: that API is off.
	// Relative to the configuration file.
	AdminTokenFile string `mapstructure:"admin_token_file"`
	// Notifications tune the delivery of Subscription notifications (retries with backoff).
	Notifications PriorAuthNotifications `mapstructure:"notifications"`
}

// PriorAuthUM is the payer's UM system.
type PriorAuthUM struct {
	URL     string        `mapstructure:"url"`     // the UM system's base URL; empty: the rules alone, and an item a rule refers to UM is pended
	Timeout time.Duration `mapstructure:"timeout"` // bound of one UM call; slower: the item is pended
}

// PriorAuthValidator is the profile validator service.
type PriorAuthValidator struct {
	URL     string        `mapstructure:"url"`     // the profile validator service's URL (test/tools/fhir-validator)
	Timeout time.Duration `mapstructure:"timeout"` // bound of one validation
}

// PriorAuthNotifications bound the delivery of one notification: up to MaxAttempts tries, the wait between
// them doubling from InitialBackoff up to MaxBackoff.
type PriorAuthNotifications struct {
	MaxAttempts    int           `mapstructure:"max_attempts"`    // deliveries tried before a notification is given up
	InitialBackoff time.Duration `mapstructure:"initial_backoff"` // the first retry's wait
	MaxBackoff     time.Duration `mapstructure:"max_backoff"`     // the longest wait between retries
}

// priorAuthDefaults are the section's defaults: a UM answer within 5 s and a validation within 10 s keep a
// $submit inside PAS's 15 s (PAS 2.0.1 §Timeliness); 8 deliveries from 1 s doubling up to 5 min span about
// 7 minutes before a notification is given up.
func priorAuthDefaults(v *viper.Viper) {
	v.SetDefault("prior_auth.insurer", "")
	v.SetDefault("prior_auth.insurer_identifiers", []string{})
	v.SetDefault("prior_auth.member_identifier_system", "")
	v.SetDefault("prior_auth.rules_file", "")
	v.SetDefault("prior_auth.um.url", "")
	v.SetDefault("prior_auth.um.timeout", "5s")
	v.SetDefault("prior_auth.validator.url", "")
	v.SetDefault("prior_auth.validator.timeout", "10s")
	v.SetDefault("prior_auth.admin_token_file", "")
	v.SetDefault("prior_auth.notifications.max_attempts", 8)
	v.SetDefault("prior_auth.notifications.initial_backoff", "1s")
	v.SetDefault("prior_auth.notifications.max_backoff", "5m")
}

// HasAPI reports whether c serves the API of this name.
func (c *Config) HasAPI(api string) bool {
	return slices.ContainsFunc(c.APIs, func(a API) bool { return a.Name == api })
}

// validate reports every problem of the section; it is checked only when the API is configured, so a
// deployment without it needs no prior_auth section at all.
func (p *PriorAuth) validate() []error {
	var errs []error
	if id, ok := strings.CutPrefix(p.Insurer, "Organization/"); !ok || !isFHIRID(id) {
		errs = append(errs, fmt.Errorf("prior_auth.insurer %q: want Organization/<id>, this payer on the FHIR server", p.Insurer))
	}
	if len(p.InsurerIdentifiers) == 0 {
		errs = append(errs, fmt.Errorf("prior_auth.insurer_identifiers: at least one system|value the request's insurer Organization carries"))
	}
	for i, ident := range p.InsurerIdentifiers {
		system, value, ok := strings.Cut(ident, "|")
		if !ok || !isAbsoluteURI(system) || value == "" || strings.TrimSpace(value) != value {
			errs = append(errs, fmt.Errorf("prior_auth.insurer_identifiers[%d] %q: want system|value with an absolute URI as system", i, ident))
		}
	}
	if !isAbsoluteURI(p.MemberIdentifierSystem) {
		errs = append(errs, fmt.Errorf("prior_auth.member_identifier_system %q: want an absolute URI", p.MemberIdentifierSystem))
	}
	if p.RulesFile == "" {
		errs = append(errs, fmt.Errorf("prior_auth.rules_file: required (the item rules)"))
	}
	if !isServiceURL(p.Validator.URL) {
		errs = append(errs, fmt.Errorf("prior_auth.validator.url %q: want the profile validator's http(s) URL; no request Bundle is accepted unvalidated", p.Validator.URL))
	}
	if p.UM.URL != "" && !isServiceURL(p.UM.URL) {
		errs = append(errs, fmt.Errorf("prior_auth.um.url %q: want an http(s) URL, or empty for the rules alone", p.UM.URL))
	}
	// PAS 2.0.1 §Timeliness: a $submit SHOULD be answered within 15 s, validation and UM included.
	for name, d := range map[string]time.Duration{"prior_auth.um.timeout": p.UM.Timeout, "prior_auth.validator.timeout": p.Validator.Timeout} {
		if d <= 0 || d > 15*time.Second {
			errs = append(errs, fmt.Errorf("%s %v: want more than 0 and at most 15s (PAS answers within 15 s)", name, d))
		}
	}
	n := p.Notifications
	if n.MaxAttempts < 1 || n.MaxAttempts > 100 {
		errs = append(errs, fmt.Errorf("prior_auth.notifications.max_attempts %d: want 1 to 100", n.MaxAttempts))
	}
	if n.InitialBackoff <= 0 || n.MaxBackoff < n.InitialBackoff || n.MaxBackoff > 24*time.Hour {
		errs = append(errs, fmt.Errorf("prior_auth.notifications: want 0 < initial_backoff (%v) <= max_backoff (%v) <= 24h", n.InitialBackoff, n.MaxBackoff))
	}
	return errs
}

// isServiceURL: an absolute http(s) URL of a service fhirwall calls.
func isServiceURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil && u.Fragment == ""
}

// isAbsoluteURI: a FHIR identifier system (R4 Identifier.system: an absolute URI, e.g. a URL or urn:oid:).
func isAbsoluteURI(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme != "" && (u.Host != "" || u.Opaque != "") && !strings.ContainsAny(raw, " |")
}

// isFHIRID: R4 id, [A-Za-z0-9\-\.]{1,64}.
func isFHIRID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}
