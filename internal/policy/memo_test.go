package policy

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A set whose answer reads only the identity's scopes and the data: exactly what the memo keeps.
const memoSet = `package fhirwall.authz
import rego.v1
granted(t) := {s.resource_type | some s in input.identity.scopes; s.resource_type in {t, "*"}}
decision := {"allow": true, "status": 200, "reasons": [REASON], "obligations": {"resource_types": {t: {} | some t in ["A", "B"]; count(granted(t)) > 0}}}
`

func memoFS(reason string) fstest.MapFS {
	return fstest.MapFS{"authz.rego": {Data: []byte(strings.ReplaceAll(memoSet, "REASON", `"`+reason+`"`))}}
}

func scopesInput(types ...string) map[string]any {
	scopes := []any{}
	for _, t := range types {
		scopes = append(scopes, map[string]any{"resource_type": t})
	}
	return map[string]any{"identity": map[string]any{"scopes": scopes}}
}

// TestReloadDropsTheMemo: the first evaluation after a reload is the new set's, never a value the old set kept.
func TestReloadDropsTheMemo(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, memoFS("first"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r, err := e.Decide(ctx, scopesInput("A")); err != nil || r.Reasons[0] != "first" {
			t.Fatalf("%+v %v", r, err)
		}
	}
	if e.current.Load().memo.hits.Load() == 0 {
		t.Fatal("the memo never answered: this test proves nothing")
	}
	if err := e.Load(ctx, memoFS("second")); err != nil {
		t.Fatal(err)
	}
	if r, err := e.Decide(ctx, scopesInput("A")); err != nil || r.Reasons[0] != "second" {
		t.Fatalf("after reload: %+v %v", r, err)
	}
}

// TestMemoKeysOnWhatTheRuleReads: two inputs that differ only in the scopes never share an answer, and a rule
// reading the whole input (`input` as a value) is never memoized.
func TestMemoKeysOnWhatTheRuleReads(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, memoFS("r"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		a, _ := e.Decide(ctx, scopesInput("A"))
		b, _ := e.Decide(ctx, scopesInput("B"))
		star, _ := e.Decide(ctx, scopesInput("*"))
		if _, ok := a.Obligations.ResourceTypes["B"]; ok || len(a.Obligations.ResourceTypes) != 1 {
			t.Fatalf("A: %+v", a.Obligations)
		}
		if _, ok := b.Obligations.ResourceTypes["A"]; ok || len(b.Obligations.ResourceTypes) != 1 {
			t.Fatalf("B: %+v", b.Obligations)
		}
		if len(star.Obligations.ResourceTypes) != 2 {
			t.Fatalf("*: %+v", star.Obligations)
		}
	}
	whole := fstest.MapFS{"authz.rego": {Data: []byte(`package fhirwall.authz
import rego.v1
seen := object.get(input, "n", 0)
decision := {"allow": true, "status": 200, "reasons": [sprintf("%v", [seen])], "obligations": {}}
`)}}
	if err := e.Load(ctx, whole); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		r, err := e.Decide(ctx, map[string]any{"n": i})
		if err != nil || r.Reasons[0] != []string{"0", "1", "2"}[i] {
			t.Fatalf("%d: %+v %v", i, r, err)
		}
	}
	if r := e.current.Load().memo.plan.lookup(ast.MustParseRef("data.fhirwall.authz.seen")); r != nil {
		t.Fatalf("a rule reading the whole input is memoizable: %+v", r)
	}
}

// TestMemoUnderConcurrentDecisions: decisions from many goroutines share the memo (run with -race).
func TestMemoUnderConcurrentDecisions(t *testing.T) {
	p := newEnginePair(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := newInputGen(uint64(100+w%2), p.data) // two pairs of goroutines draw the same inputs
			for i := 0; i < 300; {
				if in, ok := g.input(); ok {
					i++
					if !p.decideAlike(t, in) {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// TestMemoFollowsInputAliases: through `req := input.request`, a rule reading req.kind is keyed on
// input.request.kind alone, and answers for each kind its own.
func TestMemoFollowsInputAliases(t *testing.T) {
	ctx := context.Background()
	set := fstest.MapFS{"authz.rego": {Data: []byte(`package fhirwall.authz
import rego.v1
req := input.request
kind := req.kind
decision := {"allow": true, "status": 200, "reasons": [kind], "obligations": {}}
`)}}
	e, err := New(ctx, set, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := e.current.Load().memo.plan.lookup(ast.MustParseRef("data.fhirwall.authz.kind")); r == nil || len(r.input) != 1 || r.input[0].String() != `request.kind` {
		t.Fatalf("kind reads %+v, want input.request.kind", r)
	}
	for i := range 6 {
		kind := []string{"a", "b"}[i%2]
		r, err := e.Decide(ctx, map[string]any{"request": map[string]any{"kind": kind, "other": []any{string(rune('p' + i))}}})
		if err != nil || r.Reasons[0] != kind {
			t.Fatalf("%d: %+v %v", i, r, err)
		}
	}
	if e.current.Load().memo.hits.Load() == 0 {
		t.Fatal("the memo never answered")
	}
}
