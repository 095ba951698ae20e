package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigHasAPriorAuthSectionWithItsDefaults(t *testing.T) {
	c, err := Load("fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := c.PriorAuth
	wantRules, _ := filepath.Abs("prior-auth-rules.yaml")
	if !c.HasAPI(PriorAuthAPI) || p.Insurer != "Organization/payer-a" || len(p.InsurerIdentifiers) != 1 ||
		p.Validator.URL != "http://127.0.0.1:8095" || p.UM.URL != "http://127.0.0.1:8096/decide" || p.RulesFile != wantRules {
		t.Errorf("prior_auth = %+v (rules file want %s)", p, wantRules)
	}
	if p.UM.Timeout != 5*time.Second || p.Validator.Timeout != 10*time.Second || p.Notifications != (PriorAuthNotifications{8, time.Second, 5 * time.Minute}) {
		t.Errorf("timeouts and notifications %+v %+v %+v", p.UM, p.Validator, p.Notifications)
	}
}

// A deployment without the prior-auth API needs no prior_auth section, and gets the defaults.
func TestPriorAuthSectionIsOnlyRequiredWithTheAPI(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pa.yaml")
	body := "issuers: [{url: http://idp, audience: a}]\nregistry: {file: clients.yaml}\nproxy: {decision_keys_file: decision.keys}\napis:\n  - {name: patient-access, prefix: /pa}\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.PriorAuth.Validator.Timeout != 10*time.Second || c.PriorAuth.Notifications.MaxAttempts != 8 {
		t.Errorf("defaults: %+v", c.PriorAuth)
	}
	if err := os.WriteFile(p, []byte(body+"  - {name: prior-auth, prefix: /prior-auth/fhir}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "prior_auth.validator.url") {
		t.Errorf("prior-auth API without its section: %v, want refused naming prior_auth.validator.url", err)
	}
}

func TestBadPriorAuthSectionNamesEveryProblem(t *testing.T) {
	c, err := Load("fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := *c
	bad.PriorAuth = PriorAuth{
		Insurer:                "payer-a",
		InsurerIdentifiers:     []string{"FWPAYER-A", "not a uri|x", "https://fhirwall.example/payer-id|"},
		MemberIdentifierSystem: "member-id",
		UM:                     PriorAuthUM{URL: "ftp://um", Timeout: 20 * time.Second},
		Validator:              PriorAuthValidator{URL: "127.0.0.1:8095"},
		Notifications:          PriorAuthNotifications{MaxAttempts: 0, InitialBackoff: time.Minute, MaxBackoff: time.Second},
	}
	err = bad.Validate()
	if err == nil {
		t.Fatal("bad prior_auth accepted")
	}
	for _, want := range []string{"prior_auth.insurer \"payer-a\"", "insurer_identifiers[0]", "insurer_identifiers[1]", "insurer_identifiers[2]",
		"member_identifier_system", "prior_auth.rules_file", "prior_auth.validator.url", "prior_auth.um.url",
		"prior_auth.um.timeout", "prior_auth.validator.timeout", "max_attempts", "initial_backoff"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	rulesOnly := *c
	rulesOnly.PriorAuth.UM.URL = ""
	rulesOnly.PriorAuth.InsurerIdentifiers = []string{"urn:oid:2.16.840.1.113883.4.4|123456789"}
	if err := rulesOnly.Validate(); err != nil {
		t.Errorf("no UM system (rules only) and an OID identifier system: %v", err)
	}
}

func TestPriorAuthSettingsComeFromTheEnvironment(t *testing.T) {
	t.Setenv("FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE", "/run/secrets/pa-admin")
	t.Setenv("FHIRWALL_PRIOR_AUTH_VALIDATOR_URL", "http://validator.internal:8095")
	t.Setenv("FHIRWALL_PRIOR_AUTH_NOTIFICATIONS_MAX_ATTEMPTS", "3")
	c, err := Load("fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p := c.PriorAuth; p.AdminTokenFile != "/run/secrets/pa-admin" || p.Validator.URL != "http://validator.internal:8095" || p.Notifications.MaxAttempts != 3 {
		t.Errorf("environment overrides not applied: %+v", p)
	}
}
