package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	fileregistry "github.com/fhirwall/fhirwall/adapters/registry/file"
)

func TestFileRegistryStaysTheDefaultWithoutTheAppsAdminAPI(t *testing.T) {
	srv := newFHIRServer(t)
	p, cfg := wire(t, srv.URL+"/fhir", srv.caFile)
	if _, ok := p.registry.(*fileregistry.Registry); !ok || p.appsAdmin != nil {
		t.Fatalf("registry %T, apps admin %v; want the file registry and no /admin/apps/", p.registry, p.appsAdmin)
	}
	rec := httptest.NewRecorder()
	p.admin(cfg, slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/admin/apps/", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("GET /admin/apps/ with the file registry: %d, want 404", rec.Code)
	}
}

func TestPostgresRegistryThatCannotBeReachedStopsTheStart(t *testing.T) {
	srv := newFHIRServer(t)
	cfg := wireConfig(t, srv.URL+"/fhir", srv.caFile, func(doc map[string]any, dir string) {
		doc["registry"] = map[string]any{"source": "postgres"}
		doc["jobs"] = map[string]any{"postgres_dsn": "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2"}
		doc["admin"] = map[string]any{"token_file": filepath.Join(dir, "admin.token")}
	})
	p, err := build(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		_ = p.spool.Close()
		p.close()
	}
	if err == nil || !strings.Contains(err.Error(), "jobs.postgres_dsn") {
		t.Fatalf("build: %v, want refused naming jobs.postgres_dsn", err)
	}
}
