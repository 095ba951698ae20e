//go:build e2e

package adversarial

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/test/smartclient"
	"github.com/fhirwall/fhirwall/test/stackauth"
)

// principal is a caller with one token: which API it calls, and what it may see there.
type principal struct {
	name  string
	api   string
	fetch func(ctx context.Context) (*smartclient.Token, error)
	// patients whose data it may see: the member's own id, or a provider's attributed, not opted-out
	// members (from HAPI's attribution Groups and opt-outs); none for a client calling an API it is not
	// registered for.
	patients func(tr *truth) []string
	// types its scopes grant; nil: every type the API serves.
	types []string
	// categories: per type, the only category code a granular scope lets through.
	categories map[string]string
	// provider: the Provider Access data scope applies (no money, no claims before 2016, no drug prior auths).
	provider bool
	// nobody: a client on an API it is not registered for, or a payer nobody opted in to; every patient's
	// data is forbidden.
	nobody bool
	// payer: the Payer-to-Payer data scope applies (payerWithheld: five years of service, no denied or drug
	// prior auths, nothing labelled sensitive under #regular, no money).
	payer bool
	// shared are members another suite (test/payertopayer) opts in to this caller and out again while this
	// suite runs: their data is neither a marker nor expected.
	shared []string

	mu      sync.Mutex
	tok     string
	expires time.Time
	seen    map[string]bool
	forbid  *markers
}

// ATR / seed conventions (test/seed/README.md) for reading attribution from HAPI.
const (
	atrAttributedProvider = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider"
	optOutExtension       = "https://fhirwall.example/StructureDefinition/provider-access-opt-out"
)

func member(name, username, patient string, scopes ...string) *principal {
	return &principal{name: name, api: patientAccess,
		fetch: func(ctx context.Context) (*smartclient.Token, error) {
			return stackauth.Member(ctx, username, append([]string{"openid", "fhirUser", "launch/patient"}, scopes...)...)
		},
		patients: func(*truth) []string { return []string{patient} },
	}
}

// Principals. Each is logged in once per run, at first use, and again before its token expires.
var (
	member01 = member("member01 (patient/*.rs)", "member01", "member-01", "patient/*.rs")
	member02 = member("member02 (patient/*.rs)", "member02", "member-02", "patient/*.rs")
	// Down-scoped tokens of the same member and app.
	member01PatientOnly = func() *principal {
		p := member("member01 (patient/Patient.rs only)", "member01", "member-01", "patient/Patient.rs")
		p.types = []string{"Patient"}
		return p
	}()
	member01VitalsOnly = func() *principal {
		p := member("member01 (patient/Observation.rs?category=vital-signs only)", "member01", "member-01", "patient/Observation.rs?category=vital-signs")
		p.types, p.categories = []string{"Observation"}, map[string]string{"Observation": "vital-signs"}
		return p
	}()
	member01ClaimsOnly = func() *principal {
		p := member("member01 (patient/ExplanationOfBenefit.rs only)", "member01", "member-01", "patient/ExplanationOfBenefit.rs")
		p.types = []string{"ExplanationOfBenefit"}
		return p
	}()
	// member-04 holds the money fixtures (fixtures_test.go): attributed to org-a and to dr-smith.
	member04           = member("member04 (patient/*.rs)", "member04", "member-04", "patient/*.rs")
	member04ClaimsOnly = func() *principal {
		p := member("member04 (patient/ExplanationOfBenefit.rs only)", "member04", "member-04", "patient/ExplanationOfBenefit.rs")
		p.types = []string{"ExplanationOfBenefit"}
		return p
	}()
	// provider-org-a's backend service (system/*.rs), acting for Organization/org-a.
	providerOrgA = &principal{name: "provider-org-a (system/*.rs)", api: providerAccess, provider: true,
		fetch: func(ctx context.Context) (*smartclient.Token, error) {
			return stackauth.Backend(ctx, "provider-org-a", "system/*.rs")
		},
		patients: func(tr *truth) []string { return tr.attributed("Organization/org-a") },
	}
	// The same backend service with system/Patient.rs only.
	providerOrgAPatientOnly = &principal{name: "provider-org-a (system/Patient.rs only)", api: providerAccess, provider: true,
		types: []string{"Patient"},
		fetch: func(ctx context.Context) (*smartclient.Token, error) {
			return stackauth.Backend(ctx, "provider-org-a", "system/Patient.rs")
		},
		patients: func(tr *truth) []string { return tr.attributed("Organization/org-a") },
	}
	// provider-org-b's backend service: another organisation, another client.
	providerOrgB = &principal{name: "provider-org-b (system/*.rs)", api: providerAccess, provider: true,
		fetch: func(ctx context.Context) (*smartclient.Token, error) {
			return stackauth.Backend(ctx, "provider-org-b", "system/*.rs")
		},
		patients: func(tr *truth) []string { return tr.attributed("Organization/org-b") },
	}
	// dr-smith (Practitioner/pract-01 at org-a) through provider-app (user/*.rs).
	drSmith = &principal{name: "dr-smith (user/*.rs)", api: providerAccess, provider: true,
		fetch: func(ctx context.Context) (*smartclient.Token, error) {
			return stackauth.Practitioner(ctx, "dr-smith", "openid", "fhirUser", "user/*.rs")
		},
		patients: func(tr *truth) []string { return tr.attributed("Practitioner/pract-01") },
	}
)

// Clients on an API they are not registered for (config/clients.yaml): a member's app on Provider Access,
// a backend service and a practitioner's app on Patient Access (provider-app is registered there, but only
// for user/ scopes, which Patient Access does not serve).
var (
	member01OnProviderAccess = &principal{name: "member01 (patient/*.rs) on Provider Access", api: providerAccess, nobody: true,
		fetch: member01.fetch, patients: func(*truth) []string { return nil }}
	providerOrgAOnPatientAccess = &principal{name: "provider-org-a (system/*.rs) on Patient Access", api: patientAccess, nobody: true,
		fetch: providerOrgA.fetch, patients: func(*truth) []string { return nil }}
	drSmithOnPatientAccess = &principal{name: "dr-smith (user/*.rs) on Patient Access", api: patientAccess, nobody: true,
		fetch: drSmith.fetch, patients: func(*truth) []string { return nil }}
)

// token returns a valid access token (tokenFor), failing the test if there is none.
func (p *principal) token(t testing.TB) string {
	t.Helper()
	tok, err := p.tokenFor(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	return tok
}

// tokenFor returns a valid access token, logging in again a minute before the last one expires. Safe
// for concurrent use.
func (p *principal) tokenFor(ctx context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tok != "" && time.Now().Before(p.expires) {
		return p.tok, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tok, err := p.fetch(ctx)
	if err != nil {
		return "", err
	}
	life := time.Duration(tok.ExpiresIn) * time.Second
	if life <= 0 {
		life = 5 * time.Minute
	}
	p.tok, p.expires = tok.AccessToken, time.Now().Add(life-time.Minute)
	return p.tok, nil
}

// prepare computes p's patients and markers from the truth, once.
func (p *principal) prepare(t testing.TB, tr *truth) *principal {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.forbid == nil {
		p.seen = map[string]bool{}
		for _, id := range p.patients(tr) {
			p.seen[id] = true
		}
		if len(p.seen) == 0 && !p.nobody {
			t.Fatalf("%s may see no patient in the seed data: the seed or attribution changed", p.name)
		}
		p.forbid = buildMarkers(tr, p)
	}
	return p
}

// sees reports whether p may see the data of patient id.
func (p *principal) sees(id string) bool { return p.seen[id] }

// unjudged reports whether patient id's data is left out of p's markers (shared).
func (p *principal) unjudged(id string) bool { return slices.Contains(p.shared, id) }

// visible reports whether p may see h, a resource of one of its patients: the type is served and granted,
// a granular category matches, and the Provider Access data scope keeps it.
func (p *principal) visible(tr *truth, h *held) bool {
	if p.types != nil && !slices.Contains(p.types, h.typ) {
		return false
	}
	if served := tr.surface[p.api]; served != nil && served[h.typ] == nil {
		return false // Provenance, Task, PaymentReconciliation, Claim, …: the API does not serve the type
	}
	if code, ok := p.categories[h.typ]; ok && !slices.Contains(categoryCodes(h.resource), code) {
		return false
	}
	if h.typ == "Consent" || h.typ == "Group" {
		return false // not served by either API
	}
	if p.provider && h.typ == "ExplanationOfBenefit" {
		return !withheldFromProviders(h.resource)
	}
	if p.payer {
		return payerWithheld[h.typ+"/"+h.id] == ""
	}
	return true
}

// withheldFromProviders: CMS-0057-F Provider Access returns no claims with a date of service before
// 2016-01-01 and no prior authorizations for drugs (FHIR-NOTES, "what each API may return").
func withheldFromProviders(eob map[string]any) bool {
	earliest := "9999"
	if bp, ok := eob["billablePeriod"].(map[string]any); ok {
		if s, ok := bp["start"].(string); ok {
			earliest = min(earliest, s)
		}
	}
	for _, it := range asObjects(eob["item"]) {
		if s, ok := it["servicedDate"].(string); ok {
			earliest = min(earliest, s)
		}
		if p, ok := it["servicedPeriod"].(map[string]any); ok {
			if s, ok := p["start"].(string); ok {
				earliest = min(earliest, s)
			}
		}
	}
	if earliest < "2016-01-01" {
		return true
	}
	use, _ := eob["use"].(string)
	return (use == "preauthorization" || use == "predetermination") && isDrug(eob)
}

func isDrug(eob map[string]any) bool {
	b := fmt.Sprint(eob["type"])
	if strings.Contains(b, "pharmacy") {
		return true
	}
	for _, it := range asObjects(eob["item"]) {
		s := fmt.Sprint(it["productOrService"])
		if strings.Contains(s, "http://hl7.org/fhir/sid/ndc") || strings.Contains(s, "rxnorm") {
			return true
		}
	}
	return false
}

func categoryCodes(r map[string]any) []string {
	var out []string
	for _, c := range asObjects(r["category"]) {
		for _, cd := range asObjects(c["coding"]) {
			if s, ok := cd["code"].(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// attributed returns the patients a provider (Organization/x or Practitioner/x) may see, from HAPI's
// attribution Groups: the members of the Groups the organisation manages, or of the practitioner's
// organisations' Groups that the ATR extension attributes to the practitioner; opted-out members never.
func (tr *truth) attributed(provider string) []string {
	orgs := []string{provider}
	practitioner := ""
	if strings.HasPrefix(provider, "Practitioner/") {
		practitioner, orgs = provider, nil
		for _, h := range tr.all {
			if h.typ == "PractitionerRole" && refOf(h.resource["practitioner"]) == provider {
				orgs = append(orgs, refOf(h.resource["organization"]))
			}
		}
	}
	var out []string
	for _, h := range tr.all {
		if h.typ != "Group" || !slices.Contains(orgs, refOf(h.resource["managingEntity"])) {
			continue
		}
		for _, m := range asObjects(h.resource["member"]) {
			id, ok := strings.CutPrefix(refOf(m["entity"]), "Patient/")
			if !ok || m["inactive"] == true {
				continue
			}
			optedOut, attributedTo := false, ""
			for _, ext := range asObjects(m["extension"]) {
				switch ext["url"] {
				case optOutExtension:
					optedOut = ext["valueBoolean"] == true
				case atrAttributedProvider:
					attributedTo = refOf(ext["valueReference"])
				}
			}
			if optedOut || (practitioner != "" && attributedTo != practitioner) || slices.Contains(out, id) {
				continue
			}
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func refOf(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["reference"].(string)
	return s
}
