package priorauth

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/fhirserver"
	"github.com/fhirwall/fhirwall/adapters/priorauth/subscriptions"
	"github.com/fhirwall/fhirwall/adapters/priorauth/um"
	"github.com/fhirwall/fhirwall/adapters/profilevalidator"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/token"
)

// fakeFHIR is a fake FHIR server for unit tests of the adapter's own logic: resources in memory, reads,
// the searches the adapter makes (Patient?identifier=, PractitionerRole?practitioner=&active=, each narrowed
// by _tag), transaction
// Bundles of PUTs, and deletes. The real HAPI FHIR server is exercised by test/priorauth.
type fakeFHIR struct {
	mu           sync.Mutex
	resources    map[string]map[string]any
	transactions int
	down         bool // answer 503 to everything
	srv          *httptest.Server
}

func newFakeFHIR(t testing.TB) *fakeFHIR {
	f := &fakeFHIR{resources: map[string]map[string]any{}}
	for _, r := range []map[string]any{
		{"resourceType": "Patient", "id": "member-01", "name": []any{map[string]any{"family": "Thompson", "given": []any{"Ava"}}},
			"identifier": []any{map[string]any{"system": "https://fhirwall.example/member-id", "value": "FWM0001"}}},
		{"resourceType": "Organization", "id": "org-a", "active": true,
			"identifier": []any{map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}}},
		{"resourceType": "Organization", "id": "org-b", "active": true,
			"identifier": []any{map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1144221847"}}},
		{"resourceType": "Practitioner", "id": "pract-01", "active": true,
			"identifier": []any{map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1567890128"}}},
		{"resourceType": "Practitioner", "id": "pract-09", "active": true,
			"identifier": []any{map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1999999992"}}},
		{"resourceType": "PractitionerRole", "id": "pract-role-09", "active": true,
			"practitioner": map[string]any{"reference": "Practitioner/pract-09"}, "organization": map[string]any{"reference": "Organization/org-a"}},
	} {
		f.resources[r["resourceType"].(string)+"/"+r["id"].(string)] = r
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeFHIR) get(ref string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.resources[ref]
}

func (f *fakeFHIR) of(typ string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for k, r := range f.resources {
		if strings.HasPrefix(k, typ+"/") {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeFHIR) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/fhir+json")
	if f.down {
		w.WriteHeader(503)
		return
	}
	path := strings.Trim(r.URL.Path, "/")
	q := r.URL.Query()
	switch {
	case r.Method == "POST" && path == "":
		var b map[string]any
		_ = json.NewDecoder(r.Body).Decode(&b)
		if b["type"] != "transaction" {
			w.WriteHeader(400)
			return
		}
		f.transactions++
		for _, e := range b["entry"].([]any) {
			eo := e.(map[string]any)
			req := eo["request"].(map[string]any)
			if req["method"] != "PUT" {
				w.WriteHeader(400)
				return
			}
			f.resources[req["url"].(string)] = eo["resource"].(map[string]any)
		}
		_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"transaction-response"}`))
	case r.Method == "DELETE":
		delete(f.resources, path)
	case r.Method == "GET" && strings.Contains(path, "/"):
		res, ok := f.resources[path]
		if !ok {
			w.WriteHeader(404)
			return
		}
		_ = json.NewEncoder(w).Encode(res)
	case r.Method == "GET":
		var entries []any
		for k, res := range f.resources {
			if strings.HasPrefix(k, path+"/") && f.matches(res, q) {
				entries = append(entries, map[string]any{"resource": res})
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"resourceType": "Bundle", "type": "searchset", "entry": entries})
	default:
		w.WriteHeader(400)
	}
}

func (f *fakeFHIR) matches(res map[string]any, q map[string][]string) bool {
	if v, ok := q["_tag"]; ok {
		tagged := false
		for _, tg := range asList(asObj(res["meta"])["tag"]) {
			tagged = tagged || asStr(asObj(tg)["system"])+"|"+asStr(asObj(tg)["code"]) == v[0]
		}
		if !tagged {
			return false
		}
	}
	if v, ok := q["identifier"]; ok && !slices.Contains(Identifiers(res), v[0]) {
		return false
	}
	if v, ok := q["practitioner"]; ok && asStr(asObj(res["practitioner"])["reference"]) != v[0] {
		return false
	}
	return true
}

// fakeValidator answers what it was told, counting calls.
type fakeValidator struct {
	mu       sync.Mutex
	res      profilevalidator.Result
	err      error
	profiles []string
}

func (v *fakeValidator) Validate(ctx context.Context, profile string, resource []byte) (profilevalidator.Result, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.profiles = append(v.profiles, profile)
	if !json.Valid(resource) {
		return profilevalidator.Result{}, errors.New("fake validator: not JSON")
	}
	return v.res, v.err
}

// fakeDecider decides like the default rules for the codes the tests use, or fails.
type fakeDecider struct {
	err   error
	calls int
	asked []um.Request
}

func (d *fakeDecider) Decide(ctx context.Context, r um.Request) (um.Result, error) {
	d.calls++
	d.asked = append(d.asked, r)
	if d.err != nil {
		return um.Result{}, d.err
	}
	var out um.Result
	for _, it := range r.Items {
		ir := um.ItemResult{Sequence: it.Sequence, Verdict: um.NotRequired, Rule: "not-listed"}
		for _, c := range it.Codes {
			switch c.Code {
			case "70551", "G0154":
				ir.Verdict, ir.Rule = um.Approved, "mri-brain"
			case "B4185":
				ir.Verdict, ir.Rule = um.Denied, "parenteral-nutrition"
				ir.Reason = &um.Code{System: SystemX12Reason, Code: "0U", Display: "Not medically necessary"}
			case "33510", "B4184":
				ir.Verdict, ir.Rule = um.Pended, "cabg-review"
			case "81162":
				ir.Verdict, ir.Rule = um.Pended, "um-unavailable"
			case "J1745":
				ir.Verdict, ir.Rule, ir.Drug = um.Approved, "drugs", true
			}
		}
		out.Items = append(out.Items, ir)
	}
	return out, nil
}

// fakeNotifier records events, and what the store held when each arrived.
type fakeNotifier struct {
	store  Store
	events []subscriptions.Event
	stored []Status
}

func (n *fakeNotifier) Decided(ctx context.Context, ev subscriptions.Event) error {
	n.events = append(n.events, ev)
	r, _ := n.store.Get(ctx, ev.RequestID)
	n.stored = append(n.stored, r.Status)
	return nil
}

// fakeSubscriptions records the owner and the body it was handed, and answers with that body.
type fakeSubscriptions struct {
	owner subscriptions.Owner
	body  []byte
}

func (s *fakeSubscriptions) Serve(ctx context.Context, d *decision.Decision, owner subscriptions.Owner, base string) (decision.Answer, error) {
	s.owner, s.body = owner, d.Input.Body
	return decision.Answer{Status: 201, Body: d.Input.Body}, nil
}

type fakeObserver struct{ statuses []string }

func (o *fakeObserver) PriorAuthDecided(status string, expedited bool, took time.Duration) {
	o.statuses = append(o.statuses, status)
}

var now = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// rig is one adapter with its fakes.
type rig struct {
	a        *Adapter
	fhir     *fakeFHIR
	store    *MemoryStore
	valid    *fakeValidator
	decider  *fakeDecider
	notifier *fakeNotifier
	subs     *fakeSubscriptions
	observer *fakeObserver
}

func newRig(t testing.TB) *rig {
	f := newFakeFHIR(t)
	g := &rig{fhir: f, store: NewMemoryStore(), valid: &fakeValidator{res: profilevalidator.Result{Valid: true}},
		decider: &fakeDecider{}, subs: &fakeSubscriptions{}, observer: &fakeObserver{}}
	g.notifier = &fakeNotifier{store: g.store}
	a, err := New(Ports{
		FHIR: fhirserver.NewExchanger("fake", f.srv.URL, f.srv.Client()), Search: fhirserver.NewSearcher("fake", f.srv.URL, f.srv.Client(), 5),
		Store: g.store, Validator: g.valid, Decider: g.decider, Subscriptions: g.subs, Notifier: g.notifier, Observer: g.observer,
		Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now },
	}, Settings{Insurer: "Organization/payer-a", InsurerIdentifiers: []string{"https://fhirwall.example/payer-id|FWPAYER-A"},
		MemberIdentifierSystem: "https://fhirwall.example/member-id"})
	if err != nil {
		t.Fatal(err)
	}
	g.a = a
	return g
}

// The callers: org-a's and org-b's backend services, and pract-01 in org-a's EHR app.
var (
	orgA     = &token.Identity{ClientID: "provider-org-a", Org: "Organization/org-a"}
	orgB     = &token.Identity{ClientID: "provider-org-b", Org: "Organization/org-b"}
	clinic01 = &token.Identity{ClientID: "provider-app", FHIRUser: "Practitioner/pract-01"}
	clinic09 = &token.Identity{ClientID: "provider-app", FHIRUser: "Practitioner/pract-09"}
)

func (g *rig) call(t testing.TB, who *token.Identity, path string, body []byte) decision.Answer {
	t.Helper()
	ans, err := g.a.Serve(context.Background(), decided(t, who, path, body), "https://gw.example/prior-auth/fhir")
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	return ans
}

// decided is the decision the core hands the adapter for an allowed POST.
func decided(t testing.TB, who *token.Identity, path string, body []byte) *decision.Decision {
	t.Helper()
	req, err := fhir.Classify("POST", path, "", func(name string) []string {
		if name == "Content-Type" {
			return []string{"application/fhir+json"}
		}
		return nil
	}, body)
	if err != nil {
		t.Fatal(err)
	}
	return &decision.Decision{Allow: true, Request: req, Identity: who,
		Input:  decision.Input{API: "prior-auth", Method: "POST", Path: path, Body: body},
		Client: &decision.Client{ID: who.ClientID, NotifyHosts: []string{"127.0.0.1:9999"}},
		Policy: policy.Result{Obligations: policy.Obligations{Adapter: Name}}}
}

func (g *rig) submit(t testing.TB, who *token.Identity, body []byte) decision.Answer {
	t.Helper()
	return g.call(t, who, "/Claim/$submit", body)
}

// input reads a testdata Bundle and lets the test change it.
func input(t testing.TB, name string, change ...func(claim map[string]any, b map[string]any)) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var b map[string]any
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	claim := b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
	for _, c := range change {
		c(claim, b)
	}
	out, _ := json.Marshal(b)
	return out
}

// withCodes gives the Claim one item per code (system|code).
func withCodes(codes ...string) func(map[string]any, map[string]any) {
	return func(claim, _ map[string]any) {
		first := claim["item"].([]any)[0].(map[string]any)
		var items []any
		for i, sc := range codes {
			sys, code, _ := strings.Cut(sc, "|")
			it := deepCopy(first)
			it["sequence"] = i + 1
			it["productOrService"] = map[string]any{"coding": []any{map[string]any{"system": sys, "code": code}}}
			items = append(items, it)
		}
		claim["item"] = items
	}
}

const (
	cpt   = "http://www.ama-assn.org/go/cpt|"
	hcpcs = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets|"
)

// responseOf decodes a response Bundle and returns it with its ClaimResponse.
func responseOf(t testing.TB, body []byte) (map[string]any, map[string]any) {
	t.Helper()
	var b map[string]any
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("not JSON: %s", body)
	}
	entries := asList(b["entry"])
	if len(entries) == 0 {
		t.Fatalf("no entries: %s", body)
	}
	cr := asObj(asObj(entries[0])["resource"])
	if asStr(cr["resourceType"]) != "ClaimResponse" {
		t.Fatalf("first entry is a %v", cr["resourceType"])
	}
	return b, cr
}

// actions are the X12 306 codes of a ClaimResponse or EOB, item by item.
func actions(res map[string]any) []string {
	var out []string
	for _, it := range asList(res["item"]) {
		for _, adj := range asList(asObj(it)["adjudication"]) {
			for _, x := range asList(asObj(adj)["extension"]) {
				for _, sub := range asList(asObj(x)["extension"]) {
					for _, c := range codingsOf(asObj(sub)["valueCodeableConcept"]) {
						if c.System == SystemX12Action {
							out = append(out, c.Code)
						}
					}
				}
			}
		}
	}
	return out
}
