package keycloak

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/adapters/registry/postgres"
)

// Registry is what the sync needs of the app registry (*postgres.Store).
type Registry interface {
	Get(ctx context.Context, clientID string) (apps.App, error)
	List(ctx context.Context) ([]apps.App, error)
	Update(ctx context.Context, a apps.App, actor, reason string) (apps.App, error)
	History(ctx context.Context, clientID string) ([]apps.Event, error)
	Sync(ctx context.Context, clientID string) (apps.SyncState, error)
	DueSyncs(ctx context.Context, limit int) ([]postgres.SyncJob, error)
	PendingSyncs(ctx context.Context) (int, error)
	PendingSecret(ctx context.Context, clientID string) (string, error)
	SyncDone(ctx context.Context, job postgres.SyncJob) error
	SyncFailed(ctx context.Context, clientID, lastError string, retryAt time.Time) error
	MarkSynced(ctx context.Context, clientID string) error
	Audit(ctx context.Context, ev apps.Event) error
}

var _ Registry = (*postgres.Store)(nil)

// Lease is one replica's hold on the sync (*postgres.Leader): Wait returns on a change's notification, after
// d, or with an error once the hold is lost.
type Lease interface {
	Wait(ctx context.Context, d time.Duration) (string, error)
	Release()
}

// Leader takes the sync's lease, or fails (postgres.ErrNotLeader while another replica holds it).
type Leader func(ctx context.Context) (Lease, error)

// PostgresLeader is the Leader of a PostgreSQL registry: an advisory lock per schema and realm.
func PostgresLeader(s *postgres.Store, realm string) Leader {
	return func(ctx context.Context) (Lease, error) {
		l, err := s.Lead(ctx, realm)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
}

// Config is the sync's configuration (config.KeycloakSync, with the secret read from its file).
type Config struct {
	URL, Realm             string
	ClientID, ClientSecret string
	// ReconcileInterval is how often every client in the realm is compared with the registry (default 30s).
	ReconcileInterval time.Duration
	// Protected are client ids the sync never touches, besides Keycloak's own and ClientID.
	Protected []string
	// HTTP is the shared client for Keycloak (TLS, timeouts); nil: a default with a 10 s timeout.
	HTTP *http.Client
	// Metrics is where the drift counter and the pending gauge are registered (nil: nowhere).
	Metrics prometheus.Registerer
	Log     *slog.Logger
}

// Metric names.
const (
	DriftTotal = "fhirwall_registry_idp_drift_total"
	Pending    = "fhirwall_registry_idp_pending"
)

// Drift kinds, the kind label of DriftTotal.
const (
	DriftCorrected    = "corrected"    // a registry app's client edited in Keycloak, put back
	DriftUnregistered = "unregistered" // a client in Keycloak the registry does not know, removed
	DriftAdopted      = "adopted"      // an imported app completed from its existing client
)

// Audit actors and actions of the sync's own records.
const (
	ActorReconcile     = "system:reconcile"
	ActorAdopt         = "system:keycloak-adopt"
	ActionCorrect      = "idp-correct"
	ActionRemove       = "idp-remove-unregistered"
	maxBackoff         = 30 * time.Second
	defaultReconcile   = 30 * time.Second
	defaultPoll        = time.Second
	defaultLeaderRetry = 5 * time.Second
	batch              = 100
)

// Syncer keeps the realm's clients at the registry's state and implements apps.IdP. Run it on every replica:
// one at a time works (Leader), the others wait to take over.
type Syncer struct {
	kc        *admin
	reg       Registry
	realm     string
	protected []string
	reconcile time.Duration
	poll      time.Duration
	retryLead time.Duration
	log       *slog.Logger
	now       func() time.Time

	drift   *prometheus.CounterVec
	pending prometheus.Gauge
}

var _ apps.IdP = (*Syncer)(nil)

// New builds a Syncer; it refuses a configuration that names no Keycloak, realm or account.
func New(cfg Config, reg Registry) (*Syncer, error) {
	var errs []error
	if cfg.URL == "" || cfg.Realm == "" {
		errs = append(errs, errors.New("keycloak sync: url and realm are required"))
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		errs = append(errs, errors.New("keycloak sync: client_id and its secret are required"))
	}
	if reg == nil {
		errs = append(errs, errors.New("keycloak sync: no registry"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Syncer{
		reg: reg, realm: cfg.Realm, reconcile: cfg.ReconcileInterval, poll: defaultPoll, retryLead: defaultLeaderRetry,
		log: cfg.Log, now: time.Now,
		protected: append(append(slices.Clone(keycloakClients), cfg.ClientID), cfg.Protected...),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{Name: DriftTotal,
			Help: "Differences between Keycloak and the app registry found by the reconcile loop, by kind (corrected, unregistered, adopted)."},
			[]string{"kind"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: Pending,
			Help: "Apps whose last change has not reached Keycloak yet."}),
	}
	if s.reconcile <= 0 {
		s.reconcile = defaultReconcile
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.kc = newAdmin(cfg.URL, cfg.Realm, cfg.ClientID, cfg.ClientSecret, cfg.HTTP, func() time.Time { return s.now() })
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{s.drift, s.pending} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// Run keeps Keycloak in sync until ctx ends: it takes the lease (or waits for it), then drains the changes
// as they are announced (and every second, for retries), and compares the whole realm every
// ReconcileInterval. Losing the lease (the PostgreSQL connection) drops back to waiting for it.
func (s *Syncer) Run(ctx context.Context, lead Leader) error {
	for ctx.Err() == nil {
		lease, err := lead(ctx)
		if err != nil {
			if !errors.Is(err, postgres.ErrNotLeader) {
				s.log.Warn("keycloak sync: cannot take the lease", "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(s.retryLead):
			}
			continue
		}
		s.log.Info("keycloak sync: leading", "realm", s.realm)
		err = s.lead(ctx, lease)
		lease.Release()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("keycloak sync: lease lost", "err", err)
		}
	}
	return nil
}

func (s *Syncer) lead(ctx context.Context, lease Lease) error {
	var last time.Time
	for {
		if err := s.Drain(ctx); err != nil {
			s.log.Warn("keycloak sync: drain", "err", err)
		}
		if s.now().Sub(last) >= s.reconcile {
			if err := s.Reconcile(ctx); err != nil {
				s.log.Warn("keycloak sync: reconcile", "err", err)
			}
			last = s.now()
		}
		if _, err := lease.Wait(ctx, s.poll); err != nil {
			return err
		}
	}
}

// Backoff is the wait before attempt n+1 after n failed ones: 1 s doubling, at most 30 s.
func Backoff(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	if n > 6 {
		return maxBackoff
	}
	return min(time.Second<<(n-1), maxBackoff)
}

// Drain brings every app with a due change to Keycloak; a failure keeps the app dirty with its error and
// the next attempt backed off.
func (s *Syncer) Drain(ctx context.Context) error {
	defer s.updatePending(ctx)
	jobs, err := s.reg.DueSyncs(ctx, batch)
	if err != nil {
		return err
	}
	if len(jobs) == 0 {
		return nil
	}
	scopes, err := s.kc.realmScopes(ctx)
	if err != nil {
		return s.failAll(ctx, jobs, err)
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := s.syncOne(ctx, j.ClientID, scopes); err != nil {
			s.log.Warn("keycloak sync: change not delivered", "client_id", j.ClientID, "attempt", j.Attempts+1, "err", err)
			if ferr := s.reg.SyncFailed(ctx, j.ClientID, err.Error(), s.now().Add(Backoff(j.Attempts+1))); ferr != nil {
				return ferr
			}
			continue
		}
		if err := s.reg.SyncDone(ctx, j); err != nil {
			return err
		}
	}
	return nil
}

func (s *Syncer) failAll(ctx context.Context, jobs []postgres.SyncJob, cause error) error {
	for _, j := range jobs {
		if err := s.reg.SyncFailed(ctx, j.ClientID, cause.Error(), s.now().Add(Backoff(j.Attempts+1))); err != nil {
			return err
		}
	}
	return cause
}

func (s *Syncer) updatePending(ctx context.Context) {
	if n, err := s.reg.PendingSyncs(context.WithoutCancel(ctx)); err == nil {
		s.pending.Set(float64(n))
	}
}

// syncOne brings one app's client to the registry's state.
func (s *Syncer) syncOne(ctx context.Context, clientID string, scopes map[string]string) error {
	if s.isProtected(clientID) {
		return nil // the registry may hold it, the sync never touches it
	}
	app, err := s.reg.Get(ctx, clientID)
	if err != nil {
		return err
	}
	have, found, err := s.kc.findClient(ctx, clientID)
	if err != nil {
		return err
	}
	if app.State == apps.StateDeactivated {
		if !found {
			return nil
		}
		if err := s.kc.endSessions(ctx, have, s.now().Unix()); err != nil {
			return err
		}
		return s.kc.deleteClient(ctx, have.ID)
	}
	if found {
		if adopted, err := s.adopt(ctx, app, have); err != nil || adopted {
			return err // adopted: the update is a change of its own, synced next
		}
	}
	secret, err := s.reg.PendingSecret(ctx, clientID)
	if err != nil {
		return err
	}
	want := Desired(app, names(scopes), secret)
	if !found {
		return s.kc.createClient(ctx, want)
	}
	if have.Enabled && !want.Enabled {
		// Suspended (or back to review): no token issued before may be refreshed when it comes back.
		if err := s.kc.endSessions(ctx, have, s.now().Unix()); err != nil {
			return err
		}
	}
	if len(Drift(want, have)) == 0 && secret == "" {
		return nil
	}
	return s.kc.updateClient(ctx, have, want, scopes)
}

// adopt completes an imported app from its existing client (once: an adopted app is no longer Adoptable).
func (s *Syncer) adopt(ctx context.Context, app apps.App, have Client) (bool, error) {
	if !Adoptable(app, true) {
		return false, nil
	}
	imported := app.Owner == "import"
	if !imported {
		evs, err := s.reg.History(ctx, app.ClientID)
		if err != nil {
			return false, err
		}
		imported = len(evs) > 0 && (evs[0].Action == "import" || evs[0].Actor == "import")
	}
	if !Adoptable(app, imported) {
		return false, nil
	}
	reason := "adopted from Keycloak: the imported app's client existed before the registry; its name, redirect URIs, " +
		"authentication method, keys and launch types are copied into the registry, which owns them from now on"
	if _, err := s.reg.Update(ctx, Adopt(app, have), ActorAdopt, reason); err != nil {
		return false, fmt.Errorf("adopt %s: %w", app.ClientID, err)
	}
	s.drift.WithLabelValues(DriftAdopted).Inc()
	s.log.Info("keycloak sync: adopted an imported app's client", "client_id", app.ClientID)
	return true, nil
}

// Reconcile compares every client of the realm with the registry: a client the registry does not know (and
// that is not protected) is removed, a registry app's client that differs in an owned field is corrected,
// one that is missing is created. Each is audited and counted. Apps with a change waiting are left to Drain.
func (s *Syncer) Reconcile(ctx context.Context) error {
	clients, err := s.kc.listClients(ctx)
	if err != nil {
		return err
	}
	scopes, err := s.kc.realmScopes(ctx)
	if err != nil {
		return err
	}
	list, err := s.reg.List(ctx)
	if err != nil {
		return err
	}
	byID := make(map[string]apps.App, len(list))
	for _, a := range list {
		byID[a.ClientID] = a
	}
	have := make(map[string]Client, len(clients))
	var errs []error
	for _, c := range clients {
		have[c.ClientID] = c
		if _, ok := byID[c.ClientID]; ok || s.isProtected(c.ClientID) {
			continue
		}
		if len(list) == 0 {
			// An empty registry beside a realm with clients is far likelier a registry not imported yet (or the
			// wrong database) than a realm to empty: remove nothing, and say so.
			s.log.Warn("keycloak sync: the registry is empty; unregistered clients left in place", "client_id", c.ClientID)
			continue
		}
		errs = append(errs, s.removeUnregistered(ctx, c))
	}
	for _, a := range list {
		if s.isProtected(a.ClientID) {
			continue
		}
		if st, err := s.reg.Sync(ctx, a.ClientID); err != nil || st.Pending {
			continue // Drain delivers it
		}
		errs = append(errs, s.reconcileApp(ctx, a, have, scopes))
	}
	return errors.Join(errs...)
}

func (s *Syncer) reconcileApp(ctx context.Context, a apps.App, have map[string]Client, scopes map[string]string) error {
	c, found := have[a.ClientID]
	var drift []string
	switch {
	case a.State == apps.StateDeactivated && found:
		drift = []string{"exists though the app is deactivated"}
	case a.State == apps.StateDeactivated:
		return s.reg.MarkSynced(ctx, a.ClientID)
	case !found:
		drift = []string{"missing"}
	default:
		if adopted, err := s.adopt(ctx, a, c); err != nil || adopted {
			return err
		}
		drift = Drift(Desired(a, names(scopes), ""), c)
	}
	if len(drift) == 0 {
		return s.reg.MarkSynced(ctx, a.ClientID)
	}
	after := a
	ev := apps.Event{Actor: ActorReconcile, Action: ActionCorrect, ClientID: a.ClientID, After: &after,
		Reason: "Keycloak client differed from the registry (" + strings.Join(drift, ", ") + "); corrected to the registry"}
	// Audited first: a correction nobody can see is not made.
	if err := s.reg.Audit(ctx, ev); err != nil {
		return err
	}
	s.drift.WithLabelValues(DriftCorrected).Inc()
	s.log.Warn("keycloak sync: drift corrected", "client_id", a.ClientID, "fields", drift)
	if err := s.syncOne(ctx, a.ClientID, scopes); err != nil {
		return fmt.Errorf("correct %s: %w", a.ClientID, err)
	}
	return s.reg.MarkSynced(ctx, a.ClientID)
}

func (s *Syncer) removeUnregistered(ctx context.Context, c Client) error {
	ev := apps.Event{Actor: ActorReconcile, Action: ActionRemove, ClientID: c.ClientID,
		After:  &apps.App{ClientID: c.ClientID, Name: c.Name},
		Reason: "Keycloak client not in the app registry (added by hand?); removed"}
	if err := s.reg.Audit(ctx, ev); err != nil {
		return err
	}
	s.drift.WithLabelValues(DriftUnregistered).Inc()
	s.log.Warn("keycloak sync: unregistered client removed", "client_id", c.ClientID)
	if err := s.kc.endSessions(ctx, c, s.now().Unix()); err != nil && !errors.Is(err, errNotFound) {
		return err
	}
	return s.kc.deleteClient(ctx, c.ID)
}

func (s *Syncer) isProtected(clientID string) bool { return slices.Contains(s.protected, clientID) }

func names(scopes map[string]string) []string {
	out := make([]string, 0, len(scopes))
	for n := range scopes {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
