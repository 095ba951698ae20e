//go:build e2e

package adversarial

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

// TestPropertyNoCombinationLeaks sends random combinations of the parameters the APIs accept, modifiers,
// values of the caller's and other patients, _include/_revinclude (with :iterate), result parameters and
// headers, as members (full and down-scoped tokens) and providers (backend and practitioner), through both
// modes; sometimes it follows the answer's next link. Every answer must pass check: a 2xx FHIR JSON
// answer without any forbidden marker, or an OperationOutcome.
//
// FHIRWALL_PROPERTY_N sets the number of combinations (default 200; `make fuzz` runs 10,000),
// FHIRWALL_PROPERTY_SEED the seed (default: the clock). A failure prints the seed that reproduces it.
func TestPropertyNoCombinationLeaks(t *testing.T) {
	evidence.Proves(t, "CMS-PA-02", "SEC-02")
	n := envInt(t, "FHIRWALL_PROPERTY_N", 200)
	seed := uint64(envInt(t, "FHIRWALL_PROPERTY_SEED", int(time.Now().UnixNano()%1e9)))
	t.Logf("FHIRWALL_PROPERTY_SEED=%d FHIRWALL_PROPERTY_N=%d", seed, n)
	tr := groundTruth(t)
	g := generator{rng: rand.New(rand.NewPCG(seed, 0x5eed)), tr: tr}
	probes := make([]probe, n)
	for i := range probes {
		probes[i] = g.probe(i)
	}
	sent := sweep(t, probes)
	t.Logf("%d combinations, %d requests", n, sent)
	if t.Failed() {
		t.Errorf("reproduce with: FHIRWALL_PROPERTY_SEED=%d FHIRWALL_PROPERTY_N=%d go test -tags e2e -count=1 -run TestProperty ./test/adversarial/", seed, n)
	}
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return v
}

// generator makes the random combinations; one per test run, used from one goroutine.
type generator struct {
	rng *rand.Rand
	tr  *truth
}

var (
	propertyMembers   = []*principal{member01, member01VitalsOnly, member01PatientOnly, member01ClaimsOnly}
	propertyProviders = []*principal{providerOrgA, drSmith, providerOrgAPatientOnly}
	// referenceParams are the reference search parameters of the types HAPI holds, for _include and
	// _revinclude (the APIs need not list them; some are there to be refused).
	referenceParams = map[string][]string{
		"ExplanationOfBenefit":  {"patient", "coverage", "provider", "care-team", "insurer", "payee", "claim", "encounter"},
		"Observation":           {"patient", "subject", "performer", "has-member", "derived-from", "encounter", "focus"},
		"Condition":             {"patient", "subject", "asserter", "encounter"},
		"Coverage":              {"patient", "beneficiary", "subscriber", "payor", "policy-holder"},
		"Patient":               {"general-practitioner", "organization", "link"},
		"PractitionerRole":      {"practitioner", "organization", "location"},
		"Group":                 {"member", "managing-entity"},
		"Consent":               {"patient", "actor"},
		"Provenance":            {"target", "patient", "agent"},
		"Task":                  {"patient", "focus", "for", "owner"},
		"PaymentReconciliation": {"request", "requestor"},
	}
	propertyHeaders = [][]string{
		{"Prefer", "handling=lenient"}, {"Prefer", "handling=strict"}, {"Prefer", "return=minimal"}, {"Accept-Encoding", "gzip"},
		{"If-None-Match", `W/"1"`}, {"If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT"}, {"If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT"},
		{"X-Forwarded-Host", "evil.example"}, {"X-Fhirwall-Patient", "member-02"}, {"Cache-Control", "no-cache"},
		{"Accept", "application/json"}, {"Accept", "application/fhir+xml"}, {"X-HTTP-Method-Override", "DELETE"},
	}
	elementNames = []string{"id", "status", "patient", "subject", "item", "category", "code", "meta", "performer", "use", "type",
		"beneficiary", "name", "identifier", "total", "payment", "extension", "contained", "text"}
)

func pick[T any](g *generator, xs []T) T { return xs[g.rng.IntN(len(xs))] }

func (g *generator) chance(p float64) bool { return g.rng.Float64() < p }

// probe makes combination i: members and providers alternate.
func (g *generator) probe(i int) probe {
	p := pick(g, propertyMembers)
	self, other := "member-01", pick(g, []string{"member-02", "member-03", "member-12"})
	if i%2 == 1 {
		p = pick(g, propertyProviders)
		self = pick(g, p.patients(g.tr))
		other = pick(g, []string{"member-02", "member-12", "member-05", "member-03"})
	}
	v := newVocabulary(g.tr, self, other)
	// Mostly the types the token grants (where answers carry data), sometimes any type the API serves.
	typ := pick(g, g.heldTypes(p.api))
	if p.types != nil && g.chance(0.8) {
		typ = pick(g, p.types)
	} else if g.chance(0.1) {
		typ = pick(g, mapKeys(g.tr.surface[p.api]))
	}
	var q []string
	c := call{method: http.MethodGet}
	switch r := g.rng.Float64(); {
	case r < 0.15: // read by id, own or another's
		who := pick(g, []string{self, other})
		c.path = "/" + typ + "/" + v.resourceID(typ, who)
		if p.api == patientAccess && g.chance(0.3) {
			c.path += pick(g, []string{"/_history/1", "/_history"})
		}
	default: // search, by GET or POST _search
		c.path = "/" + typ
		for range g.rng.IntN(3) {
			q = append(q, g.param(v, p.api, typ))
		}
	}
	for range g.rng.IntN(3) {
		if g.chance(0.6) {
			q = append(q, g.include(typ))
		}
	}
	if g.chance(0.3) {
		n := 1 + g.rng.IntN(3)
		var els []string
		for range n {
			els = append(els, pick(g, elementNames))
		}
		q = append(q, "_elements="+strings.Join(els, ","))
	}
	if g.chance(0.12) {
		q = append(q, "_summary="+pick(g, []string{"true", "text", "data", "count", "false"}))
	}
	if g.chance(0.3) {
		q = append(q, "_count="+pick(g, []string{"1", "2", "5", "50"}))
	}
	if g.chance(0.08) {
		q = append(q, "_total="+pick(g, []string{"accurate", "estimate", "none"}))
	}
	if g.chance(0.05) {
		q = append(q, "_format="+pick(g, []string{"json", "xml", "application/fhir+xml"}))
	}
	if len(q) > 0 && strings.Count(c.path, "/") == 1 && g.chance(0.15) {
		c.method, c.path, c.body = http.MethodPost, c.path+"/_search", strings.Join(q, "&")
		c.header = map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	} else if len(q) > 0 {
		c.path += "?" + strings.Join(q, "&")
	}
	for range g.rng.IntN(2) {
		h := pick(g, propertyHeaders)
		if c.header == nil {
			c.header = map[string]string{}
		}
		c.header[h[0]] = h[1]
	}
	pr := probe{p: p, c: c}
	if g.chance(0.15) {
		pr.expect = followNext(p)
	}
	return pr
}

// param is one search parameter with a modifier (half the time) and a value, sometimes an OR list.
func (g *generator) param(v vocabulary, api, typ string) string {
	params := v.paramsOf(api, typ)
	listed := g.tr.surface[api][typ]
	sp := pick(g, params)
	if len(listed) > 0 && g.chance(0.9) {
		sp = pick(g, listed)
	}
	mod := ""
	if g.chance(0.3) {
		mod = pick(g, modifiers[sp.typ])
	}
	vals := v.values(typ, sp, mod)
	val := pick(g, vals)
	if g.chance(0.1) {
		val += "," + pick(g, vals)
	}
	return sp.name + mod + "=" + queryValue(val)
}

// include is an _include or _revinclude, sometimes :iterate, sometimes a wildcard.
func (g *generator) include(typ string) string {
	iterate := ""
	if g.chance(0.3) {
		iterate = ":iterate"
	}
	if g.chance(0.1) {
		return pick(g, []string{"_include", "_revinclude"}) + iterate + "=*"
	}
	if g.chance(0.4) {
		if ps := referenceParams[typ]; len(ps) > 0 {
			return "_include" + iterate + "=" + typ + ":" + pick(g, ps)
		}
	}
	from := pick(g, mapKeys(referenceParams))
	return "_revinclude" + iterate + "=" + from + ":" + pick(g, referenceParams[from])
}

// heldTypes are the types an API serves that HAPI holds resources of (where a leak could come from).
func (g *generator) heldTypes(api string) []string {
	var out []string
	for typ := range g.tr.surface[api] {
		if slices.ContainsFunc(g.tr.all, func(h *held) bool { return h.typ == typ }) {
			out = append(out, typ)
		}
	}
	slices.Sort(out)
	return out
}

// mapKeys are sorted: the generator must not depend on map order, so that a seed reproduces its run.
func mapKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// followNext is an expectation that also follows the answer's next link as the same caller and checks
// that page the same way.
func followNext(p *principal) func(a answer) string {
	return func(a answer) string {
		next := link(a, "next")
		if a.status != http.StatusOK || next == "" {
			return ""
		}
		path, ok := strings.CutPrefix(next, nextBase(a.mode)+p.api)
		if !ok {
			return fmt.Sprintf("next link %q is not on the API's base", next)
		}
		m := modes()[0]
		if a.mode == "standalone" {
			m = modes()[1]
		}
		tok, err := p.tokenFor(context.Background())
		if err != nil {
			return err.Error()
		}
		page, err := send(context.Background(), m, p.api, tok, get(path))
		if err != nil {
			return fmt.Sprintf("next page: %v", err)
		}
		if problems := check(p, page); len(problems) > 0 {
			return "next page: " + strings.Join(problems, "; ")
		}
		return ""
	}
}

func nextBase(mode string) string {
	for _, m := range modes() {
		if m.name == mode {
			return m.root
		}
	}
	return ""
}
