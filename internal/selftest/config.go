package selftest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Config is selftest.yaml: the test clients a payer provides and where its APIs live. File names are relative
// to the config file's directory. Nothing in it is a secret by itself; the files it names are, and their
// contents are never printed or written into the matrix.
type Config struct {
	// APIs are the base paths of the four APIs under the --against URL; an empty one is not checked (its
	// checks skip and say so).
	APIs APIPaths `yaml:"apis"`
	// Member is a test member's app on Patient Access.
	Member Member `yaml:"member"`
	// Provider is a test provider organisation's client on Provider Access and Prior Authorization.
	Provider Provider `yaml:"provider"`
	// Payer is a test payer's backend client on Payer-to-Payer.
	Payer Payer `yaml:"payer"`
	// RateLimit says what the burst of -rate-limit-burst N asks for (nothing without the flag).
	RateLimit RateLimit `yaml:"rate_limit"`
	// PriorAuthWrites is the one check that writes (only with -allow-writes): a prior-auth request for a
	// synthetic member submitted as the provider, then inquired about.
	PriorAuthWrites PriorAuthWrites `yaml:"prior_auth_writes"`

	dir string // the config file's directory: relative file names are resolved against it
}

// APIPaths are each API's base path, e.g. /patient-access/fhir.
type APIPaths struct {
	PatientAccess  string `yaml:"patient_access"`
	ProviderAccess string `yaml:"provider_access"`
	PayerToPayer   string `yaml:"payer_to_payer"`
	PriorAuth      string `yaml:"prior_auth"`
}

// Credentials get a client its access token: a token file (obtained by the payer's own means, e.g. a test
// member's login), or a SMART Backend Services client (client_credentials with a private_key_jwt assertion
// signed by key_file, whose public key the IdP knows under kid). The token endpoint comes from discovery.
type Credentials struct {
	TokenFile string   `yaml:"token_file"`
	ClientID  string   `yaml:"client_id"`
	KeyFile   string   `yaml:"key_file"`
	Kid       string   `yaml:"kid"`
	Scopes    []string `yaml:"scopes"`
}

// Member is a test member: their token, their own patient id and another synthetic patient's id (whose data
// the member must never see).
type Member struct {
	Credentials `yaml:",inline"`
	// LimitedTokenFile is the same member's token without ExplanationOfBenefit in its scopes (e.g.
	// patient/Patient.rs only); optional.
	LimitedTokenFile string `yaml:"limited_token_file"`
	Patient          string `yaml:"patient"`
	OtherPatient     string `yaml:"other_patient"`
}

// Provider is a test provider organisation: a patient attributed to it and one who is not.
type Provider struct {
	Credentials  `yaml:",inline"`
	Attributed   string `yaml:"attributed_patient"`
	Unattributed string `yaml:"unattributed_patient"`
	// PriorAuthScopes are the scopes its backend asks for on Prior Authorization ($inquire needs Claim read);
	// default [system/Claim.r].
	PriorAuthScopes []string `yaml:"prior_auth_scopes"`
}

// Payer is a test payer: a member who did not opt in to it and, optionally, one who did.
type Payer struct {
	Credentials `yaml:",inline"`
	NotOptedIn  string `yaml:"not_opted_in_patient"`
	OptedIn     string `yaml:"opted_in_patient"`
}

// RateLimit names the request the burst repeats: a path under one API, asked with no token (the shared
// anonymous bucket of that API's discovery documents, the default) or as one of the test clients.
type RateLimit struct {
	API  string `yaml:"api"`  // patient_access, provider_access, payer_to_payer or prior_auth (default payer_to_payer)
	Path string `yaml:"path"` // default /metadata
	As   string `yaml:"as"`   // "" (no token), member, provider or payer
}

// PriorAuthWrites names a PAS request Bundle and the inquiry Bundle for it (Da Vinci PAS: the same
// Claim.identifier, patient, provider and insurer), for a synthetic member; the payer makes them unique per
// run (a resubmitted identifier may be answered as a duplicate). API defaults to apis.prior_auth; a sandbox
// base (e.g. /prior-auth-sandbox/fhir) keeps the writes out of production when the provider is a sandbox
// client.
type PriorAuthWrites struct {
	API               string `yaml:"api"`
	RequestBundleFile string `yaml:"request_bundle_file"`
	InquiryBundleFile string `yaml:"inquiry_bundle_file"`
	Patient           string `yaml:"patient"` // the synthetic member the request is for (named in the result)
}

// maxConfigBytes bounds the config file: a few clients and paths.
const maxConfigBytes = 1 << 20

// LoadConfig reads and checks a selftest.yaml.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.dir = filepath.Dir(path)
	return c, nil
}

// ParseConfig parses and checks a selftest.yaml; unknown keys are refused (a misspelt key would silently
// skip a check).
func ParseConfig(b []byte) (*Config, error) {
	if len(b) > maxConfigBytes {
		return nil, fmt.Errorf("config is %d bytes, more than %d", len(b), maxConfigBytes)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) validate() error {
	var errs []error
	for name, p := range map[string]string{"apis.patient_access": c.APIs.PatientAccess, "apis.provider_access": c.APIs.ProviderAccess,
		"apis.payer_to_payer": c.APIs.PayerToPayer, "apis.prior_auth": c.APIs.PriorAuth} {
		if p != "" && (!strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.ContainsAny(p, "?#") || strings.Contains(p, "..")) {
			errs = append(errs, fmt.Errorf("%s %q: want a path such as /patient-access/fhir (leading /, no trailing /, no query)", name, p))
		}
	}
	if c.APIs == (APIPaths{}) {
		errs = append(errs, errors.New("apis: name at least one API's base path"))
	}
	errs = append(errs, c.Member.Credentials.validate("member"), c.Provider.Credentials.validate("provider"), c.Payer.Credentials.validate("payer"))
	for name, id := range map[string]string{"member.patient": c.Member.Patient, "member.other_patient": c.Member.OtherPatient,
		"provider.attributed_patient": c.Provider.Attributed, "provider.unattributed_patient": c.Provider.Unattributed,
		"payer.not_opted_in_patient": c.Payer.NotOptedIn, "payer.opted_in_patient": c.Payer.OptedIn} {
		if id != "" && !validID(id) {
			errs = append(errs, fmt.Errorf("%s %q: want a FHIR id (A-Z a-z 0-9 - ., at most 64)", name, id))
		}
	}
	if c.Member.Patient != "" && c.Member.Patient == c.Member.OtherPatient {
		errs = append(errs, errors.New("member.other_patient must be another patient than member.patient"))
	}
	if c.Provider.Attributed != "" && c.Provider.Attributed == c.Provider.Unattributed {
		errs = append(errs, errors.New("provider.unattributed_patient must differ from provider.attributed_patient"))
	}
	switch c.RateLimit.API {
	case "", "patient_access", "provider_access", "payer_to_payer", "prior_auth":
	default:
		errs = append(errs, fmt.Errorf("rate_limit.api %q: want patient_access, provider_access, payer_to_payer or prior_auth", c.RateLimit.API))
	}
	switch c.RateLimit.As {
	case "", "member", "provider", "payer":
	default:
		errs = append(errs, fmt.Errorf("rate_limit.as %q: want member, provider, payer or nothing (no token)", c.RateLimit.As))
	}
	if w := c.PriorAuthWrites; w != (PriorAuthWrites{}) {
		if w.RequestBundleFile == "" || w.InquiryBundleFile == "" || w.Patient == "" {
			errs = append(errs, errors.New("prior_auth_writes: needs request_bundle_file, inquiry_bundle_file and patient (a synthetic member)"))
		}
		if w.Patient != "" && !validID(w.Patient) {
			errs = append(errs, fmt.Errorf("prior_auth_writes.patient %q: want a FHIR id", w.Patient))
		}
		if p := w.API; p != "" && (!strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.ContainsAny(p, "?#") || strings.Contains(p, "..")) {
			errs = append(errs, fmt.Errorf("prior_auth_writes.api %q: want a base path such as /prior-auth-sandbox/fhir", p))
		}
	}
	if p := c.RateLimit.Path; p != "" && (!strings.HasPrefix(p, "/") || strings.Contains(p, "..")) {
		errs = append(errs, fmt.Errorf("rate_limit.path %q: want a path under the API's base, such as /metadata", p))
	}
	return errors.Join(errs...)
}

func (cr Credentials) validate(who string) error {
	if cr.TokenFile != "" && (cr.ClientID != "" || cr.KeyFile != "") {
		return fmt.Errorf("%s: name token_file or client_id + key_file + kid, not both", who)
	}
	if (cr.ClientID != "" || cr.KeyFile != "" || cr.Kid != "") && (cr.ClientID == "" || cr.KeyFile == "" || cr.Kid == "") {
		return fmt.Errorf("%s: a backend client needs client_id, key_file and kid", who)
	}
	return nil
}

// configured reports whether the credentials name a way to a token.
func (cr Credentials) configured() bool { return cr.TokenFile != "" || cr.ClientID != "" }

// validID: FHIR R4 id (§2.24.0.1), [A-Za-z0-9\-\.]{1,64}.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

func (c *Config) file(name string) string {
	if name == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(c.dir, name)
}
