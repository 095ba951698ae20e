package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/fhirwall/fhirwall/adapters/registry/admin"
	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	fileregistry "github.com/fhirwall/fhirwall/adapters/registry/file"
	"github.com/fhirwall/fhirwall/adapters/registry/keycloak"
	"github.com/fhirwall/fhirwall/adapters/registry/postgres"
	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// buildRegistry opens the client registry registry.source names and sets p.registry, p.watchRegistry and,
// for the PostgreSQL app registry with admin.token_file, p.appsAdmin. The PostgreSQL one audits every change
// into the spool, which must be open.
func (p *proxy) buildRegistry(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	if cfg.Registry.Source != config.RegistryPostgres {
		reg, err := fileregistry.Load(cfg.Registry.File, config.KnownAPIs)
		if err != nil {
			return err
		}
		p.registry = reg
		p.watchRegistry = func(ctx context.Context) error { return reg.Watch(ctx, log, nil) }
		if cfg.Admin.TokenFile != "" {
			log.Info("the app registry's admin API (/admin/apps/) is off: registry.source is file")
		}
		return nil
	}
	store, err := postgres.Open(ctx, cfg.Jobs.PostgresDSN, apps.NewAuditor(p.spool), log)
	if err != nil {
		return fmt.Errorf("registry.source postgres (jobs.postgres_dsn): %w", err)
	}
	p.closers = append(p.closers, store.Close)
	p.appStore = store
	if cfg.Registry.Import != "" {
		if err := importClients(ctx, store, cfg.Registry.Import, log); err != nil {
			return err
		}
	}
	reg := store.Registry()
	p.registry = reg
	// After the import: the first sync adopts the realm's existing clients of imported apps instead of
	// treating them as unregistered.
	runSync, err := p.buildKeycloakSync(cfg, store, log)
	if err != nil {
		return err
	}
	p.watchRegistry = func(ctx context.Context) error {
		if runSync != nil {
			go runSync(ctx)
		}
		// LISTEN/NOTIFY keeps every replica's view within a second of a change; while PostgreSQL is out of
		// reach the view ages and, past its bound, every lookup fails closed (503), never stale-open.
		go func() {
			if err := reg.Watch(ctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("app registry watch stopped", "error", err)
			}
		}()
		return nil
	}
	if cfg.Admin.TokenFile == "" {
		log.Warn("the app registry's admin API (/admin/apps/) is off: admin.token_file is empty")
		return nil
	}
	token, err := os.ReadFile(cfg.Admin.TokenFile)
	if err != nil {
		return fmt.Errorf("admin.token_file: %w", err)
	}
	if p.appsAdmin, err = admin.New(store, cfg.OfferedScopes(), token, log); err != nil {
		return fmt.Errorf("admin.token_file: %w", err)
	}
	log.Info("app registry in PostgreSQL", "apps", reg.Len(), "admin_api", "/admin/apps/")
	return nil
}

// importClients registers registry.import's clients that are not registered yet (postgres.Import): a
// deployment moving from the file registry, or a demo whose apps start from config/clients.yaml. Several
// replicas starting together import the same file harmlessly: a client already registered is left as the
// registry has it, so a reviewer's later change is never undone by a restart.
func importClients(ctx context.Context, store *postgres.Store, path string, log *slog.Logger) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("registry.import: %w", err)
	}
	parsed, err := fileregistry.Parse(data, config.KnownAPIs)
	if err != nil {
		return fmt.Errorf("registry.import %s: %w", path, err)
	}
	clients := make([]decision.Client, 0, len(parsed))
	for _, c := range parsed {
		clients = append(clients, c)
	}
	n, err := postgres.Import(ctx, store, clients, "import")
	if err != nil {
		return fmt.Errorf("registry.import %s: %w", path, err)
	}
	log.Info("registry.import", "file", path, "registered", n, "already_registered", len(clients)-n)
	return nil
}

// buildKeycloakSync makes the Keycloak sync of registry.keycloak (nil without a URL): every registry change
// reaches the realm's clients, a reconcile loop corrects drift both ways, and the portal gets its IdP
// (secret rotation, sessions, members' grants). Every replica runs it; one at a time holds the lead
// (adapters/registry/keycloak).
func (p *proxy) buildKeycloakSync(cfg *config.Config, store *postgres.Store, log *slog.Logger) (func(context.Context), error) {
	k := cfg.Registry.Keycloak
	if k.URL == "" {
		log.Warn("registry.keycloak is not set: Keycloak's clients are not kept in sync with the app registry")
		return nil, nil
	}
	secret, err := readSecret(k.ClientSecretFile)
	if err != nil {
		return nil, fmt.Errorf("registry.keycloak.client_secret_file: %w", err)
	}
	syncer, err := keycloak.New(keycloak.Config{URL: k.URL, Realm: k.Realm, ClientID: k.ClientID, ClientSecret: secret,
		ReconcileInterval: k.ReconcileInterval, Protected: k.Protected, Metrics: p.reg, Log: log}, store)
	if err != nil {
		return nil, fmt.Errorf("registry.keycloak: %w", err)
	}
	p.idp = syncer
	return func(ctx context.Context) {
		if err := syncer.Run(ctx, keycloak.PostgresLeader(store, k.Realm)); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("Keycloak sync stopped", "error", err)
		}
	}, nil
}
