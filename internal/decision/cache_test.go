package decision

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/token"
	"github.com/fhirwall/fhirwall/policies"
)

// realEngine is the embedded policy set with the example config's data, as fhirwall-proxy runs it.
func realEngine(tb testing.TB) *policy.Engine {
	tb.Helper()
	cfg, err := config.Load("../../config/fhirwall.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	e, err := policy.New(context.Background(), policies.FS, cfg.PolicyData())
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// Tiny policy sets, for what the embedded one cannot show on its own.
var (
	allowsA = fstest.MapFS{"a.rego": {Data: []byte(`package fhirwall.authz
decision := {"allow": true, "status": 200, "reasons": ["is_a"], "obligations": {"narrow": [{"param": "patient", "value": input.x}]}} if {
	input.x == "a"
} else := {"allow": false, "status": 403, "reasons": ["not_a"]}
`)}}
	refusesAll = fstest.MapFS{"b.rego": {Data: []byte(`package fhirwall.authz
decision := {"allow": false, "status": 403, "reasons": ["set_b"]}
`)}}
	readsTheClock = fstest.MapFS{"c.rego": {Data: []byte(`package fhirwall.authz
decision := {"allow": false, "status": 403, "reasons": [sprintf("%d", [time.now_ns()])]}
`)}}
)

func tinyEngine(tb testing.TB, fsys fs.FS) *policy.Engine {
	tb.Helper()
	e, err := policy.New(context.Background(), fsys, map[string]any{})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// countingPolicy counts the evaluations that reach the engine.
type countingPolicy struct {
	*policy.Engine
	mu    sync.Mutex
	calls int
}

func (p *countingPolicy) Decide(ctx context.Context, in any) (policy.Result, error) {
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
	return p.Engine.Decide(ctx, in)
}

type outcomeOf struct {
	res policy.Result
	err string
}

func decideOutcome(p Policy, in any) outcomeOf {
	r, err := p.Decide(context.Background(), in)
	o := outcomeOf{res: r}
	if err != nil {
		o.err = err.Error()
	}
	return o
}

// Vocabularies of the generator: every API, request shapes of each, scopes, clients, facts.
var (
	genAPIs    = config.KnownAPIs
	genMethods = []string{"GET", "GET", "GET", "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"}
	genPaths   = []string{"/Patient/member-01", "/Patient/member-02", "/Patient", "/ExplanationOfBenefit", "/Observation",
		"/Coverage", "/Condition", "/metadata", "/.well-known/smart-configuration", "/Patient/member-01/$everything",
		"/Group/attribution-org-a/$export", "/$export-poll-status", "/Binary/b1", "/Patient/member-01/Observation",
		"/ExplanationOfBenefit/eob-1/_history/2", "/ExplanationOfBenefit/eob-1", "/Claim/$submit", "/Claim/$inquire",
		"/Patient/$member-match", "/Group/$bulk-member-match", "/$bulk-member-match-status", "/Group/g1/$davinci-data-export",
		"/Practitioner/pr-1", "/Organization", "/Subscription", "/Patient/member-01/_history", "/"}
	genParams = []string{"patient=member-01", "patient=member-02", "patient=Patient/member-01", "_count=10", "status=active",
		"category=laboratory", "_include=ExplanationOfBenefit:patient", "_id=member-01", "code=x", "subject:Patient.name=a",
		"_has:Observation:patient:code=x", "_getpages=abc", "_jobId=j1", "date=ge2020", "_summary=count", "_elements=id",
		"_revinclude=Provenance:target", "identifier=x|1", "_type=Patient,Coverage", "patient:missing=true", "_sort=-date"}
	genScopes = []string{"openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs", "patient/*.read",
		"patient/*.cruds", "user/*.rs", "system/*.rs", "system/*.read", "patient/Observation.rs?category=laboratory",
		"patient/ExplanationOfBenefit.rs", "patient/Coverage.r", "system/Patient.rs", "user/Claim.c", "system/Claim.c",
		"patient/Observation.rs?category=laboratory&code=x", "bogus"}
	genPatients = []string{"", "member-01", "member-02"}
	genOrgs     = []string{"", "Organization/org-a", "Organization/payer-b", "Organization/"}
	genUsers    = []string{"", "Practitioner/pr-1", "Patient/member-01", "RelatedPerson/r1"}
	genClients  = []string{"patient-app", "provider-org-a", "payer-b", "pas-client"}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func subset(r *rand.Rand, xs []string) []string {
	var out []string
	for _, x := range xs {
		if r.IntN(3) == 0 {
			out = append(out, x)
		}
	}
	return out
}

// genRequest classifies a random request the way the core does; some shapes do not classify and are tried again.
func genRequest(r *rand.Rand) fhir.Request {
	for {
		q := strings.Join(subset(r, genParams), "&")
		method := pick(r, genMethods)
		var body []byte
		header := http.Header{}
		if method == "POST" || method == "PUT" {
			header.Set("Content-Type", "application/fhir+json")
			body = []byte(pick(r, []string{`{"resourceType":"Patient","id":"member-01"}`,
				`{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/member-02"}}`,
				`{"resourceType":"Parameters","parameter":[]}`,
				`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/member-01"}}]}`}))
		}
		if r.IntN(4) == 0 {
			header.Set("Prefer", "respond-async")
		}
		req, err := fhir.Classify(method, pick(r, genPaths), q, header.Values, body)
		if err == nil {
			return req
		}
	}
}

// genPolicyInput builds a policy input as decide does (policyInput, withRegistry, facts), from random parts:
// half of them a member's or a provider's usual requests (mostly allowed), half anything.
func genPolicyInput(r *rand.Rand) map[string]any {
	if r.IntN(2) == 0 {
		return genUsualInput(r)
	}
	api := pick(r, genAPIs)
	req := genRequest(r)
	d := &Decision{Request: req}
	if r.IntN(6) > 0 {
		d.Identity = &token.Identity{ClientID: pick(r, genClients), Subject: pick(r, []string{"u1", "u2", "svc"}),
			Patient: pick(r, genPatients), FHIRUser: pick(r, genUsers), Org: pick(r, genOrgs), Scopes: subset(r, genScopes)}
		if r.IntN(5) > 0 {
			d.Client = &Client{ID: d.Identity.ClientID, Name: pick(r, []string{"App", ""}), Active: true,
				APIs: subset(r, genAPIs), Tier: pick(r, []string{"standard", "backend", ""}), Org: pick(r, genOrgs)}
			d.DroppedScopes = subset(r, genScopes)
		}
	}
	in := withRegistry(policyInput(api, d.Identity, req), d)
	if r.IntN(2) == 0 {
		facts := map[string]any{}
		for _, f := range subset(r, []string{"page_bound_to_caller", "has_permitted", "prefer_respond_async",
			"export_job_bound_to_caller", "export_file_bound_to_caller", "match_job_bound_to_caller", "group_bound_to_caller"}) {
			facts[f] = r.IntN(2) == 0
		}
		for _, f := range subset(r, []string{"provider", "payer", "attribution_group"}) {
			facts[f] = pick(r, []string{"Organization/org-a", "Practitioner/pr-1", "Organization/payer-b", "attribution-org-a"})
		}
		if r.IntN(2) == 0 {
			patients := map[string]any{}
			for _, p := range subset(r, []string{"member-01", "member-02", "member-03"}) {
				patients[p] = r.IntN(2) == 0
			}
			facts["patients"] = patients
		}
		in["facts"] = facts
	}
	return in
}

func genUsualInput(r *rand.Rand) map[string]any {
	most := func(xs ...string) []string {
		var out []string
		for _, x := range xs {
			if r.IntN(4) > 0 {
				out = append(out, x)
			}
		}
		return out
	}
	path := pick(r, []string{"/ExplanationOfBenefit", "/Observation", "/Coverage", "/Patient/member-01", "/Observation/o1",
		"/Practitioner/pr-1", "/Patient", "/Condition"})
	query := pick(r, []string{"", "patient=member-01", "category=laboratory", "_count=10", "status=active", "patient=member-02",
		"_id=member-01", "patient=member-01&_count=5"})
	if strings.Contains(path, "/Patient/") || strings.Contains(path, "/o1") || strings.Contains(path, "/pr-1") {
		query = ""
	}
	req, err := fhir.Classify("GET", path, query, nil, nil)
	if err != nil {
		panic(err)
	}
	var api string
	d := &Decision{Request: req}
	facts := map[string]any{}
	switch r.IntN(2) {
	case 0:
		api = pick(r, []string{"patient-access", "patient-access", "patient-access-sandbox"})
		d.Identity = &token.Identity{ClientID: "patient-app", Subject: pick(r, []string{"u1", "u2"}), Patient: pick(r, []string{"member-01", "member-02"}),
			Scopes: most("launch/patient", "patient/*.rs", "patient/ExplanationOfBenefit.rs", "patient/Observation.rs?category=laboratory", "openid")}
		d.Client = &Client{ID: "patient-app", Name: "Member app", Active: true, APIs: []string{api}, Tier: "standard"}
	default:
		api = pick(r, []string{"provider-access", "provider-access", "provider-access-sandbox"})
		d.Identity = &token.Identity{ClientID: "provider-org-a", Subject: "svc", Org: "Organization/org-a", Scopes: most("system/*.rs", "system/Observation.rs", "system/Patient.rs")}
		d.Client = &Client{ID: "provider-org-a", Active: true, APIs: []string{api}, Tier: "backend", Org: "Organization/org-a"}
		patients := map[string]any{}
		for _, p := range namedPatients(req) {
			patients[p] = r.IntN(4) > 0
		}
		facts = map[string]any{"provider": "Organization/org-a", "attribution_group": "attribution-org-a", "has_permitted": r.IntN(4) > 0, "patients": patients}
	}
	d.DroppedScopes = most("user/*.rs")
	in := withRegistry(policyInput(api, d.Identity, req), d)
	if len(facts) > 0 {
		in["facts"] = facts
	}
	return in
}

// mutateLeaf changes one leaf of v (a deep copy the caller owns): a string, a boolean, an element or member
// added or removed.
func mutateLeaf(r *rand.Rand, v any) any {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 || r.IntN(10) == 0 {
			x[pick(r, []string{"patient", "scopes", "facts", "zz"})+"_"] = "added"
			return x
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		k := keys[r.IntN(len(keys))]
		if r.IntN(12) == 0 {
			delete(x, k)
			return x
		}
		x[k] = mutateLeaf(r, x[k])
		return x
	case []any:
		if len(x) == 0 || r.IntN(10) == 0 {
			return append(x, pick(r, genScopes))
		}
		i := r.IntN(len(x))
		if r.IntN(10) == 0 {
			return append(x[:i:i], x[i+1:]...)
		}
		x[i] = mutateLeaf(r, x[i])
		return x
	case string:
		for {
			s := pick(r, []string{x + "x", "", "member-02", "member-01", "search-type", "read", "GET", "Patient", "patient/*.rs"})
			if s != x {
				return s
			}
		}
	case bool:
		return !x
	}
	return "was-nil"
}

func deepCopyInput(t testing.TB, in map[string]any) map[string]any {
	v, err := decodeCanonical(encodeCanonical(t, in))
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)
}

// TestCachedDecisionsAreTheEnginesForEveryInput: over random inputs of every shape, and inputs that differ from
// an earlier one in one leaf, the cached policy answers exactly as the engine evaluated directly, whether it
// answers from the cache or not; with the real hash and with hashes so weak that every input collides.
func TestCachedDecisionsAreTheEnginesForEveryInput(t *testing.T) {
	engine := realEngine(t)
	n := 1500
	if testing.Short() {
		n = 300
	}
	for _, tc := range []struct {
		name string
		hash func([]byte) uint64
		opts CacheOptions
	}{
		{"maphash", nil, CacheOptions{Entries: 10000, MaxBytes: 32 << 20}},
		{"every input collides", func([]byte) uint64 { return 42 }, CacheOptions{Entries: 10000, MaxBytes: 32 << 20}},
		{"three hashes", func(b []byte) uint64 { return uint64(len(b) % 3) }, CacheOptions{Entries: 10000, MaxBytes: 32 << 20}},
		{"tiny, evicting", nil, CacheOptions{Entries: 20, MaxBytes: 16 * 4096}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cached := newCachedPolicy(engine, tc.opts, tc.hash)
			r := rand.New(rand.NewPCG(18, 2))
			type seen struct {
				in   map[string]any
				want outcomeOf
			}
			var history []seen
			allowed := 0
			check := func(in map[string]any) {
				want := decideOutcome(engine, in)
				if want.res.Allow {
					allowed++
				}
				for range 2 { // a miss, then (when kept) a hit
					if got := decideOutcome(cached, in); !reflect.DeepEqual(got, want) {
						t.Fatalf("input %v\ncached %+v\nengine %+v", in, got, want)
					}
				}
				history = append(history, seen{in, want})
			}
			for range n {
				switch {
				case len(history) > 0 && r.IntN(3) == 0: // one leaf away from an input already cached
					prev := history[r.IntN(len(history))]
					in := deepCopyInput(t, prev.in)
					for string(encodeCanonical(t, in)) == string(encodeCanonical(t, prev.in)) { // a member re-added as it was
						in = mutateLeaf(r, in).(map[string]any)
					}
					check(in)
				case len(history) > 0 && r.IntN(3) == 0: // asked again, after others
					prev := history[r.IntN(len(history))]
					if got := decideOutcome(cached, prev.in); !reflect.DeepEqual(got, prev.want) {
						t.Fatalf("input %v asked again\ncached %+v\nengine %+v", prev.in, got, prev.want)
					}
				default:
					check(genPolicyInput(r))
				}
			}
			s := cached.Stats()
			t.Logf("%+v, %d entries, %d inputs allowed", s, cached.len(), allowed)
			if s.Hits == 0 || s.Misses == 0 || s.Bypasses != 0 || allowed == 0 {
				t.Fatalf("stats %+v: want hits and misses, no bypass (every generated input has a canonical encoding)", s)
			}
		})
	}
}

// TestHashCollisionIsAMissNeverAnotherInputsDecision: with a hash that sends every input to one slot, the
// stored bytes are compared and the other input is evaluated, never answered with the first one's decision.
func TestHashCollisionIsAMissNeverAnotherInputsDecision(t *testing.T) {
	engine := &countingPolicy{Engine: tinyEngine(t, allowsA)}
	cached := newCachedPolicy(engine, CacheOptions{Entries: 100, MaxBytes: 1 << 20}, func([]byte) uint64 { return 0 })
	a, b := map[string]any{"x": "a"}, map[string]any{"x": "b"}
	for i, step := range []struct {
		in    map[string]any
		allow bool
		calls int
	}{{a, true, 1}, {a, true, 1}, {b, false, 2}, {b, false, 2}, {a, true, 3}} {
		got, err := cached.Decide(context.Background(), step.in)
		if err != nil || got.Allow != step.allow || engine.calls != step.calls {
			t.Fatalf("step %d (%v): allow %v %v, %d evaluations; want allow %v after %d", i, step.in, got.Allow, err, engine.calls, step.allow, step.calls)
		}
	}
}

// TestAPolicyReloadDropsTheCacheAtOnce: the first request after a reload is evaluated by the new set, and so
// is one after reloading the same set (a new load number: nothing of the old one is kept).
func TestAPolicyReloadDropsTheCacheAtOnce(t *testing.T) {
	engine := &countingPolicy{Engine: tinyEngine(t, allowsA)}
	cached := newCachedPolicy(engine, CacheOptions{Entries: 100, MaxBytes: 1 << 20}, nil)
	in := map[string]any{"x": "a"}
	first, _ := cached.Decide(context.Background(), in)
	if again, _ := cached.Decide(context.Background(), in); !again.Allow || engine.calls != 1 || cached.len() != 1 {
		t.Fatalf("before the reload: %+v after %d evaluations, %d entries", again, engine.calls, cached.len())
	}
	if err := engine.Load(context.Background(), refusesAll); err != nil {
		t.Fatal(err)
	}
	got, err := cached.Decide(context.Background(), in)
	if err != nil || got.Allow || got.Reasons[0] != "set_b" || got.Revision != engine.Revision() || got.Revision == first.Revision {
		t.Fatalf("first request after the reload: %+v %v (revision before %s)", got, err, first.Revision)
	}
	if err := engine.Load(context.Background(), allowsA); err != nil {
		t.Fatal(err)
	}
	calls := engine.calls
	got, _ = cached.Decide(context.Background(), in)
	if !got.Allow || engine.calls != calls+1 || got.Revision != first.Revision {
		t.Fatalf("after reloading the first set: %+v, %d evaluations (want %d)", got, engine.calls, calls+1)
	}
}

// TestPolicySetsThatReadTheClockAreNotCached: time.now_ns makes a decision depend on more than its input.
func TestPolicySetsThatReadTheClockAreNotCached(t *testing.T) {
	if v := realEngine(t).Version(); !v.Pure {
		t.Fatal("the embedded policy set should be pure: it calls no clock, network or random built-in")
	}
	engine := &countingPolicy{Engine: tinyEngine(t, readsTheClock)}
	if engine.Version().Pure {
		t.Fatal("a set calling time.now_ns reported pure")
	}
	cached := newCachedPolicy(engine, CacheOptions{Entries: 100, MaxBytes: 1 << 20}, nil)
	a, _ := cached.Decide(context.Background(), map[string]any{})
	time.Sleep(time.Millisecond)
	b, _ := cached.Decide(context.Background(), map[string]any{})
	if engine.calls != 2 || a.Reasons[0] == b.Reasons[0] || cached.Stats().Bypasses != 2 {
		t.Fatalf("%d evaluations, %v then %v, %+v", engine.calls, a.Reasons, b.Reasons, cached.Stats())
	}
}

// TestCallersCannotChangeACachedDecision: what a hit returns is the caller's to change; the next hit is as the
// engine decided.
func TestCallersCannotChangeACachedDecision(t *testing.T) {
	engine := realEngine(t)
	cached := newCachedPolicy(engine, CacheOptions{Entries: 100, MaxBytes: 1 << 20}, nil)
	in := withRegistry(policyInput("patient-access", &token.Identity{ClientID: "patient-app", Subject: "u1", Patient: "member-01",
		Scopes: []string{"launch/patient", "patient/*.rs", "patient/Observation.rs?category=laboratory"}},
		genRequestOf(t, "GET", "/Observation", "category=laboratory")), &Decision{})
	want, err := engine.Decide(context.Background(), in)
	if err != nil || !want.Allow || want.Obligations.Compartment == nil || len(want.Obligations.ResourceTypes) == 0 {
		t.Fatalf("engine: %+v %v", want, err)
	}
	for i := range 3 {
		got, err := cached.Decide(context.Background(), in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: %+v %v, want %+v", i, got, err, want)
		}
		scribble(&got)
	}
}

// scribble changes everything a Result refers to.
func scribble(r *policy.Result) {
	r.Reasons = append(r.Reasons[:0:0], "scribbled")
	for i := range r.Reasons {
		r.Reasons[i] = "scribbled"
	}
	o := &r.Obligations
	if o.Compartment != nil {
		o.Compartment.Patient = "member-99"
		o.Compartment.Patients = append(o.Compartment.Patients, "member-99")
	}
	for i := range o.Narrow {
		o.Narrow[i].Value = "member-99"
	}
	for i := range o.PublicTypes {
		o.PublicTypes[i] = "Patient"
	}
	for t, cs := range o.ResourceTypes {
		for p := range cs {
			cs[p] = append(cs[p][:0], "scribbled")
		}
		cs["scribbled"] = []string{"x"}
		o.ResourceTypes[t] = cs
	}
	o.ResourceTypes["Everything"] = policy.Constraints{}
}

func genRequestOf(t testing.TB, method, path, query string) fhir.Request {
	t.Helper()
	req, err := fhir.Classify(method, path, query, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestCloneResultSharesNothing walks a Result with every reference field set and its clone side by side: no
// slice, map or pointer of one is the other's, and the two are deeply equal (nil and empty kept apart).
func TestCloneResultSharesNothing(t *testing.T) {
	full := policy.Result{Allow: true, Status: 200, Reasons: make([]string, 1, 8), Details: "d", Revision: "r",
		Obligations: policy.Obligations{Compartment: &policy.Compartment{Patient: "p", Patients: []string{"a"}, Provider: "o", Payer: "y"},
			Narrow: []policy.Narrow{{Param: "patient", Value: "p"}}, DataScope: "ds", RateClass: "rc",
			ResourceTypes: map[string]policy.Constraints{"*": {}, "Observation": {"category": {"laboratory"}}, "Nil": nil},
			PublicTypes:   []string{}, Adapter: "ad"}}
	// Every field must be set, so that a field added to Result later is in this test too.
	var unset func(reflect.Value, string)
	unset = func(v reflect.Value, path string) {
		for i := range v.NumField() {
			f, name := v.Field(i), path+"."+v.Type().Field(i).Name
			if f.IsZero() && f.Kind() != reflect.Slice {
				t.Errorf("%s is not set: set it in this test", name)
			}
			if f.Kind() == reflect.Struct {
				unset(f, name)
			}
		}
	}
	unset(reflect.ValueOf(full), "Result")
	for _, r := range []policy.Result{full, {}, {Reasons: []string{}, Obligations: policy.Obligations{Narrow: []policy.Narrow{}, ResourceTypes: map[string]policy.Constraints{}}}} {
		c := cloneResult(r)
		if !reflect.DeepEqual(c, r) {
			t.Fatalf("clone %+v differs from %+v", c, r)
		}
		if shared := sharedMemory(reflect.ValueOf(r), reflect.ValueOf(c), "Result"); shared != "" {
			t.Errorf("the clone shares %s", shared)
		}
	}
}

// sharedMemory names the first slice, map or pointer a and b share.
func sharedMemory(a, b reflect.Value, path string) string {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		return sharedMemory(a.Elem(), b.Elem(), path)
	case reflect.Slice:
		if a.IsNil() || a.Cap() == 0 {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		for i := range a.Len() {
			if s := sharedMemory(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i)); s != "" {
				return s
			}
		}
	case reflect.Map:
		if a.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		for _, k := range a.MapKeys() {
			if s := sharedMemory(a.MapIndex(k), b.MapIndex(k), fmt.Sprintf("%s[%v]", path, k)); s != "" {
				return s
			}
		}
	case reflect.Struct:
		for i := range a.NumField() {
			if s := sharedMemory(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); s != "" {
				return s
			}
		}
	case reflect.Interface, reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return path + " (a kind cloneResult does not copy)"
	}
	return ""
}

// TestCacheStaysWithinItsBounds: entries and bytes.
func TestCacheStaysWithinItsBounds(t *testing.T) {
	engine := tinyEngine(t, allowsA)
	for _, opts := range []CacheOptions{{Entries: 50, MaxBytes: 1 << 20}, {Entries: 100000, MaxBytes: 64 << 10}} {
		cached := newCachedPolicy(engine, opts, nil)
		for i := range 3000 {
			if _, err := cached.Decide(context.Background(), map[string]any{"x": fmt.Sprint("input-", i)}); err != nil {
				t.Fatal(err)
			}
		}
		g := cached.gen.Load()
		entries, bytes := 0, 0
		for i := range g.shards {
			entries += len(g.shards[i].m)
			bytes += g.shards[i].bytes
		}
		if limit := cached.shardLimits(); entries > limit.entries*cacheShards || bytes > opts.MaxBytes || entries == 0 {
			t.Errorf("%+v: %d entries, %d bytes", opts, entries, bytes)
		}
	}
}

// TestDryRunCandidateIsEvaluatedOnEveryRequestWhileTheEnforcedSetIsCached: the candidate's verdicts are never
// taken from the cache (it is not wrapped), so disagreements are logged for every request.
func TestDryRunCandidateIsEvaluatedOnEveryRequestWhileTheEnforcedSetIsCached(t *testing.T) {
	c, _, _ := newRegistryCore(fakeRealmRegistry())
	enforced := &countingPolicy{Engine: realEngine(t)}
	c.Policy = newCachedPolicy(enforced, CacheOptions{Entries: 100, MaxBytes: 1 << 20}, nil)
	candidate := &fakeRecordingPolicy{}
	calls := 0
	c.DryRun = countingCandidate{candidate, &calls}
	c.Compartment = fakeOwnCompartment{}
	for range 3 {
		d := c.Decide(context.Background(), Input{API: "patient-access", Method: "GET", Path: "/ExplanationOfBenefit",
			RawQuery: "patient=member-01", Authorization: []string{"Bearer patient-app"}})
		if !d.Allow {
			t.Fatalf("refused: %v", d.Reasons)
		}
	}
	if enforced.calls != 1 || calls != 3 {
		t.Fatalf("enforced set evaluated %d times (want 1), candidate %d (want 3)", enforced.calls, calls)
	}
}

type countingCandidate struct {
	*fakeRecordingPolicy
	calls *int
}

func (c countingCandidate) Decide(ctx context.Context, in any) (policy.Result, error) {
	*c.calls++
	return c.fakeRecordingPolicy.Decide(ctx, in)
}

func TestNoEntriesMeansNoCache(t *testing.T) {
	engine := tinyEngine(t, allowsA)
	if p := NewCachedPolicy(engine, CacheOptions{}); p != Policy(engine) {
		t.Fatalf("got %T, want the engine itself", p)
	}
}

// BenchmarkCachedPolicy is the cache's own cost around the embedded set: a hit, and a miss (evaluation, plus
// the encoding and the insertion).
//
//	go test -run '^$' -bench CachedPolicy -benchmem ./internal/decision
func BenchmarkCachedPolicy(b *testing.B) {
	engine := realEngine(b)
	input := func(i int) map[string]any {
		return withRegistry(policyInput("patient-access", &token.Identity{ClientID: "patient-app", Subject: "u1", Patient: "member-01",
			Scopes: []string{"launch/patient", "patient/*.rs"}},
			genRequestOf(b, "GET", "/ExplanationOfBenefit", fmt.Sprintf("_count=10&status=active&identifier=%d", i))), &Decision{})
	}
	b.Run("hit", func(b *testing.B) {
		cached := NewCachedPolicy(engine, CacheOptions{Entries: 10000, MaxBytes: 32 << 20})
		in := input(0)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cached.Decide(context.Background(), in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		cached := NewCachedPolicy(engine, CacheOptions{Entries: 10000, MaxBytes: 32 << 20})
		inputs := make([]map[string]any, 4096)
		for i := range inputs {
			inputs[i] = input(i)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := cached.Decide(context.Background(), inputs[i%len(inputs)]); err != nil {
				b.Fatal(err)
			}
			i++
			if i%len(inputs) == 0 {
				b.StopTimer()
				cached = NewCachedPolicy(engine, CacheOptions{Entries: 10000, MaxBytes: 32 << 20})
				b.StartTimer()
			}
		}
	})
	b.Run("engine", func(b *testing.B) {
		in := input(0)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := engine.Decide(context.Background(), in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// compartmentByID is a fake compartment check: resources whose id ends in 01 are the member's.
type compartmentByID struct{}

func (compartmentByID) Matches(_ context.Context, _, id string, _ []policy.Narrow) (bool, error) {
	return strings.HasSuffix(id, "01"), nil
}

// decisionView is what a decision says, without its id and time.
type decisionView struct {
	Allow          bool
	Status         int
	Reasons        []string
	Identity       *token.Identity
	Request        fhir.Request
	Policy         policy.Result
	UpstreamQuery  string
	Shape          Shape
	UpstreamAccept string
	Client         *Client
	DroppedScopes  []string
	Members        *membership
}

func viewOf(d *Decision) decisionView {
	m := d.members
	if m != nil { // the opt-ins come from a map: the list's order is not the decision's
		c := *m
		c.list = NewAttributionList(m.list.GroupID, slices.Sorted(slices.Values(m.list.Patients)))
		m = &c
	}
	return decisionView{d.Allow, d.Refusal.Status, d.Reasons, d.Identity, d.Request, d.Policy, d.UpstreamQuery, d.Shape,
		d.UpstreamAccept, d.Client, d.DroppedScopes, m}
}

// TestCoreDecidesAlikeWithAndWithoutTheCache: two cores that differ only in the cache, asked the same random
// requests (every API, tokens of random clients and scopes, registry states that change under them, facts
// from attribution, consent, opt-ins, pages and jobs), answer every one alike, again and again.
func TestCoreDecidesAlikeWithAndWithoutTheCache(t *testing.T) {
	engine := realEngine(t)
	r := rand.New(rand.NewPCG(18, 18))
	tokens := fakeTokens{}
	reg := &fakeRegistry{clients: map[string]Client{}}
	most := func(xs []string) []string { // each with probability 3/4
		var out []string
		for _, x := range xs {
			if r.IntN(4) > 0 {
				out = append(out, x)
			}
		}
		return out
	}
	randomClient := func(id string) Client {
		return Client{ID: id, Name: "App " + id, Active: r.IntN(8) > 0, APIs: most(genAPIs),
			Scopes: most(genScopes), Tier: pick(r, []string{"standard", "backend"}), Org: pick(r, genOrgs[:3])}
	}
	for _, id := range genClients {
		reg.clients[id] = randomClient(id)
	}
	// Tokens as the realm issues them (a member's app, a provider, another payer), and random ones.
	profiles := []token.Identity{
		{ClientID: "patient-app", Subject: "u1", Patient: "member-01", Scopes: []string{"launch/patient", "patient/*.rs"}},
		{ClientID: "patient-app", Subject: "u2", Patient: "member-02", Scopes: []string{"patient/ExplanationOfBenefit.rs", "patient/Observation.rs?category=laboratory"}},
		{ClientID: "provider-org-a", Subject: "svc", Org: "Organization/org-a", Scopes: []string{"system/*.rs"}},
		{ClientID: "provider-org-a", Subject: "dr", FHIRUser: "Practitioner/pr-1", Scopes: []string{"user/*.rs"}},
		{ClientID: "payer-b", Subject: "svc", Org: "Organization/payer-b", Scopes: []string{"system/*.rs", "system/*.read"}},
		{ClientID: "pas-client", Subject: "svc", Org: "Organization/org-a", Scopes: []string{"system/Claim.c", "system/*.rs"}},
	}
	for i := range 40 {
		if i < 2*len(profiles) {
			tokens[fmt.Sprint("tok-", i)] = profiles[i%len(profiles)]
			continue
		}
		tokens[fmt.Sprint("tok-", i)] = token.Identity{ClientID: pick(r, genClients), Subject: pick(r, []string{"u1", "u2", "svc"}),
			Patient: pick(r, genPatients), FHIRUser: pick(r, genUsers), Org: pick(r, genOrgs), Scopes: subset(r, genScopes)}
	}
	newCore := func(p Policy) *Core {
		c, _, _ := newRegistryCore(reg)
		c.Tokens, c.Policy, c.Compartment = tokens, p, compartmentByID{}
		c.Attribution = &fakeAttribution{lists: map[string]AttributionList{
			"Organization/org-a": NewAttributionList("attribution-org-a", []string{"member-01", "member-02"})}}
		c.Consent = &fakeConsent{out: map[string]bool{"member-02": true}}
		c.OptIns = &fakeOptIns{in: map[string]OptIn{"member-01": {Sensitive: true}, "member-02": {}}}
		c.Pages = &InMemoryPages{}
		c.Jobs = NewInMemoryJobs(0, nil)
		return c
	}
	direct := newCore(engine)
	cachedPolicy := newCachedPolicy(engine, CacheOptions{Entries: 10000, MaxBytes: 32 << 20}, nil)
	cached := newCore(cachedPolicy)
	ctx := context.Background()
	for _, c := range []*Core{direct, cached} { // a page and a job bound to one caller, for the paging and export facts
		_ = c.Pages.Bind(ctx, "abc", pageOwner(&token.Identity{ClientID: "patient-app", Subject: "u1", Patient: "member-01"}), time.Hour)
		_ = c.Jobs.Bind(ctx, ExportRef{ExportJob, "j1"}, "provider-org-a", time.Hour)
	}
	randomInput := func() Input {
		method := pick(r, genMethods)
		q := subset(r, genParams)
		if len(q) > 2 && r.IntN(2) == 0 {
			q = q[:1] // a search of one parameter, more often allowed
		}
		in := Input{API: pick(r, genAPIs), Method: method, Path: pick(r, genPaths), RawQuery: strings.Join(q, "&")}
		if r.IntN(8) > 0 {
			in.Authorization = []string{fmt.Sprint("Bearer tok-", r.IntN(len(tokens)+2))}
		}
		header := http.Header{}
		if method == "POST" || method == "PUT" {
			header.Set("Content-Type", "application/fhir+json")
			in.Body = []byte(pick(r, []string{`{"resourceType":"Patient","id":"member-01"}`,
				`{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/member-02"}}`,
				`{"resourceType":"Parameters","parameter":[]}`}))
		}
		if r.IntN(4) == 0 {
			header.Set("Prefer", "respond-async")
		}
		in.Header = header.Values
		return in
	}
	n := 3000
	if testing.Short() {
		n = 500
	}
	var asked []Input
	allowed := 0
	for i := range n {
		if i%150 == 149 { // the registry changes under both: a client deactivated, re-enabled, its scopes changed
			id := pick(r, genClients)
			reg.clients[id] = randomClient(id)
		}
		in := randomInput()
		if len(asked) > 0 && r.IntN(2) == 0 {
			in = asked[r.IntN(len(asked))]
		}
		asked = append(asked, in)
		want := viewOf(direct.Decide(ctx, in))
		for range 2 {
			if got := viewOf(cached.Decide(ctx, in)); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s %s %s?%s %v\ncached %+v\ndirect %+v", in.API, in.Method, in.Path, in.RawQuery, in.Authorization, got, want)
			}
		}
		if want.Allow {
			allowed++
		}
	}
	s := cachedPolicy.Stats()
	t.Logf("%d requests, %d allowed; cache %+v", n, allowed, s)
	if s.Hits == 0 || allowed == 0 {
		t.Fatalf("the test did not exercise the cache: %+v, %d allowed", s, allowed)
	}
}

// TestConcurrentRequestsAndReloadsNeverMixSets: requests from several goroutines while the set is reloaded
// back and forth; every answer is the one its named revision gives (run with -race).
func TestConcurrentRequestsAndReloadsNeverMixSets(t *testing.T) {
	engine := tinyEngine(t, allowsA)
	revA := engine.Revision()
	cached := newCachedPolicy(engine, CacheOptions{Entries: 64, MaxBytes: 1 << 20}, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				x := []string{"a", "b", fmt.Sprint(w, i%7)}[i%3]
				got, err := cached.Decide(context.Background(), map[string]any{"x": x})
				ok := err == nil
				switch {
				case !ok:
				case got.Revision == revA:
					ok = got.Allow == (x == "a") && (x != "a" || got.Obligations.Narrow[0].Value == "a")
				default:
					ok = !got.Allow && got.Reasons[0] == "set_b"
				}
				if !ok {
					errs <- fmt.Errorf("x=%s: %+v %v", x, got, err)
					return
				}
			}
		}()
	}
	for i := range 40 {
		set := fs.FS(refusesAll)
		if i%2 == 1 {
			set = allowsA
		}
		if err := engine.Load(context.Background(), set); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%+v", cached.Stats())
}
