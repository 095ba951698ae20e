//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/internal/metrics"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// TestMetricsShowPerAPISeries: after a request on each API in both modes, fhirwall-proxy's /metrics has
// per-API request, decision and latency series, and Envoy's Prometheus stats have per-route and per-API
// upstream cluster series, so a dashboard can tell the APIs apart.
func TestMetricsShowPerAPISeries(t *testing.T) {
	evidence.Proves(t, "OPS-MON-01")
	member := member01Token(t)
	orgA := providerToken(t, "provider-org-a")
	// Counters only grow, and earlier tests have fed them: what this request makes must show as an increase.
	proxyBefore := scrape(t, stackenv.ProxyAdminURL+"/metrics")
	envoyBefore := scrape(t, stackenv.EnvoyAdminURL+"/stats/prometheus")
	for i := range modes {
		if a := get(t, modes[i].base+"/Patient/member-01", member); a.status != 200 {
			t.Fatalf("%s patient-access: %d %.200s", modes[i].name, a.status, a.body)
		}
		if a := get(t, providerModes[i].base+"/Patient/member-01", orgA); a.status != 200 {
			t.Fatalf("%s provider-access: %d %.200s", providerModes[i].name, a.status, a.body)
		}
	}

	if a := get(t, stackenv.ProxyAdminURL+"/readyz", ""); a.status != 200 {
		t.Errorf("/readyz: %d %s", a.status, a.body)
	}

	proxy := scrape(t, stackenv.ProxyAdminURL+"/metrics")
	for _, api := range []string{"patient-access", "provider-access"} {
		for _, mode := range []string{"envoy", "standalone"} {
			for _, c := range []struct {
				name   string
				labels map[string]string
			}{
				{metrics.RequestsTotal, map[string]string{"api": api, "mode": mode, "code": "200"}},
				{metrics.DecisionsTotal, map[string]string{"api": api, "mode": mode, "outcome": "allow"}},
				{metrics.DecisionDuration + "_bucket", map[string]string{"api": api, "mode": mode, "le": "+Inf"}},
			} {
				if !grew(proxyBefore, proxy, c.name, c.labels) {
					t.Errorf("fhirwall-proxy: %s%v did not grow; api values: %v", c.name, c.labels, proxy.labelValues(c.name, "api"))
				}
			}
		}
	}

	envoy := scrape(t, stackenv.EnvoyAdminURL+"/stats/prometheus")
	for _, api := range []string{"patient-access", "provider-access"} {
		route := map[string]string{"envoy_route": api}
		if !grew(envoyBefore, envoy, "envoy_vhost_route_upstream_rq_total", route) {
			t.Errorf("envoy: envoy_vhost_route_upstream_rq_total%v did not grow; routes: %v", route,
				envoy.labelValues("envoy_vhost_route_upstream_rq_total", "envoy_route"))
		}
		cluster := map[string]string{"envoy_cluster_name": "fhir_server_" + api}
		if !grew(envoyBefore, envoy, "envoy_cluster_upstream_rq_total", cluster) {
			t.Errorf("envoy: envoy_cluster_upstream_rq_total%v did not grow; clusters: %v", cluster,
				envoy.labelValues("envoy_cluster_upstream_rq_total", "envoy_cluster_name"))
		}
	}
}

// grew reports whether the series of name with labels exists after and sums to more than before (a series
// missing before counts as 0).
func grew(before, after exposition, name string, labels map[string]string) bool {
	a := after.sum(name, labels)
	return a > 0 && a > max(before.sum(name, labels), 0)
}

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

type exposition []sample

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrape reads a Prometheus text exposition: the sample lines only, which is all these checks need.
func scrape(t *testing.T, url string) exposition {
	t.Helper()
	a := get(t, url, "")
	if a.status != 200 {
		t.Fatalf("GET %s: %d %.200s", url, a.status, a.body)
	}
	var out exposition
	sc := bufio.NewScanner(bytes.NewReader(a.body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := sampleLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		s := sample{name: m[1], labels: map[string]string{}, value: v}
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			s.labels[p[1]] = p[2]
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		t.Fatalf("GET %s: no samples", url)
	}
	return out
}

// sum adds the values of name's series carrying every label in want; -1 when there is none.
func (e exposition) sum(name string, want map[string]string) float64 {
	total, found := 0.0, false
	for _, s := range e {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			match = match && s.labels[k] == v
		}
		if match {
			total, found = total+s.value, true
		}
	}
	if !found {
		return -1
	}
	return total
}

func (e exposition) labelValues(name, label string) []string {
	var vs []string
	for _, s := range e {
		if s.name == name && !slices.Contains(vs, s.labels[label]) {
			vs = append(vs, s.labels[label])
		}
	}
	return vs
}
