package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleConfigLoads(t *testing.T) {
	c, err := Load("fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.APIs[0].Name != "patient-access" || c.Issuers[0].Audience != "fhirwall" || c.Proxy.GRPC == "" {
		t.Fatalf("got %+v", c)
	}
}

func TestBadConfigNamesEveryProblem(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	body := "fhir_server: {url: ftp://x}\nissuers: [{url: nope}]\napis: [{name: foo, prefix: bar/}]\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"fhir_server.url", "issuers[0].url", "issuers[0].audience", "apis[0].name", "apis[0].prefix"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

func TestUnknownKeysAreRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "typo.yaml")
	if err := os.WriteFile(p, []byte("issuer: [{url: http://x, audience: a}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil {
		t.Fatal("misspelt key accepted")
	}
}
