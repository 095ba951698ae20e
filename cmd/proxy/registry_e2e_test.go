//go:build e2e

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/pgtest"
)

const e2eAdminToken = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

// registrySchema is a PostgreSQL schema of the test's own (bash test/stack/postgres.sh start;
// FHIRWALL_TEST_POSTGRES_DSN overrides the DSN), dropped afterwards; the DSN returned uses it.
func registrySchema(t *testing.T) string {
	t.Helper()
	return pgtest.Schema(t, "proxy_apps")
}

// The wiring behind registry.source postgres: an app registered and suspended through the admin API on the
// admin listener is honoured, then refused, by the gateway's registry within a second, and each change is an
// admin record in the audit spool.
func TestE2EPostgresRegistryAppliesAdminChangesWithinASecondAndAuditsThem(t *testing.T) {
	evidence.Proves(t, "AUD-05", "CMS-PA-06")
	dsn := registrySchema(t)
	srv := newFHIRServer(t)
	var spoolDir string
	cfg := wireConfig(t, srv.URL+"/fhir", srv.caFile, func(doc map[string]any, dir string) {
		doc["registry"] = map[string]any{"source": "postgres"}
		doc["jobs"] = map[string]any{"postgres_dsn": dsn}
		tf := filepath.Join(dir, "admin.token")
		if err := os.WriteFile(tf, []byte(e2eAdminToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		doc["admin"] = map[string]any{"token_file": tf}
		spoolDir = filepath.Join(dir, "spool")
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := build(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = p.spool.Close()
		p.close()
	}()
	if err := p.watchRegistry(ctx); err != nil {
		t.Fatal(err)
	}
	adminSrv := httptest.NewServer(p.admin(cfg, log))
	defer adminSrv.Close()
	post := func(path, body string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, adminSrv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, raw)
		}
	}
	waitActive := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for {
			cl, err := p.registry.Lookup(ctx, "e2e-backend")
			if err == nil && cl.Active == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 1 s the registry says %+v, %v; want active=%v", cl, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	post("/admin/apps/", `{"client_id":"e2e-backend","name":"E2E backend","developer_org":"Org A",
		"contacts":[{"email":"dev@example.org"}],"launch_types":["backend"],"token_endpoint_auth_method":"private_key_jwt",
		"jwks_uri":"https://org-a.example.org/jwks.json","requested_apis":["provider-access"],"requested_scopes":["system/*.rs"],
		"environment":"sandbox","tier":"backend","org":"Organization/org-a","reviewer":"e2e"}`)
	waitActive(true)
	post("/admin/apps/e2e-backend/suspend", `{"reviewer":"e2e","reason":"key leaked"}`)
	waitActive(false)

	var actions []string
	if err := audit.ReadSpool(spoolDir, func(raw []byte, _ string) error {
		var r audit.Record
		if json.Unmarshal(raw, &r) == nil && r.Kind == audit.KindAdmin && bytes.Contains(raw, []byte("e2e-backend")) {
			actions = append(actions, r.Action+" by "+r.Actor)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := "register by admin:e2e,approve by admin:e2e,activate by admin:e2e,suspend by admin:e2e"
	if got := strings.Join(actions, ","); got != want {
		t.Fatalf("admin records in the spool: %s, want %s", got, want)
	}
}
