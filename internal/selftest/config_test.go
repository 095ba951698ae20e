package selftest

import (
	"os"
	"strings"
	"testing"
)

func TestTheExampleConfigParses(t *testing.T) {
	b, err := os.ReadFile("testdata/selftest.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if c.Provider.ClientID != "provider-org-a" || c.Payer.NotOptedIn != "member-03" || c.APIs.PriorAuth != "/prior-auth/fhir" {
		t.Errorf("parsed %+v", c)
	}
}

func TestParseConfigRefusesWhatWouldSilentlySkipOrMislead(t *testing.T) {
	const apis = "apis: {patient_access: /patient-access/fhir}\n"
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown key":                   {apis + "member: {token_fiel: x}\n", "token_fiel"},
		"no API":                        {"member: {token_file: x}\n", "at least one API"},
		"relative base path":            {"apis: {patient_access: patient-access/fhir}\n", "apis.patient_access"},
		"base path with a query":        {"apis: {patient_access: \"/p?x=1\"}\n", "apis.patient_access"},
		"base path climbing":            {"apis: {patient_access: /a/../b}\n", "apis.patient_access"},
		"token file and backend client": {apis + "provider: {token_file: t, client_id: c, key_file: k, kid: 1}\n", "not both"},
		"backend client without kid":    {apis + "payer: {client_id: c, key_file: k}\n", "kid"},
		"same patient twice":            {apis + "member: {token_file: t, patient: a, other_patient: a}\n", "another patient"},
		"attributed = unattributed":     {apis + "provider: {attributed_patient: a, unattributed_patient: a}\n", "must differ"},
		"id that is no FHIR id":         {apis + "member: {patient: \"a/b\"}\n", "member.patient"},
		"rate limit as somebody else":   {apis + "rate_limit: {as: admin}\n", "rate_limit.as"},
		"rate limit on an unknown API":  {apis + "rate_limit: {api: billing}\n", "rate_limit.api"},
		"not YAML":                      {"{", "config"},
		"writes without an inquiry":     {apis + "prior_auth_writes: {request_bundle_file: r.json, patient: m}\n", "prior_auth_writes"},
		"writes to a relative base":     {apis + "prior_auth_writes: {api: pa, request_bundle_file: r, inquiry_bundle_file: i, patient: m}\n", "prior_auth_writes.api"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestParseConfigRefusesAnOversizedFile(t *testing.T) {
	if _, err := ParseConfig(make([]byte, maxConfigBytes+1)); err == nil {
		t.Error("accepted a config past the size bound")
	}
}

// FuzzParseConfig: any input is parsed or refused with an error, never a panic; whatever is accepted
// validates again and its base paths are absolute.
func FuzzParseConfig(f *testing.F) {
	if b, err := os.ReadFile("testdata/selftest.example.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("apis: {patient_access: /p}\nmember: {token_file: t, patient: a, other_patient: b}\n"))
	f.Add([]byte("apis: {prior_auth: /x}\nprovider: {client_id: c, key_file: k, kid: 1, attributed_patient: a}\n"))
	f.Add([]byte("apis: !!map {}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("accepted a config that does not validate: %v", err)
		}
		for _, p := range []string{c.APIs.PatientAccess, c.APIs.ProviderAccess, c.APIs.PayerToPayer, c.APIs.PriorAuth} {
			if p != "" && !strings.HasPrefix(p, "/") {
				t.Fatalf("accepted base path %q", p)
			}
		}
	})
}

// The config shown in docs/selftest.md parses: the documentation cannot drift from the parser.
func TestTheDocumentedConfigParses(t *testing.T) {
	doc, err := os.ReadFile("../../docs/selftest.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/selftest.md has no yaml block")
	}
	if _, err := ParseConfig([]byte(block)); err != nil {
		t.Fatalf("docs/selftest.md's config: %v", err)
	}
}
