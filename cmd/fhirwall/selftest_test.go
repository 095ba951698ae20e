package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/internal/selftest"
)

func TestSelftestRefusesBadUsageWithExitTwo(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	if code, err := run(context.Background(), []string{"audit", "keygen", "-out", key}, &bytes.Buffer{}); code != 0 || err != nil {
		t.Fatal(code, err)
	}
	cfg := filepath.Join(dir, "selftest.yaml")
	os.WriteFile(cfg, []byte("apis: {patient_access: /pa}\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("apis: {patient_acess: /pa}\n"), 0o600)
	for name, args := range map[string][]string{
		"no --against":       {"-config", cfg, "-key", key, "-out", dir},
		"no -config":         {"--against", "http://127.0.0.1:1", "-key", key, "-out", dir},
		"no -key":            {"--against", "http://127.0.0.1:1", "-config", cfg, "-out", dir},
		"no -out":            {"--against", "http://127.0.0.1:1", "-config", cfg, "-key", key},
		"URL with userinfo":  {"--against", "https://u:p@host", "-config", cfg, "-key", key, "-out", dir},
		"not a URL":          {"--against", "host:443", "-config", cfg, "-key", key, "-out", dir},
		"misspelt config":    {"--against", "http://127.0.0.1:1", "-config", bad, "-key", key, "-out", dir},
		"public key to sign": {"--against", "http://127.0.0.1:1", "-config", cfg, "-key", key + ".pub", "-out", dir},
		"-only names none":   {"--against", "http://127.0.0.1:1", "-config", cfg, "-key", key, "-out", dir, "-only", "no-such-check"},
		"a huge burst":       {"--against", "http://127.0.0.1:1", "-config", cfg, "-key", key, "-out", dir, "-rate-limit-burst", "1000000"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, err := cli(t, append([]string{"selftest"}, args...)...)
			if code != 2 || err == nil {
				t.Errorf("exit %d %v %s, want 2 and an error", code, err, out)
			}
		})
	}
}

func TestEvidenceVerifySaysIntactAndRefusesAChangedByte(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	if code, err := run(context.Background(), []string{"audit", "keygen", "-out", key}, &bytes.Buffer{}); code != 0 || err != nil {
		t.Fatal(code, err)
	}
	priv, err := audit.LoadSigningKey(key)
	if err != nil {
		t.Fatal(err)
	}
	results := []selftest.Result{{Name: "audit/records-appear", Requirements: []string{"AUD-01"}, Outcome: selftest.Pass},
		{Name: "scopes/other-patient-refused", Requirements: []string{"CMS-PA-02"}, Outcome: selftest.Fail, Detail: "leak"}}
	m := selftestMatrix(results, mustURL(t, "https://fhir.example"), time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC))
	if err := writeMatrix(dir, m, priv); err != nil {
		t.Fatal(err)
	}
	signed := filepath.Join(dir, "matrix.signed.json")
	code, out, err := cli(t, "evidence", "verify", "-key", key+".pub", signed)
	if code != 0 || err != nil || !strings.HasPrefix(out, "intact: 2 requirements, 1 met") {
		t.Fatalf("untouched: %d %v %s", code, err, out)
	}
	b, _ := os.ReadFile(signed)
	b[len(b)/2] ^= 0x20
	os.WriteFile(signed, b, 0o644)
	if code, out, _ := cli(t, "evidence", "verify", "-key", key+".pub", signed); code != 1 || !strings.HasPrefix(out, "REFUSED") {
		t.Errorf("one byte changed: %d %s, want 1 REFUSED", code, out)
	}
	other := filepath.Join(dir, "other")
	run(context.Background(), []string{"audit", "keygen", "-out", other}, &bytes.Buffer{})
	writeMatrix(dir, m, priv)
	if code, out, _ := cli(t, "evidence", "verify", "-key", other+".pub", signed); code != 1 {
		t.Errorf("another key: %d %s, want 1", code, out)
	}
}

func TestSelftestMatrixHasARowPerRequirementTheChecksName(t *testing.T) {
	var results []selftest.Result
	for _, c := range selftest.Checks() {
		c.Outcome = selftest.Skip
		results = append(results, c)
	}
	m := selftestMatrix(results, mustURL(t, "https://fhir.example"), time.Now())
	seen := map[string]bool{}
	for _, c := range selftest.Checks() {
		for _, id := range c.Requirements {
			seen[id] = true
		}
	}
	if len(m.Rows) != len(seen) {
		t.Errorf("%d rows for %d requirements", len(m.Rows), len(seen))
	}
	for _, r := range m.Rows {
		if r.Status != evidence.Gap {
			t.Errorf("%s: %s with every check skipped, want gap", r.ID, r.Status)
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
