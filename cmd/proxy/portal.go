package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/adapters/registry/dcr"
	"github.com/fhirwall/fhirwall/adapters/registry/revocation"
	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/capability"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/portal"
	"github.com/fhirwall/fhirwall/internal/seal"
)

// buildRevocation opens the revocation list (RFC 7009 token revocations and members' revoked grants) in
// jobs.postgres_dsn and returns verifier wrapped so that every replica refuses a revoked token within a
// second (adapters/registry/revocation). Without PostgreSQL nothing can be revoked at the gateway: the
// verifier is returned as it is, and the portal's revocation endpoint and member page stay off.
func (p *proxy) buildRevocation(ctx context.Context, cfg *config.Config, verifier decision.Verifier, log *slog.Logger) (decision.Verifier, error) {
	if cfg.Jobs.PostgresDSN == "" {
		if cfg.Portal.Listen != "" {
			return nil, errors.New("portal.listen: the portal needs jobs.postgres_dsn (the app registry and the revocation list live there)")
		}
		return verifier, nil
	}
	store, err := revocation.Open(ctx, cfg.Jobs.PostgresDSN, p.spool, log)
	if err != nil {
		return nil, fmt.Errorf("jobs.postgres_dsn: %w", err)
	}
	p.closers = append(p.closers, store.Close)
	p.revocations = store
	checked, err := revocation.Wrap(verifier, store.View())
	if err != nil {
		return nil, err
	}
	return checked, nil
}

// buildPortal wires portal.listen: the developer portal (internal/portal), Dynamic Client Registration
// (adapters/registry/dcr, with portal.dcr.enabled) and the RFC 7009 revocation endpoint
// (adapters/registry/revocation), one HTTPS listener of their own, never the APIs'. They all work on the app
// registry in PostgreSQL and the revocation list, so the portal needs both.
func (p *proxy) buildPortal(cfg *config.Config, discovery *capability.OIDCDiscovery, log *slog.Logger) error {
	pc := cfg.Portal
	if pc.Listen == "" {
		return nil
	}
	if p.appStore == nil {
		return errors.New("portal.listen: the portal needs registry.source postgres (apps registered there reach the gateway)")
	}
	if len(cfg.Issuers) == 0 {
		return errors.New("portal.listen: the portal signs users in with issuers[0], and there is none")
	}
	keys, err := seal.LoadKeyring(pc.SessionKeyFile)
	if err != nil {
		return fmt.Errorf("portal.session_key_file: %w", err)
	}
	secret, err := readSecret(pc.ClientSecretFile)
	if err != nil {
		return fmt.Errorf("portal.client_secret_file: %w", err)
	}
	p.portalStatus = portal.NewStatus(p.reg, nil)
	site, err := portal.New(portal.Options{
		Store: p.appStore, IdP: p.idp, Revoker: p.revocations,
		Offered: cfg.OfferedScopes(), APIs: cfg.APIs, Notices: cfg.Notices, Status: p.portalStatus,
		// The API pages are rendered from the documents the Envoy face serves (public_url's bases).
		Docs: p.docs.Documents,
		OIDC: portal.OIDC{IssuerURL: cfg.Issuers[0].URL, ClientID: pc.ClientID, ClientSecret: secret,
			HTTPClient: &http.Client{Timeout: 5 * time.Second}},
		PublicURL: pc.PublicURL, SessionKeys: keys,
		ReviewerRole: pc.ReviewerRole, DeveloperRole: pc.DeveloperRole, SecretOverlap: pc.SecretOverlap,
		Log: log,
	})
	if err != nil {
		return fmt.Errorf("portal: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", site)
	revoke, err := revocation.NewHandler(revocation.HandlerConfig{Issuer: cfg.Issuers[0].URL, Discovery: discovery,
		Verifier: p.verifier, Store: p.revocations, Log: log})
	if err != nil {
		return fmt.Errorf("portal: token revocation: %w", err)
	}
	mux.Handle(revocation.Path, revoke)
	if pc.DCR.Enabled {
		var registrars [][]byte
		for _, f := range pc.DCR.TrustedRegistrars {
			b, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("portal.dcr.trusted_registrars: %w", err)
			}
			registrars = append(registrars, b)
		}
		reg, err := dcr.New(p.appStore, cfg.OfferedScopes(), dcr.Options{PublicURL: pc.PublicURL, PerMinute: pc.DCR.PerMinute, Counter: p.appStore,
			TrustedRegistrars: registrars, Log: log})
		if err != nil {
			return fmt.Errorf("portal.dcr: %w", err)
		}
		// A JSON API authenticated by bearer tokens, not the portal's cookies: outside its CSRF checks.
		mux.Handle("/register", reg)
		mux.Handle("/register/", reg)
	}
	p.portal = mux
	return nil
}

// readSecret reads a secret file (a client secret, a token): its content without surrounding whitespace.
func readSecret(path string) (string, error) {
	if path == "" {
		return "", errors.New("not set")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// servePortal serves h over TLS only on portal.listen: its cookies are Secure.
func servePortal(pc config.Portal, h http.Handler, errc chan<- error) func(context.Context) {
	s := &http.Server{Addr: pc.Listen, Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10,
		IdleTimeout: idleTimeout, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	go func() { errc <- s.ListenAndServeTLS(pc.TLSCert, pc.TLSKey) }()
	return func(ctx context.Context) { _ = s.Shutdown(ctx) }
}
