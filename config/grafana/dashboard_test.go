package grafana

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/fhirwall/fhirwall/internal/metrics"
)

const file = "fhirwall-dashboard.json"

func checkedIn(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckedInDashboardIsTheGeneratorsOutput(t *testing.T) {
	want, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(checkedIn(t), want) {
		t.Fatalf("%s is stale: run go generate ./config/grafana", file)
	}
}

func TestDashboardUnmarshalsStrictlyIntoTheSDKType(t *testing.T) {
	// Panels and queries decode by their plugin's own strict types once the plugins are registered (the
	// SDK's runtime is process-wide; this test is its only user).
	plugins.RegisterDefaultPlugins()
	var d dashboard.Dashboard
	// UnmarshalJSONStrict returns its error list as an error even when it is empty (a typed nil).
	if err := d.UnmarshalJSONStrict(checkedIn(t)); err != nil {
		if errs, ok := err.(cog.BuildErrors); !ok || len(errs) > 0 {
			t.Fatal(err)
		}
	}
	if len(d.Panels) == 0 {
		t.Fatal("no panels decoded")
	}
	if d.Uid == nil || *d.Uid != UID {
		t.Fatalf("uid %v, want %s", d.Uid, UID)
	}
}

// selector is a metric name right before its label matchers; every query here names its metrics that way.
var selector = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{`)

func TestEveryQueryNamesOnlyFhirwallOrEnvoyMetrics(t *testing.T) {
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(checkedIn(t), &d); err != nil {
		t.Fatal(err)
	}
	exprs := 0
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			exprs++
			// A bare metric without label matchers would escape the selector pattern; every query has one.
			withBraces := strings.ReplaceAll(q.Expr, "fhirwall_audit_writes_in_flight)", "fhirwall_audit_writes_in_flight{})")
			withBraces = strings.ReplaceAll(withBraces, "fhirwall_circuit_breaker_state)", "fhirwall_circuit_breaker_state{})")
			withBraces = strings.ReplaceAll(withBraces, "fhirwall_audit_write_failures_total[", "fhirwall_audit_write_failures_total{}[")
			names := selector.FindAllStringSubmatch(withBraces, -1)
			if len(names) == 0 {
				t.Errorf("%s: %q names no metric", p.Title, q.Expr)
			}
			for _, m := range names {
				if !known(m[1]) {
					t.Errorf("%s: %q names %s, which internal/metrics does not register and Envoy does not export", p.Title, q.Expr, m[1])
				}
			}
		}
	}
	if exprs == 0 {
		t.Fatal("no queries found")
	}
}

func known(name string) bool {
	if strings.HasPrefix(name, "envoy_") {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(metrics.Names, base) {
			return true
		}
	}
	return slices.Contains(metrics.Names, name)
}
