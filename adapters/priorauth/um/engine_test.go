package um_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/fhirwall/fhirwall/adapters/priorauth/um"
)

const engineRules = `
rules:
  - {id: mri, match: {system: cpt, codes: ['70551']}, action: approve}
  - {id: genetic, match: {system: cpt, codes: ['81162', '81163']}, action: refer}
  - {id: chemo, match: {system: hcpcs, pattern: 'J9[0-9]{3}'}, action: refer}
`

// fakeDecider answers every call with res and err, and keeps what it was asked.
type fakeDecider struct {
	res  um.Result
	err  error
	asks []um.Request
}

func (f *fakeDecider) Decide(_ context.Context, r um.Request) (um.Result, error) {
	f.asks = append(f.asks, r)
	return f.res, f.err
}

func newEngine(t *testing.T, remote um.Decider) (*um.Engine, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	e, err := um.NewEngine(mustParse(t, engineRules), remote, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return e, &logs
}

func engineRequest() um.Request {
	return um.Request{ID: "req-7", Patient: "Patient/member-01", Items: []um.Item{
		item(1, um.SystemCPT, "70551"), item(2, um.SystemCPT, "81162"), item(3, um.SystemCPT, "99212"), item(4, um.SystemCPT, "81163"),
	}}
}

// decide runs e and checks what every answer of an Engine must be: no error, one result per item in order,
// never a Referred verdict.
func decide(t *testing.T, e *um.Engine, req um.Request) []um.ItemResult {
	t.Helper()
	res, err := e.Decide(context.Background(), req)
	if err != nil {
		t.Fatalf("Engine.Decide: %v", err)
	}
	if len(res.Items) != len(req.Items) {
		t.Fatalf("%d results for %d items", len(res.Items), len(req.Items))
	}
	for i, it := range res.Items {
		if it.Sequence != req.Items[i].Sequence {
			t.Fatalf("result %d is for item %d, want %d", i, it.Sequence, req.Items[i].Sequence)
		}
		if it.Verdict == um.Referred {
			t.Fatalf("item %d left the engine referred", it.Sequence)
		}
	}
	return res.Items
}

func TestEngineAsksTheUMOnlyAboutReferredItemsInOneCall(t *testing.T) {
	f := newFakeUM(t, func(w http.ResponseWriter, r *http.Request, req um.Request) {
		answerJSON(http.StatusOK, `{"items":[{"sequence":2,"verdict":"approved","rule":"ignored"},
			{"sequence":4,"verdict":"denied","reason":{"system":"https://codesystem.x12.org/external/886","code":"X9","display":"Experimental"}}]}`)(w, r, req)
	})
	e, _ := newEngine(t, newRemote(t, f.srv.URL, time.Second))
	got := decide(t, e, engineRequest())
	want := []struct {
		v    um.Verdict
		rule string
	}{{um.Approved, "mri"}, {um.Approved, um.RuleUM}, {um.NotRequired, ""}, {um.Denied, um.RuleUM}}
	for i, w := range want {
		if got[i].Verdict != w.v || got[i].Rule != w.rule {
			t.Errorf("item %d: %s by %q, want %s by %q", got[i].Sequence, got[i].Verdict, got[i].Rule, w.v, w.rule)
		}
	}
	if r := got[3].Reason; r == nil || r.Code != "X9" {
		t.Errorf("the UM's denial reason was lost: %+v", r)
	}
	asked := f.last.Load()
	if n := f.calls.Load(); n != 1 || asked == nil || asked.ID != "req-7" || len(asked.Items) != 2 || asked.Items[0].Sequence != 2 || asked.Items[1].Sequence != 4 {
		t.Errorf("the UM was called %d times, last with %+v; want once with items 2 and 4", n, asked)
	}
}

func TestEngineNeverAsksTheUMAboutASandboxRequest(t *testing.T) {
	fake := &fakeDecider{err: errors.New("must not be called")}
	e, _ := newEngine(t, fake)
	req := engineRequest()
	req.Sandbox = true
	got := decide(t, e, req)
	if len(fake.asks) != 0 {
		t.Fatalf("the UM was asked about a sandbox request %d times", len(fake.asks))
	}
	if got[0].Verdict != um.Approved || got[1].Verdict != um.Pended || got[1].Rule != um.RuleSandbox || got[3].Rule != um.RuleSandbox {
		t.Fatalf("sandbox items %+v: the rules decide, referred items stay pended", got)
	}
}

func TestEngineWithoutReferredItemsNeverCallsTheUM(t *testing.T) {
	fake := &fakeDecider{err: errors.New("must not be called")}
	e, _ := newEngine(t, fake)
	req := engineRequest()
	req.Items = []um.Item{req.Items[0], req.Items[2]}
	decide(t, e, req)
	if len(fake.asks) != 0 {
		t.Errorf("the UM was asked %d times", len(fake.asks))
	}
}

func TestEnginePendsReferredItemsTheUMDoesNotDecide(t *testing.T) {
	approveAll := um.Result{Items: []um.ItemResult{{Sequence: 2, Verdict: um.Approved}, {Sequence: 4, Verdict: um.Approved}}}
	for _, tc := range []struct {
		name   string
		remote func(t *testing.T) um.Decider
	}{
		{"no UM configured", func(*testing.T) um.Decider { return nil }},
		{"UM answers 500", func(t *testing.T) um.Decider {
			return newRemote(t, newFakeUM(t, answerJSON(http.StatusInternalServerError, "")).srv.URL, time.Second)
		}},
		{"UM times out", func(t *testing.T) um.Decider {
			return newRemote(t, newFakeUM(t, blockUntilGone(nil)).srv.URL, 50*time.Millisecond)
		}},
		{"UM answers an item not asked", func(t *testing.T) um.Decider {
			return newRemote(t, newFakeUM(t, answerJSON(http.StatusOK, `{"items":[{"sequence":2,"verdict":"approved"},{"sequence":4,"verdict":"approved"},{"sequence":1,"verdict":"approved"}]}`)).srv.URL, time.Second)
		}},
		{"another Decider fails", func(*testing.T) um.Decider { return &fakeDecider{err: errors.New("down")} }},
		{"another Decider approves too little", func(*testing.T) um.Decider {
			return &fakeDecider{res: um.Result{Items: approveAll.Items[:1]}}
		}},
		{"another Decider denies without reason", func(*testing.T) um.Decider {
			return &fakeDecider{res: um.Result{Items: []um.ItemResult{{Sequence: 2, Verdict: um.Denied}, {Sequence: 4, Verdict: um.Approved}}}}
		}},
		{"another Decider refers back", func(*testing.T) um.Decider {
			return &fakeDecider{res: um.Result{Items: []um.ItemResult{{Sequence: 2, Verdict: um.Referred}, {Sequence: 4, Verdict: um.Approved}}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, logs := newEngine(t, tc.remote(t))
			got := decide(t, e, engineRequest())
			if got[0].Verdict != um.Approved || got[2].Verdict != um.NotRequired {
				t.Errorf("the rules' own items changed: %+v", got)
			}
			for _, i := range []int{1, 3} {
				if got[i].Verdict != um.Pended || got[i].Rule != um.RuleUMUnavailable || got[i].Reason != nil {
					t.Errorf("item %d: %s by %q, want pended by %q", got[i].Sequence, got[i].Verdict, got[i].Rule, um.RuleUMUnavailable)
				}
			}
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "request=req-7") {
				t.Errorf("no warning naming the request logged:\n%s", logs)
			}
		})
	}
}

func TestEnginePendsWithoutCallingTheUMOnceItsBreakerIsOpen(t *testing.T) {
	f := newFakeUM(t, answerJSON(http.StatusInternalServerError, ""))
	remote := newRemote(t, f.srv.URL, time.Second)
	e, logs := newEngine(t, remote)
	for range 5 {
		decide(t, e, engineRequest())
	}
	if remote.State() != gobreaker.StateOpen {
		t.Fatalf("breaker %v after 5 failed calls, want open", remote.State())
	}
	got := decide(t, e, engineRequest())
	if got[1].Verdict != um.Pended || got[1].Rule != um.RuleUMUnavailable {
		t.Errorf("with the breaker open: %s by %q, want pended", got[1].Verdict, got[1].Rule)
	}
	if n := f.calls.Load(); n != 5 {
		t.Errorf("the UM was called %d times, want 5", n)
	}
	if !strings.Contains(logs.String(), "circuit breaker is open") {
		t.Errorf("the warning does not say the breaker is open:\n%s", logs)
	}
}

func TestEngineKeepsAReferredDrugADrug(t *testing.T) {
	req := um.Request{ID: "req-8", Items: []um.Item{item(1, um.SystemHCPCS, "J9035")}}
	for name, remote := range map[string]um.Decider{
		"UM approves, not saying drug": &fakeDecider{res: um.Result{Items: []um.ItemResult{{Sequence: 1, Verdict: um.Approved}}}},
		"UM down":                      &fakeDecider{err: errors.New("down")},
	} {
		e, _ := newEngine(t, remote)
		if got := decide(t, e, req); !got[0].Drug {
			t.Errorf("%s: %+v lost its drug flag", name, got[0])
		}
	}
	// And the UM can say an item is a drug when the codes do not.
	e, _ := newEngine(t, &fakeDecider{res: um.Result{Items: []um.ItemResult{{Sequence: 2, Verdict: um.Approved, Drug: true}}}})
	if got := decide(t, e, um.Request{Items: []um.Item{item(2, um.SystemCPT, "81162")}}); !got[0].Drug {
		t.Errorf("the UM's drug flag was lost: %+v", got[0])
	}
}

func TestEnginePendsReferredItemsSharingASequence(t *testing.T) {
	fake := &fakeDecider{res: um.Result{Items: []um.ItemResult{{Sequence: 2, Verdict: um.Approved}}}}
	e, _ := newEngine(t, fake)
	got := decide(t, e, um.Request{Items: []um.Item{item(2, um.SystemCPT, "81162"), item(2, um.SystemCPT, "81163")}})
	if got[0].Verdict != um.Pended || got[1].Verdict != um.Pended || len(fake.asks) != 0 {
		t.Errorf("two items with one sequence: %+v, UM asked %d times; want both pended without asking", got, len(fake.asks))
	}
}

func TestNewEngineRefusesMissingDependencies(t *testing.T) {
	rules := mustParse(t, engineRules)
	log := slog.New(slog.DiscardHandler)
	if _, err := um.NewEngine(nil, nil, log); err == nil {
		t.Error("NewEngine without rules accepted")
	}
	if _, err := um.NewEngine(rules, nil, nil); err == nil {
		t.Error("NewEngine without a logger accepted")
	}
	var logs bytes.Buffer
	e, err := um.NewEngine(rules, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || e.Rules() != rules {
		t.Fatalf("NewEngine: %v", err)
	}
	if !strings.Contains(logs.String(), "none is configured") {
		t.Errorf("refer rules without a UM system: no warning at start:\n%s", logs.String())
	}
}
