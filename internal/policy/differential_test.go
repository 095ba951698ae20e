package policy

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/smart"
	"github.com/fhirwall/fhirwall/policies"
)

// The rules rewritten for speed (response_types computing the "*" scopes' constraints once, not once per
// served type) are held to the rules as they were: testdata/reference holds the policy files as they stood
// before each rewrite, laid over the embedded set, and both sets must decide every generated input alike:
// the same allow, status, reasons, details and obligations, or both fail. When a rule's meaning changes on
// purpose, change its reference copy with it.

func referenceFS(t testing.TB) fs.FS {
	t.Helper()
	over, err := fs.Glob(os.DirFS("testdata/reference"), "*.rego")
	if err != nil || len(over) == 0 {
		t.Fatalf("testdata/reference: %v %v", over, err)
	}
	m := fstest.MapFS{}
	names, err := fs.Glob(policies.FS, "*.rego")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, err := fs.ReadFile(policies.FS, n)
		if err != nil {
			t.Fatal(err)
		}
		m[n] = &fstest.MapFile{Data: b}
	}
	for _, n := range over {
		b, err := os.ReadFile("testdata/reference/" + n)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m[n]; !ok {
			t.Fatalf("testdata/reference/%s replaces no policy file", n)
		}
		m[n] = &fstest.MapFile{Data: b}
	}
	return m
}

type enginePair struct {
	current, reference *Engine
	data               map[string]any
}

func newEnginePair(t testing.TB) enginePair {
	t.Helper()
	cfg, err := config.Load("../../config/fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data := cfg.PolicyData()
	cur, err := New(context.Background(), policies.FS, data)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := newEngine(context.Background(), referenceFS(t), data, true)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Revision() == ref.Revision() {
		t.Fatal("testdata/reference changes nothing: the rewrite it guards is gone, and so should the copy be")
	}
	if cur.current.Load().memo == nil || ref.current.Load().memo != nil {
		t.Fatal("the current set must run with its memo, the reference without")
	}
	return enginePair{current: cur, reference: ref, data: data}
}

// decideAlike reports on t when the two sets answer differently for input (Errorf: goroutines call it too).
func (p enginePair) decideAlike(t testing.TB, input map[string]any) bool {
	t.Helper()
	ctx := context.Background()
	got, gerr := p.current.Decide(ctx, input)
	want, werr := p.reference.Decide(ctx, input)
	got.Revision, want.Revision = "", ""
	if (gerr != nil) != (werr != nil) || !reflect.DeepEqual(got, want) {
		t.Errorf("input %v\ncurrent   %+v (%v)\nreference %+v (%v)", input, got, gerr, want, werr)
		return false
	}
	return true
}

// inputGen draws policy inputs as the decision core builds them: a request classified by internal/fhir from a
// random method, path and query, scopes parsed by internal/smart, a random client and random facts.
type inputGen struct {
	r     *rand.Rand
	apis  []string
	types []string
	// params: the search parameters named anywhere in the config, plus ones no API accepts.
	params []string
	// served: per API, the types it serves and per type the parameters it accepts (most draws use them, so
	// that most inputs get past the first refusals to the rules that build obligations).
	served map[string]map[string][]string
	api    string
	typ    string
	// tokens: a few scope strings drawn once and reused, as a member app's tokens repeat, so that most inputs
	// share their identity with an earlier one and the memo (memo.go) answers for them.
	tokens []string
}

func newInputGen(seed uint64, data map[string]any) *inputGen {
	g := &inputGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), served: map[string]map[string][]string{}}
	typeSet, paramSet := map[string]bool{"Patient": true, "Unknown": true}, map[string]bool{
		"patient": true, "subject": true, "beneficiary": true, "payee": true, "category": true, "code": true,
		"_include": true, "_revinclude": true, "_count": true, "_sort": true, "_summary": true, "_elements": true,
		"_has": true, "_id": true, "status": true, "nosuch": true, "identifier": true, "_type": true, "_outputFormat": true, "_since": true,
	}
	for api, a := range data["apis"].(map[string]any) {
		g.apis = append(g.apis, api)
		res, _ := a.(map[string]any)["resources"].(map[string]any)
		g.served[api] = map[string][]string{}
		for t, r := range res {
			typeSet[t] = true
			sp, _ := r.(map[string]any)["search_params"].([]any)
			for _, p := range sp {
				paramSet[p.(string)] = true
				g.served[api][t] = append(g.served[api][t], p.(string))
			}
			sortStrings(g.served[api][t])
		}
	}
	g.apis = append(g.apis, "no-such-api")
	for t := range typeSet {
		g.types = append(g.types, t)
	}
	for p := range paramSet {
		g.params = append(g.params, p)
	}
	// Map order is random: sorted, a seed names one input.
	sortStrings(g.apis, g.types, g.params)
	return g
}

func sortStrings(ss ...[]string) {
	for _, s := range ss {
		for i := 1; i < len(s); i++ {
			for j := i; j > 0 && s[j] < s[j-1]; j-- {
				s[j], s[j-1] = s[j-1], s[j]
			}
		}
	}
}

func (g *inputGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g *inputGen) chance(n int) bool { return g.r.IntN(n) == 0 }

var patients = []string{"member-01", "member-02", "Patient/member-01", "Patient/member-02", "pat-x"}

func (g *inputGen) value() string {
	return g.pick(append([]string{"laboratory", "vital-signs", "active", "4548-4", "10", "ExplanationOfBenefit:*", "x,y", "Patient/member-01,Patient/member-02"}, patients...)...)
}

func (g *inputGen) scope() string {
	ctx := g.pick("patient", "user", "system")
	switch {
	case strings.HasPrefix(g.api, "patient-access") && !g.chance(4):
		ctx = "patient"
	case strings.HasPrefix(g.api, "provider-access") && !g.chance(4):
		ctx = g.pick("user", "system")
	case (strings.HasPrefix(g.api, "payer-to-payer") || strings.HasPrefix(g.api, "prior-auth")) && !g.chance(4):
		ctx = "system"
	}
	typ := "*"
	switch g.r.IntN(3) {
	case 0:
		typ = g.typ
	case 1:
		typ = g.pick(g.types...)
	}
	perms := g.pick("rs", "r", "s", "read", "cruds", "write", "c", "*", "cu", "rs")
	s := ctx + "/" + typ + "." + perms
	if g.chance(4) {
		s += "?" + g.pick("category", "code", "status", "type") + "=" + g.pick("laboratory", "vital-signs", "active", "http://loinc.org|4548-4")
		if g.chance(3) {
			s += "&" + g.pick("category", "code") + "=" + g.pick("laboratory", "survey")
		}
	}
	return s
}

func (g *inputGen) request() (fhir.Request, error) {
	typ := g.typ
	var path, method string
	switch g.r.IntN(20) {
	case 0:
		path, method = "/"+typ+"/"+g.pick("member-01", "member-02", "eob-01", "x"), g.pick("GET", "GET", "PUT", "DELETE", "PATCH")
	case 1:
		path, method = "/"+typ+"/"+g.pick("member-01", "eob-01")+"/_history/"+g.pick("1", ""), "GET"
	case 2:
		path, method = "/metadata", "GET"
	case 3:
		path, method = "/.well-known/smart-configuration", "GET"
	case 4:
		path, method = "/"+typ, "POST"
	case 5:
		path, method = "/Patient/"+g.pick("member-01", "member-02")+"/"+g.pick("ExplanationOfBenefit", "Observation", "*"), "GET"
	case 6:
		path, method = g.pick("/$export", "/Group/"+g.pick("g1", "attribution-org-a")+"/$davinci-data-export", "/Patient/$member-match",
			"/Patient/$bulk-member-match", "/Claim/$submit", "/Claim/$inquire", "/Group/g1/$export", "/$export-poll-status", "/Patient/$export"),
			g.pick("GET", "POST")
	case 7:
		path, method = "/", "POST"
	case 8:
		path, method = "", "GET"
	default:
		path, method = "/"+typ, g.pick("GET", "GET", "POST")
		if method == "POST" && g.chance(2) {
			path += "/_search"
		}
	}
	var q []string
	for range g.r.IntN(5) {
		name := g.pick(g.params...)
		if own := g.served[g.api][typ]; len(own) > 0 && !g.chance(3) {
			name = g.pick(own...)
		}
		switch g.r.IntN(8) {
		case 0:
			name += ":" + g.pick("not", "missing", "exact", "iterate", "Patient", "text", "below", "identifier")
		case 1:
			name += "." + g.pick("name", "identifier")
		case 2:
			name = "_has:" + g.pick("Observation:patient:code", "Group:member:_id")
		}
		v := g.value()
		if g.chance(4) {
			v += "," + g.value()
		}
		q = append(q, name+"="+v)
	}
	if g.chance(6) {
		q = append(q, "_getpages="+g.pick("p1", "p2"))
	}
	header := func(h string) []string {
		if strings.EqualFold(h, "Prefer") && g.chance(2) {
			return []string{"respond-async"}
		}
		return nil
	}
	return fhir.Classify(method, path, strings.Join(q, "&"), header, nil)
}

// input draws one input; ok is false when the drawn request does not classify (the core refuses it before the
// policy runs).
func (g *inputGen) input() (map[string]any, bool) {
	g.api, g.typ = g.pick(g.apis...), g.pick(g.types...)
	if own := g.served[g.api]; len(own) > 0 && !g.chance(4) {
		types := make([]string, 0, len(own))
		for t := range own {
			types = append(types, t)
		}
		sortStrings(types)
		g.typ = g.pick(types...)
	}
	req, err := g.request()
	if err != nil {
		return nil, false
	}
	in := map[string]any{"api": g.api, "authenticated": !g.chance(10), "request": req.PolicyInput()}
	if in["authenticated"] == true {
		var raw []string
		if len(g.tokens) < 4 || g.chance(8) {
			for range g.r.IntN(5) {
				raw = append(raw, g.scope())
			}
			if g.chance(2) { // a broad grant, so that many requests get past the scope checks to the obligations
				raw = append(raw, g.pick("patient/*.rs", "user/*.rs", "system/*.rs", "patient/*.read", "system/*.read", "user/*.cruds"))
			}
			raw = append(raw, g.pick("openid", "launch/patient", "fhirUser", "offline_access"))
			g.tokens = append(g.tokens, strings.Join(raw, " "))
		}
		set := smart.ParseSet(g.pick(g.tokens...))
		scopes := make([]any, 0, len(set.Resource))
		for _, s := range set.Resource {
			p := s.Permissions
			sc := map[string]any{"raw": s.Raw, "context": string(s.Context), "resource_type": s.ResourceType,
				"permissions": map[string]any{"c": p.Create, "r": p.Read, "u": p.Update, "d": p.Delete, "s": p.Search}}
			if s.Params != nil {
				ps := map[string]any{}
				for k, vs := range s.Params {
					ps[k] = anyStrings(vs)
				}
				sc["params"] = ps
			}
			scopes = append(scopes, sc)
		}
		id := map[string]any{"client_id": "app", "subject": "u1", "fhir_user": g.pick("", "Patient/member-01", "Practitioner/pract-01"),
			"scopes": scopes, "other_scopes": anyStrings(set.Other)}
		if !g.chance(4) {
			id["patient"] = g.pick("member-01", "member-02")
		}
		if g.chance(2) {
			id["org"] = g.pick("Organization/org-a", "Organization/payer-b")
		}
		in["identity"] = id
		if !g.chance(5) {
			in["client"] = map[string]any{"id": "app", "name": "App", "tier": g.pick("default", "standard", "bulk"), "org": "", "apis": anyStrings(g.apis[:g.r.IntN(len(g.apis))])}
		}
	}
	if g.chance(2) {
		facts := map[string]any{}
		for _, f := range []string{"page_bound_to_caller", "export_file_bound_to_caller", "export_job_bound_to_caller",
			"group_bound_to_caller", "has_permitted", "match_job_bound_to_caller", "prefer_respond_async"} {
			if g.chance(2) {
				facts[f] = g.chance(2)
			}
		}
		if g.chance(2) {
			facts["provider"] = g.pick("Organization/org-a", "Practitioner/pract-01")
			facts["attribution_group"] = g.pick("attribution-org-a", "g1")
			facts["patients"] = map[string]any{"member-01": true, "member-02": g.chance(2)}
		}
		if g.chance(3) {
			facts["payer"] = g.pick("Organization/payer-b", "")
		}
		in["facts"] = facts
	}
	return in, true
}

func anyStrings(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// TestRewrittenRulesDecideAsTheReference runs thousands of generated inputs through both sets.
func TestRewrittenRulesDecideAsTheReference(t *testing.T) {
	p := newEnginePair(t)
	n := 4000
	if testing.Short() {
		n = 500
	}
	g := newInputGen(18, p.data)
	allowed, seen := 0, map[string]int{}
	for i := 0; i < n; {
		in, ok := g.input()
		if !ok {
			continue
		}
		i++
		if !p.decideAlike(t, in) {
			return
		}
		r, err := p.current.Decide(context.Background(), in)
		if err == nil && r.Allow {
			allowed++
		}
		if err == nil {
			seen[fmt.Sprint(r.Reasons)]++
		}
	}
	t.Logf("%d of %d allowed; reasons %v", allowed, n, seen)
	// The generator must reach the rules: allowed requests with their obligations, and many refusals.
	if allowed < n/50 || len(seen) < 15 {
		t.Fatalf("generator too narrow: %d of %d allowed, reasons %v", allowed, n, seen)
	}
}

// TestMemoDecidesAsFullEvaluation: the embedded set with its memo (memo.go), fed thousands of inputs that share
// tokens, API and request parts with earlier ones, answers each as the same set evaluating every rule anew.
func TestMemoDecidesAsFullEvaluation(t *testing.T) {
	p := newEnginePair(t)
	full, err := newEngine(context.Background(), policies.FS, p.data, true)
	if err != nil {
		t.Fatal(err)
	}
	p.reference = full
	n := 6000
	if testing.Short() {
		n = 600
	}
	g := newInputGen(57, p.data)
	for i := 0; i < n; {
		if in, ok := g.input(); ok {
			i++
			if !p.decideAlike(t, in) {
				return
			}
		}
	}
	if hits := p.current.current.Load().memo.hits.Load(); hits < uint64(n) {
		t.Fatalf("the memo answered %d times in %d evaluations: the test proves nothing about it", hits, n)
	}
}

// FuzzRewrittenRulesDecideAsTheReference: go test -fuzz FuzzRewrittenRulesDecideAsTheReference ./internal/policy
func FuzzRewrittenRulesDecideAsTheReference(f *testing.F) {
	p := newEnginePair(f)
	for _, s := range []uint64{1, 2, 3, 18, 1 << 40} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		g := newInputGen(seed, p.data)
		for range 16 {
			if in, ok := g.input(); ok && !p.decideAlike(t, in) {
				return
			}
		}
	})
}
