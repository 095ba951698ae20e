package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecisionCacheIsOnByDefaultAndValidated(t *testing.T) {
	t.Setenv("FHIRWALL_PROXY_DECISION_KEYS_FILE", "decision.keys") // required beside proxy.grpc (on by default)
	write := func(extra string) string {
		p := filepath.Join(t.TempDir(), "cache.yaml")
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
	if got := c.Policies.DecisionCache; got != (DecisionCache{Entries: 10000, MaxBytes: 33554432}) {
		t.Fatalf("defaults: %+v", got)
	}
	if c, err = Load(write("policies: {decision_cache: {entries: 0}}\n")); err != nil || c.Policies.DecisionCache.Entries != 0 {
		t.Fatalf("off: %+v %v", c, err)
	}
	for _, bad := range []string{"{entries: -1}", "{entries: 10, max_bytes: 0}", "{entries: 10, max_bytes: 1000}", "{entries: 100000000}"} {
		_, err := Load(write("policies: {decision_cache: " + bad + "}\n"))
		if err == nil || !strings.Contains(err.Error(), "policies.decision_cache.") {
			t.Errorf("%s: %v, want a policies.decision_cache error", bad, err)
		}
	}
}
