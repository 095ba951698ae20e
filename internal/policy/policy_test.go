package policy

import (
	"context"
	"errors"
	"testing"
	"testing/fstest"

	"github.com/fhirwall/fhirwall/policies"
)

func member01Input(req map[string]any) map[string]any {
	return map[string]any{"api": "patient-access", "authenticated": true,
		"identity": map[string]any{"client_id": "patient-app", "patient": "member-01",
			"scopes": []any{map[string]any{"context": "patient", "resource_type": "*", "permissions": map[string]any{"r": true, "s": true}}}},
		"request": req}
}

func TestEmbeddedPolicyNarrowsPatientSearch(t *testing.T) {
	e, err := New(context.Background(), policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.Decide(context.Background(), member01Input(map[string]any{"interaction": "search-type", "resource_type": "ExplanationOfBenefit", "params": map[string]any{}}))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Allow || r.Obligations.Narrow == nil || r.Obligations.Narrow.Value != "member-01" || r.Revision == "" {
		t.Fatalf("got %+v", r)
	}
}

func TestPolicyWithoutDecisionFailsClosed(t *testing.T) {
	fsys := fstest.MapFS{"authz.rego": {Data: []byte("package fhirwall.authz\nimport rego.v1\ndecision := {\"allow\": true} if false\n")}}
	e, err := New(context.Background(), fsys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Decide(context.Background(), map[string]any{}); !errors.Is(err, ErrEvaluation) {
		t.Fatalf("want ErrEvaluation, got %v", err)
	}
}

func TestBrokenPolicyKeepsTheOldOne(t *testing.T) {
	e, err := New(context.Background(), policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	rev := e.Revision()
	if err := e.Load(context.Background(), fstest.MapFS{"x.rego": {Data: []byte("package x\n this is not rego")}}); err == nil {
		t.Fatal("broken policy accepted")
	}
	if e.Revision() != rev {
		t.Fatal("revision changed after a failed load")
	}
}

func BenchmarkDecide(b *testing.B) {
	e, err := New(context.Background(), policies.FS)
	if err != nil {
		b.Fatal(err)
	}
	in := member01Input(map[string]any{"interaction": "search-type", "resource_type": "Observation", "params": map[string]any{"patient": []any{"member-01"}}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Decide(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}
