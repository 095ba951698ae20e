package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/fhirwall/fhirwall/adapters/registry/revocation"
	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/decision"
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
