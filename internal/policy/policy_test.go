package policy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/fhirwall/fhirwall/policies"
)

var testData = map[string]any{"apis": map[string]any{"patient-access": map[string]any{"resources": map[string]any{
	"ExplanationOfBenefit": map[string]any{"search_params": []any{"patient", "type"}},
	"Observation":          map[string]any{"search_params": []any{"patient", "category"}},
}}}}

func member01Input(req map[string]any) map[string]any {
	return map[string]any{"api": "patient-access", "authenticated": true,
		"identity": map[string]any{"client_id": "patient-app", "patient": "member-01",
			"scopes": []any{map[string]any{"context": "patient", "resource_type": "*", "permissions": map[string]any{"r": true, "s": true}}}},
		"request": req}
}

func TestEmbeddedPolicyNarrowsPatientSearch(t *testing.T) {
	e, err := New(context.Background(), policies.FS, testData)
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.Decide(context.Background(), member01Input(map[string]any{"interaction": "search-type", "resource_type": "ExplanationOfBenefit", "params": []any{}, "patient_params": []any{"patient", "payee"}}))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Allow || len(r.Obligations.Narrow) != 1 || r.Obligations.Narrow[0] != (Narrow{"patient", "member-01"}) || r.Revision == "" {
		t.Fatalf("got %+v", r)
	}
}

func TestPolicyWithoutDecisionFailsClosed(t *testing.T) {
	fsys := fstest.MapFS{"authz.rego": {Data: []byte("package fhirwall.authz\nimport rego.v1\ndecision := {\"allow\": true} if false\n")}}
	e, err := New(context.Background(), fsys, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Decide(context.Background(), map[string]any{}); !errors.Is(err, ErrEvaluation) {
		t.Fatalf("want ErrEvaluation, got %v", err)
	}
}

func TestConfigDataChangesTheRevision(t *testing.T) {
	a, err := New(context.Background(), policies.FS, testData)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(context.Background(), policies.FS, map[string]any{"apis": map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Revision() == b.Revision() {
		t.Fatal("the same revision for different configuration data")
	}
}

func TestBrokenPolicyKeepsTheOldOne(t *testing.T) {
	e, err := New(context.Background(), policies.FS, testData)
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
	e, err := New(context.Background(), policies.FS, testData)
	if err != nil {
		b.Fatal(err)
	}
	in := member01Input(map[string]any{"interaction": "search-type", "resource_type": "Observation", "patient_params": []any{"subject", "performer"},
		"params": []any{map[string]any{"key": "patient", "name": "patient", "modifier": "", "target_type": "", "chain": []any{}, "values": []any{"member-01"}}}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Decide(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}

func TestWatchSwapsInAnEditedPolicyAndKeepsTheOldOnError(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) {
		if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("package fhirwall.authz\nimport rego.v1\ndecision := {\"allow\": false, \"status\": 403, \"reasons\": [\"v1\"]}\n")
	e, err := New(context.Background(), os.DirFS(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.Watch(ctx, dir, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	reasonSoon := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			r, err := e.Decide(context.Background(), map[string]any{})
			if err == nil && len(r.Reasons) == 1 && r.Reasons[0] == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("policy never answered %q (last %+v, %v)", want, r, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	write("package fhirwall.authz\nimport rego.v1\ndecision := {\"allow\": false, \"status\": 403, \"reasons\": [\"v2\"]}\n")
	reasonSoon("v2")
	rev := e.Revision()
	write("package fhirwall.authz\nthis does not compile\n")
	time.Sleep(500 * time.Millisecond)
	reasonSoon("v2")
	if e.Revision() != rev {
		t.Fatal("a broken edit replaced the policy set")
	}
}

// TestVersionNumbersEveryLoadAndSaysWhetherTheSetIsPure: a decision cache keys on Version, so a reload of the
// very same files is a new load, and a set that reads the clock, the network or randomness is not pure.
func TestVersionNumbersEveryLoadAndSaysWhetherTheSetIsPure(t *testing.T) {
	e, err := New(context.Background(), policies.FS, testData)
	if err != nil {
		t.Fatal(err)
	}
	v1 := e.Version()
	if !v1.Pure || v1.Load != 1 || v1.Revision != e.Revision() {
		t.Fatalf("embedded set: %+v", v1)
	}
	if err := e.Load(context.Background(), policies.FS); err != nil {
		t.Fatal(err)
	}
	if v2 := e.Version(); v2.Revision != v1.Revision || v2.Load != 2 || !v2.Pure {
		t.Fatalf("reloaded: %+v after %+v", v2, v1)
	}
	for call, pure := range map[string]bool{
		`time.now_ns()`:      false,
		`rand.intn("x", 10)`: false,
		`count(http.send({"method": "GET", "url": "http://127.0.0.1:1"}))`: false,
		`count(crypto.x509.parse_and_verify_certificates(input.pem))`:      false,
		`count(uuid.rfc4122("x"))`:                                         false,
		`count(opa.runtime())`:                                             false,
		`time.parse_rfc3339_ns("2026-01-01T00:00:00Z")`:                    true,
		`count(split(input.x, ","))`:                                       true,
	} {
		src := "package fhirwall.authz\ndecision := {\"allow\": false, \"status\": 403, \"reasons\": [sprintf(\"%v\", [" + call + "])]}\n"
		if err := e.Load(context.Background(), fstest.MapFS{"p.rego": {Data: []byte(src)}}); err != nil {
			t.Fatalf("%s: %v", call, err)
		}
		if e.Version().Pure != pure {
			t.Errorf("%s: pure %v, want %v", call, e.Version().Pure, pure)
		}
	}
}
