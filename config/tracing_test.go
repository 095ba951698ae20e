package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTracingIsOffByDefaultOnWithAnEndpointAndValidated(t *testing.T) {
	t.Setenv("FHIRWALL_PROXY_DECISION_KEYS_FILE", "decision.keys") // required beside proxy.grpc (on by default)
	write := func(extra string) string {
		p := filepath.Join(t.TempDir(), "tracing.yaml")
		body := "issuers: [{url: http://idp, audience: a}]\nregistry: {file: clients.yaml}\n" + extra
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := Load(write(""))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tracing.Enabled() || c.Tracing.TrustIncoming || c.Tracing.SamplingPercent != 100 || c.Tracing.ServiceName != "fhirwall-proxy" || c.Tracing.EnvoyServiceName != "fhirwall-envoy" {
		t.Fatalf("defaults: %+v", c.Tracing)
	}
	for _, bad := range []string{"{endpoint: collector}", "{endpoint: ':4317'}", "{endpoint: 'h:0'}", "{sampling_percent: 101}", "{sampling_percent: -1}",
		"{service_name: '%REQ(authorization)%'}", "{envoy_service_name: ''}"} {
		_, err := Load(write("tracing: " + bad + "\n"))
		if err == nil || !strings.Contains(err.Error(), "tracing.") {
			t.Errorf("%s: %v, want a tracing error", bad, err)
		}
	}
	t.Setenv("FHIRWALL_TRACING_ENDPOINT", "127.0.0.1:4317") // how the stack turns it on
	if c, err = Load(write("")); err != nil || !c.Tracing.Enabled() {
		t.Fatalf("endpoint from the environment: %+v %v", c.Tracing, err)
	}
}
