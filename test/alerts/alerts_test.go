// The chart is rendered with helm, the PrometheusRule's spec.groups is written out as a rules file, and
// promtool (built from the Prometheus module, test/tools/prometheus) checks it and runs the unit tests in
// testdata/*.test.yaml against it. A further check makes sure every alert of every API has a case where it
// fires and one where it does not, and every recording rule is tested.
//
//	bash test/tools/helm/build.sh && bash test/tools/prometheus/build.sh && go test ./test/alerts
package alerts

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/require"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller: no file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// tool is .fhirwall/bin/NAME, or the test stops (require.Missing) with how to build it.
func tool(t *testing.T, name, build string) string {
	t.Helper()
	bin := filepath.Join(repoRoot(t), ".fhirwall", "bin", name)
	if _, err := os.Stat(bin); err != nil {
		require.Missing(t, bin+" is missing; build it with `bash "+build+"`")
	}
	return bin
}

// renderRules renders the chart's rules with the values files given (later ones win).
func renderRules(t *testing.T, valuesFiles ...string) []byte {
	t.Helper()
	rules, err := Render(tool(t, "helm", "test/tools/helm/build.sh"), repoRoot(t), valuesFiles...)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// shippedRules are the rules with the chart's own thresholds.
func shippedRules(t *testing.T) []byte {
	t.Helper()
	return renderRules(t, DefaultValues)
}

// workdir holds rules.yaml beside copies of the unit test files, which name it (rule_files: [rules.yaml]).
func workdir(t *testing.T, rules []byte) (dir string, tests []string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "test", "alerts", "testdata", "*.test.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no unit test files under test/alerts/testdata (%v)", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		tests = append(tests, name)
	}
	return dir, tests
}

func promtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(tool(t, "promtool", "test/tools/prometheus/build.sh"), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", args[0]+" "+args[1], out)
}

func TestShippedRulesPassPromtoolCheck(t *testing.T) {
	dir, _ := workdir(t, shippedRules(t))
	promtool(t, dir, "check", "rules", "--lint=all", "--lint-fatal", "rules.yaml")
}

func TestShippedRulesPassTheirUnitTests(t *testing.T) {
	evidence.Proves(t, "OPS-MON-01")
	dir, tests := workdir(t, shippedRules(t))
	promtool(t, dir, append([]string{"test", "rules"}, tests...)...)
}

// The unit tests hold each API to its own thresholds: a chart rendered with other thresholds must fail them,
// or they prove nothing about the shipped values.
func TestUnitTestsFailOnOtherThresholds(t *testing.T) {
	loose := filepath.Join(t.TempDir(), "loose.yaml")
	if err := os.WriteFile(loose, []byte("metrics:\n  prometheusRule:\n    apis:\n      prior-auth:\n        latencyP99Seconds: 60\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir, _ := workdir(t, renderRules(t, DefaultValues, loose))
	cmd := exec.Command(tool(t, "promtool", "test/tools/prometheus/build.sh"), "test", "rules", "traffic.test.yaml")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "FhirwallLatencyP99High") {
		t.Fatalf("prior-auth's p99 threshold raised to 60 s, yet traffic.test.yaml passed (%v):\n%s", err, out)
	}
}

// ruleSet is what the rules file defines: each alert with the api label of each of its rules, and the
// recording rules.
type ruleSet struct {
	alerts  map[string][]string // alert name → api labels
	records []string
}

func parseRules(t *testing.T, rules []byte) ruleSet {
	t.Helper()
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(rules, &f); err != nil {
		t.Fatal(err)
	}
	rs := ruleSet{alerts: map[string][]string{}}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				rs.records = append(rs.records, r.Record)
				continue
			}
			for _, l := range []string{"api", "severity"} {
				if r.Labels[l] == "" {
					t.Errorf("group %s: alert %s has no %s label", g.Name, r.Alert, l)
				}
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("group %s: alert %s has no %s annotation", g.Name, r.Alert, a)
				}
			}
			if want := "#" + strings.ToLower(r.Alert); !strings.HasSuffix(r.Annotations["runbook_url"], want) {
				t.Errorf("alert %s: runbook_url %q does not end in %s", r.Alert, r.Annotations["runbook_url"], want)
			}
			rs.alerts[r.Alert] = append(rs.alerts[r.Alert], r.Labels["api"])
		}
	}
	return rs
}

// testCases is what the unit test files exercise: for each alert, the api labels expected to fire in some
// case and the api labels some case expects not to fire; and the expressions of the promql tests.
type testCases struct {
	fires, quiet map[string]map[string]bool // alert → api → seen
	exprs        []string
}

func parseTests(t *testing.T, dir string, files []string, apisOf map[string][]string) testCases {
	t.Helper()
	tc := testCases{fires: map[string]map[string]bool{}, quiet: map[string]map[string]bool{}}
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var f struct {
			Tests []struct {
				Alerts []struct {
					Alertname string `yaml:"alertname"`
					Exp       []struct {
						Labels map[string]string `yaml:"exp_labels"`
					} `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
				Exprs []struct {
					Expr string `yaml:"expr"`
				} `yaml:"promql_expr_test"`
			} `yaml:"tests"`
		}
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, g := range f.Tests {
			for _, e := range g.Exprs {
				tc.exprs = append(tc.exprs, e.Expr)
			}
			for _, a := range g.Alerts {
				firing := map[string]bool{}
				for _, e := range a.Exp {
					firing[e.Labels["api"]] = true
				}
				for _, api := range apisOf[a.Alertname] {
					m := tc.quiet
					if firing[api] {
						m = tc.fires
					}
					if m[a.Alertname] == nil {
						m[a.Alertname] = map[string]bool{}
					}
					m[a.Alertname][api] = true
				}
			}
		}
	}
	return tc
}

// TestEveryAlertAndRecordingRuleIsTested: each alert, for each API it is defined for, has a case where it
// fires and one where it stays quiet; each recording rule is queried by a promql test.
func TestEveryAlertAndRecordingRuleIsTested(t *testing.T) {
	rules := shippedRules(t)
	rs := parseRules(t, rules)
	if len(rs.alerts) == 0 || len(rs.records) == 0 {
		t.Fatalf("the chart's rules hold %d alerts and %d recording rules", len(rs.alerts), len(rs.records))
	}
	for _, api := range []string{"patient-access", "provider-access", "payer-to-payer", "prior-auth"} {
		if !slices.Contains(rs.alerts["FhirwallErrorBudgetBurnFast"], api) {
			t.Errorf("no availability alert for %s", api)
		}
	}
	dir, files := workdir(t, rules)
	tc := parseTests(t, dir, files, rs.alerts)
	var missing []string
	for alert, apis := range rs.alerts {
		for _, api := range apis {
			if !tc.fires[alert][api] {
				missing = append(missing, fmt.Sprintf("%s{api=%q}: no case where it fires", alert, api))
			}
			if !tc.quiet[alert][api] {
				missing = append(missing, fmt.Sprintf("%s{api=%q}: no case where it stays quiet", alert, api))
			}
		}
	}
	for _, r := range rs.records {
		if !slices.ContainsFunc(tc.exprs, func(e string) bool { return strings.Contains(e, r) }) {
			missing = append(missing, "recording rule "+r+": no promql_expr_test queries it")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Error(m)
	}
}
