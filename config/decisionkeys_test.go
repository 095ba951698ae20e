package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestDecisionKeysFileIsRequiredWithEnvoyModeAndRelativeToTheConfig(t *testing.T) {
	path := writeConfig(t, "registry: {file: clients.yaml}\n")
	t.Setenv("FHIRWALL_PROXY_DECISION_KEYS_FILE", "")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "proxy.decision_keys_file") ||
		!strings.Contains(err.Error(), "head -c 32 /dev/urandom | base64") {
		t.Fatalf("Envoy mode without decision keys: %v, want refused naming the key and the fix", err)
	}
	if _, err := LoadFor(path, ForXDS); err != nil {
		t.Fatalf("fhirwall-xds, which never seals, refused: %v", err)
	}
	standalone := writeConfig(t, "registry: {file: clients.yaml}\nproxy: {grpc: '', http: '127.0.0.1:8080'}\n")
	t.Setenv("FHIRWALL_PROXY_DECISION_KEYS_FILE", "")
	if _, err := Load(standalone); err != nil {
		t.Fatalf("standalone only needs no decision keys: %v", err)
	}
	withKeys := writeConfig(t, "registry: {file: clients.yaml}\nproxy: {decision_keys_file: keys/decision.keys}\n")
	t.Setenv("FHIRWALL_PROXY_DECISION_KEYS_FILE", "")
	c, err := Load(withKeys)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(filepath.Dir(withKeys), "keys", "decision.keys"); c.Proxy.DecisionKeysFile != want {
		t.Fatalf("decision_keys_file %q, want %q (relative to the config file)", c.Proxy.DecisionKeysFile, want)
	}
	t.Setenv("FHIRWALL_PROXY_DECISION_KEYS_FILE", "/run/secrets/decision.keys")
	if c, err := Load(path); err != nil || c.Proxy.DecisionKeysFile != "/run/secrets/decision.keys" {
		t.Fatalf("FHIRWALL_PROXY_DECISION_KEYS_FILE: %q %v", c.Proxy.DecisionKeysFile, err)
	}
}
