//go:build e2e && faults

package faults

// The alert rules the chart ships (charts/fhirwall metrics.prometheusRule), loaded into a real Prometheus
// (test/stack/prometheus.sh, built from its Go module) that scrapes the stack every second. One API's backend
// breaks: the prior-auth API's utilization management system, which the stack's config names at
// 127.0.0.1:8096 and which is a test fixture (pa.FakeUM) the test can stop. Prior-auth's alert expression then
// returns series while the same alert's expressions of the other APIs return none; each API is alerted on
// independently. The rules' `for:` is not waited for: the expressions are queried.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fhirwall/fhirwall/adapters/priorauth/um"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/alerts"
	pa "github.com/fhirwall/fhirwall/test/priorauth"
	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// breakerAlert is the alert a backend's outage raises for the API that depends on it.
const breakerAlert = "FhirwallBreakerOpen"

var monitoredAPIs = []string{"patient-access", "provider-access", "payer-to-payer", "prior-auth"}

// alertExprs are the expressions of alert name in the rules file, by their api label.
func alertExprs(t *testing.T, rules []byte, name string) map[string]string {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert  string            `yaml:"alert"`
				Expr   string            `yaml:"expr"`
				Labels map[string]string `yaml:"labels"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(rules, &f); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == name {
				out[r.Labels["api"]] = r.Expr
			}
		}
	}
	for _, api := range monitoredAPIs {
		if out[api] == "" {
			t.Fatalf("the chart's rules have no %s for %s", name, api)
		}
	}
	return out
}

// promQuery evaluates expr now in the stack's Prometheus and returns the series' labels.
func promQuery(t *testing.T, expr string) ([]map[string]string, error) {
	t.Helper()
	resp, err := http.Get(stackenv.PrometheusURL + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Metric map[string]string
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("prometheus: %s", body.Error)
	}
	var out []map[string]string
	for _, r := range body.Data.Result {
		out = append(out, r.Metric)
	}
	return out, nil
}

// startPrometheus writes the chart's rules where prometheus.sh reads them, starts (or reloads) Prometheus, and
// stops it when the test ends.
func startPrometheus(t *testing.T) []byte {
	t.Helper()
	bin := filepath.Join(stackenv.StateDir(), "bin")
	for _, tool := range []struct{ name, build string }{{"helm", "test/tools/helm/build.sh"}, {"prometheus", "test/tools/prometheus/build.sh"}} {
		if _, err := os.Stat(filepath.Join(bin, tool.name)); err != nil {
			require.Missing(t, filepath.Join(bin, tool.name)+" is missing; build it with `bash "+tool.build+"`")
		}
	}
	rules, err := alerts.Render(filepath.Join(bin, "helm"), stackenv.Root(), alerts.DefaultValues)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(stackenv.StateDir(), "prometheus")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := stack(t, "prometheus", "start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stack(t, "prometheus", "stop"); err != nil {
			t.Error(err)
		}
	})
	if err := stack(t, "prometheus", "reload"); err != nil { // it may have been running with older rules
		t.Fatal(err)
	}
	return rules
}

// traffic drives both APIs through the standalone proxy: member01's own EOB search on patient-access, and a
// $submit on prior-auth whose item the rules refer to the UM system (decided by it when it answers, pended
// when it does not). It remembers what it submitted, so the pended ones can be decided when the test ends.
type traffic struct {
	s         *session
	run       string
	paToken   string
	paRenewAt time.Time
	n         int
	submitted []string
}

func (tr *traffic) backendToken(t *testing.T) string {
	t.Helper()
	if tr.paToken == "" || time.Now().After(tr.paRenewAt) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		tok, err := stackauth.Backend(ctx, "provider-org-a", paScopes...)
		if err != nil {
			t.Fatal(err)
		}
		tr.paToken, tr.paRenewAt = tok.AccessToken, time.Now().Add(2*time.Minute)
	}
	return tr.paToken
}

// once sends one request to each API and returns prior-auth's decision codes.
func (tr *traffic) once(t *testing.T) []string {
	t.Helper()
	if a := get(t, standaloneURL(ownEOBSearch), tr.s.Token(t)); a.status != http.StatusOK {
		t.Fatalf("patient-access answered %s", a)
	}
	tr.n++
	r := pa.NewRequest("pa-alerts-"+tr.run+"-"+strconv.Itoa(tr.n), pa.GeneticTest)
	body, err := r.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	tr.submitted = append(tr.submitted, r.Identifier)
	a := paPost(t, "POST", paBase()+"/Claim/$submit", tr.backendToken(t), body)
	ans, err := pa.ReadAnswer(a.body)
	d, ok := ans.First()
	if a.status != http.StatusOK || err != nil || !ok {
		t.Fatalf("$submit %s: %s", r.Identifier, a)
	}
	return d.Codes()
}

// until drives traffic, one round a second, until done (asked after each round) holds or limit passes.
func (tr *traffic) until(t *testing.T, what string, limit time.Duration, done func(codes []string) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if done(tr.once(t)) {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(time.Second)
	}
}

// decidePended approves what the UM outage left pended, so the review queue is as the test found it.
func (tr *traffic) decidePended(t *testing.T) {
	admin, err := pa.NewAdmin()
	if err != nil {
		t.Error(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	decided := 0
	for _, id := range tr.submitted {
		it, found, err := admin.Find(ctx, "pended", id)
		if err != nil {
			t.Errorf("the review queue (%s left pended?): %v", id, err)
			return
		}
		if !found {
			continue
		}
		st, b, err := admin.Decide(ctx, it.ID, pa.Review{Reviewer: "faults-alerts", Verdict: pa.ReviewApproved})
		if err != nil || st >= 300 {
			t.Errorf("deciding the pended %s: %d %v %s", id, st, err, b)
			continue
		}
		decided++
	}
	t.Logf("approved the %d requests the UM outage left pended", decided)
}

// firing reports which APIs' expressions return series now, with the series.
func firing(t *testing.T, exprs map[string]string) map[string][]map[string]string {
	t.Helper()
	out := map[string][]map[string]string{}
	for _, api := range monitoredAPIs {
		series, err := promQuery(t, exprs[api])
		if err != nil {
			t.Fatalf("%s's %s: %v", api, breakerAlert, err)
		}
		if len(series) > 0 {
			out[api] = series
		}
	}
	return out
}

// TestOneAPIsBackendDownAlertsThatAPIOnly: with the UM system answering, no API's breaker alert has series;
// with it gone, prior-auth's does (breaker prior-auth-um) and patient-access's, provider-access's and
// payer-to-payer's do not, while their traffic goes on; with it back, prior-auth's clears.
func TestOneAPIsBackendDownAlertsThatAPIOnly(t *testing.T) {
	evidence.Proves(t, "OPS-MON-01")
	s := &session{}
	healthy(t, s)
	rules := startPrometheus(t)
	exprs := alertExprs(t, rules, breakerAlert)

	deadline := time.Now().Add(30 * time.Second)
	for {
		up, err := promQuery(t, `up{job="fhirwall-proxy"} == 1`)
		if err == nil && len(up) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus does not scrape fhirwall-proxy (%v %v)", up, err)
		}
		time.Sleep(time.Second)
	}

	fake, err := pa.StartFakeUM(pa.UMAddr, um.Approved)
	if errors.Is(err, pa.ErrUMPortBusy) {
		t.Fatalf("%v: another test runs its own UM system; run the fault tests alone (make faults)", err)
	} else if err != nil {
		t.Fatal(err)
	}
	tr := &traffic{s: s, run: pa.NewRunID()}
	umUp := true
	t.Cleanup(func() {
		if !umUp { // the test stopped during the fault: the UM system back to decide what it left pended
			if fake, err = pa.StartFakeUM(pa.UMAddr, um.Approved); err != nil {
				t.Errorf("restarting the UM system: %v", err)
			}
		}
		if fake != nil {
			defer fake.Close() // the stack as the test found it: nothing listens at the UM's address
		}
		tr.decidePended(t)
	})

	// Healthy: the UM decides (the breaker closed), and no API's breaker alert has series.
	took := tr.until(t, "the UM system approves", 2*time.Minute, func(codes []string) bool { return slices.Equal(codes, []string{pa.Approved}) })
	t.Logf("the UM system decides %s's requests after %v", "prior-auth", took.Round(time.Second))
	took = tr.until(t, "no breaker alert before the fault", 3*time.Minute, func([]string) bool { return len(firing(t, exprs)) == 0 })
	t.Logf("before the fault: no API's %s expression has series (%v of traffic)", breakerAlert, took.Round(time.Second))

	// The fault: prior-auth's UM system goes away. Its requests are pended, and its breaker opens.
	fake.Close()
	fake, umUp = nil, false
	var during map[string][]map[string]string
	took = tr.until(t, "prior-auth's alert with the UM system down", 2*time.Minute, func(codes []string) bool {
		if !slices.Equal(codes, []string{pa.Pended}) {
			t.Errorf("$submit with the UM system down answered %v, want pended (A4)", codes)
		}
		during = firing(t, exprs)
		return len(during["prior-auth"]) > 0
	})
	t.Logf("UM system down: prior-auth's %s expression has series after %v: %v", breakerAlert, took.Round(time.Second), during["prior-auth"])
	if !slices.ContainsFunc(during["prior-auth"], func(m map[string]string) bool { return m["breaker"] == "prior-auth-um" }) {
		t.Errorf("prior-auth's series name no prior-auth-um breaker: %v", during["prior-auth"])
	}
	for _, api := range monitoredAPIs {
		if api != "prior-auth" && len(during[api]) > 0 {
			t.Errorf("only prior-auth's backend is down, yet %s's %s expression has series: %v", api, breakerAlert, during[api])
		}
	}
	// The other API's traffic went on all along (traffic.once fails on anything but 200 for patient-access).
	if got, err := promQuery(t, `sum by (api) (increase(fhirwall_requests_total{api="patient-access",code="200"}[1m])) > 0`); err != nil || len(got) == 0 {
		t.Errorf("Prometheus saw no patient-access answers during the fault (%v)", err)
	}

	// Repair: the UM system back; prior-auth's alert clears once the breaker has been closed a minute.
	if fake, err = pa.StartFakeUM(pa.UMAddr, um.Approved); err != nil {
		t.Fatal(err)
	}
	umUp = true
	took = tr.until(t, "the UM system approves again", 2*time.Minute, func(codes []string) bool { return slices.Equal(codes, []string{pa.Approved}) })
	t.Logf("UM system back: approved again after %v", took.Round(time.Second))
	took = tr.until(t, "prior-auth's alert clears", 3*time.Minute, func([]string) bool { return len(firing(t, exprs)) == 0 })
	t.Logf("repaired: no API's %s expression has series %v later", breakerAlert, took.Round(time.Second))
}
