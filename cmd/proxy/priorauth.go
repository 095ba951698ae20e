package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/adapters/fhirserver"
	"github.com/fhirwall/fhirwall/adapters/priorauth"
	"github.com/fhirwall/fhirwall/adapters/priorauth/subscriptions"
	"github.com/fhirwall/fhirwall/adapters/priorauth/um"
	"github.com/fhirwall/fhirwall/adapters/profilevalidator"
	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/metrics"
)

// priorAuth is the Prior Authorization API's adapter with what run starts beside it: the notification worker
// and the reviewers' admin API (nil when prior_auth.admin_token_file is empty).
type priorAuth struct {
	adapter *priorauth.Adapter
	subs    *subscriptions.Service
	admin   http.Handler
	// breakers are its outside systems' (validator, UM, FHIR server): build watches them with the others.
	breakers []metrics.Breaker
}

// buildPriorAuth wires the Prior Authorization API when it is configured (nil otherwise): the profile
// validator, the rules and the payer's UM system, the request store and the Subscriptions, all in
// PostgreSQL when jobs.postgres_dsn is set. core is filled in later by build; the delivery audit reads it then.
func (p *proxy) buildPriorAuth(ctx context.Context, cfg *config.Config, m *metrics.Metrics, core **decision.Core, publicBase string, log *slog.Logger) (*priorAuth, error) {
	if !cfg.HasAPI(config.PriorAuthAPI) {
		return nil, nil
	}
	pa := cfg.PriorAuth
	validator, err := profilevalidator.New(profilevalidator.Settings{URL: pa.Validator.URL, Timeout: pa.Validator.Timeout})
	if err != nil {
		return nil, fmt.Errorf("prior_auth.validator: %w", err)
	}
	rules, err := um.LoadRules(pa.RulesFile)
	if err != nil {
		return nil, fmt.Errorf("prior_auth.rules_file: %w", err)
	}
	breakers := []metrics.Breaker{validator}
	var remote um.Decider
	if pa.UM.URL != "" {
		r, err := um.NewRemote(pa.UM.URL, pa.UM.Timeout, nil)
		if err != nil {
			return nil, fmt.Errorf("prior_auth.um: %w", err)
		}
		remote = r
		breakers = append(breakers, r)
	}
	engine, err := um.NewEngine(rules, remote, log)
	if err != nil {
		return nil, err
	}
	var store priorauth.Store
	var subStore subscriptions.Store
	if dsn := cfg.Jobs.PostgresDSN; dsn != "" {
		pg, err := priorauth.OpenPostgres(ctx, dsn)
		if err != nil {
			return nil, fmt.Errorf("prior-auth requests (jobs.postgres_dsn): %w", err)
		}
		p.closers = append(p.closers, pg.Close)
		spg, err := subscriptions.OpenPostgres(ctx, dsn)
		if err != nil {
			return nil, fmt.Errorf("prior-auth subscriptions (jobs.postgres_dsn): %w", err)
		}
		p.closers = append(p.closers, spg.Close)
		store, subStore = pg, spg
	} else {
		log.Warn("prior-auth requests and subscriptions kept in memory (jobs.postgres_dsn is empty): a restart loses the review queue; one replica only")
		store, subStore = priorauth.NewMemoryStore(), subscriptions.NewMemoryStore()
	}
	subs, err := subscriptions.New(subStore, subscriptions.Options{
		Client: &http.Client{Timeout: 30 * time.Second}, Log: log, Now: time.Now, Base: publicBase,
		MaxAttempts: pa.Notifications.MaxAttempts, InitialBackoff: pa.Notifications.InitialBackoff,
		MaxBackoff: pa.Notifications.MaxBackoff,
		Audit: func(ctx context.Context, d subscriptions.Delivery) error {
			return (*core).RecordDelivery(ctx, deliveryRecord(d))
		},
		// Checked again before every delivery: an unknown or deactivated client gets nothing more.
		HostsOf: subscriptions.RegistryHosts(p.registry),
	})
	if err != nil {
		return nil, err
	}
	base := p.upstream.Base()
	writes := fhirserver.NewExchanger("prior-auth", base, p.upstream.Refreshes)
	lookups := fhirserver.NewSearcher("prior-auth-lookups", base, p.upstream.Lookups, 50)
	breakers = append(breakers, writes.Breaker(), lookups.Breaker())
	adapter, err := priorauth.New(priorauth.Ports{FHIR: writes, Search: lookups, Store: store, Validator: validator,
		Decider: engine, Subscriptions: subs, Notifier: subs, Observer: m, Log: log, Now: time.Now},
		priorauth.Settings{Insurer: pa.Insurer, InsurerIdentifiers: pa.InsurerIdentifiers, MemberIdentifierSystem: pa.MemberIdentifierSystem})
	if err != nil {
		return nil, err
	}
	if err := m.WatchPriorAuthQueue(func(ctx context.Context) (int, int, time.Duration, error) {
		return priorauth.QueueStats(ctx, store, time.Now())
	}); err != nil {
		return nil, err
	}
	out := &priorAuth{adapter: adapter, subs: subs, breakers: breakers}
	if tf := cfg.PriorAuthAdminTokenFile(); tf != "" { // its own, else the shared admin.token_file
		token, err := os.ReadFile(tf)
		if err != nil {
			return nil, fmt.Errorf("prior_auth.admin_token_file: %w", err)
		}
		if out.admin, err = priorauth.NewAdmin(adapter, store, []byte(strings.TrimSpace(string(token))), log, time.Now); err != nil {
			return nil, fmt.Errorf("prior_auth.admin_token_file: %w", err)
		}
	}
	return out, nil
}

// deliveryRecord is the audit record's view of one delivery attempt or result.
func deliveryRecord(d subscriptions.Delivery) decision.Delivery {
	out := "delivered"
	switch {
	case d.Phase == subscriptions.PhaseAttempt:
		out = "sending"
	case d.Error != "":
		out = "failed: " + d.Error
	}
	return decision.Delivery{API: config.PriorAuthAPI, ClientID: d.ClientID, Path: "Subscription/" + d.SubscriptionID,
		Type: d.Type, RequestID: d.MessageID, Patients: d.Patients, Status: d.Status, Outcome: out,
		Bytes: d.Bytes, Took: d.Took, Time: d.Time}
}
