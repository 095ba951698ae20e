// Package subscriptions is the Prior Authorization API's rest-hook Subscriptions (Subscriptions Backport
// 1.1.0 for R4, the PAS topic PASSubscriptionTopic): a provider subscribes to the decisions on its own
// pended requests, fhirwall sends the handshake, then one event notification per decision, and heartbeats;
// only to the hosts the provider's client registered, with retries and backoff, every attempt audited.
//
// Notifications are an outbox: Decided builds each body once and stores it with its event number in the
// same transaction, and the worker (Run, on every replica) claims due rows with a lease and sends them, so a
// crash never loses a notification and a retry never sends different bytes.
package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

// Delivery is one delivery attempt as the audit sees it. Audit is called twice per attempt: before
// anything is sent (Phase "attempt", Status 0: an error stops the delivery) and after (Phase "result", the
// subscriber's status or the error; an error there counts the attempt as failed, so it is retried and
// recorded again). Endpoint carries no query string; header values are never in it.
type Delivery struct {
	SubscriptionID string
	ClientID       string
	Endpoint       string
	Type           string // handshake, heartbeat or event-notification
	RequestID      string // the prior-auth request the event is about ("" for handshakes and heartbeats)
	MessageID      string // unique per message, the same on every retry: <subscription>/<event number>, …/handshake, …/heartbeat-<n>
	EventNumber    int64
	Attempt        int
	Phase          string // "attempt" or "result"
	Status         int    // the subscriber's HTTP status; 0 when none came back (or before sending)
	Error          string // why the attempt failed or was refused; "" when delivered
	Patients       []string
	Bytes          int64
	Took           time.Duration
	Time           time.Time
}

// Delivery phases.
const (
	PhaseAttempt = "attempt"
	PhaseResult  = "result"
)

// Options configure a Service.
type Options struct {
	Client *http.Client // redirects are never followed, whatever it says; nil: a plain client
	Log    *slog.Logger
	Now    func() time.Time
	// Base is the API's public base (https://127.0.0.1:10000/prior-auth/fhir): the notifications' fullUrls
	// and Subscription reference.
	Base           string
	MaxAttempts    int           // per notification, handshake or heartbeat; default 8
	InitialBackoff time.Duration // doubling up to MaxBackoff; defaults 1 s and 5 min
	MaxBackoff     time.Duration
	// Audit records every delivery attempt (the lead wires it to decision.Core.RecordDelivery). Required.
	Audit func(ctx context.Context, d Delivery) error
	// HostsOf returns a client's registered notification hosts now (the registry's notify_hosts): checked
	// again before every delivery. Required.
	HostsOf func(clientID string) []string
	// Poll is how often the worker looks for due work when nothing woke it; default 1 s.
	Poll time.Duration
	// Lease is how long a replica holds a claimed delivery; it must exceed the longest delivery
	// (MaxTimeout). Default 2 min.
	Lease time.Duration
	// MaxPerClient bounds a client's live (requested or active) subscriptions; default 20. Each one costs a
	// handshake, heartbeats and a copy of every notification.
	MaxPerClient int
}

// Service serves Subscription create, read and delete, enqueues notifications and delivers them.
type Service struct {
	store  Store
	opts   Options
	client *http.Client
	log    *slog.Logger
	now    func() time.Time
	wake   chan struct{}
}

// New returns a Service over store.
func New(store Store, opts Options) (*Service, error) {
	if store == nil || opts.Audit == nil || opts.HostsOf == nil || opts.Base == "" {
		return nil, errors.New("subscriptions: a store, Base, Audit and HostsOf are required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 8
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = time.Second
	}
	if opts.MaxBackoff < opts.InitialBackoff {
		opts.MaxBackoff = max(5*time.Minute, opts.InitialBackoff)
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.MaxPerClient <= 0 {
		opts.MaxPerClient = 20
	}
	if opts.Lease <= MaxTimeout {
		opts.Lease = 2 * time.Minute
	}
	c := &http.Client{}
	if opts.Client != nil {
		cc := *opts.Client
		c = &cc
	}
	// A redirect would take the notification (and the subscriber's headers) to a host nobody registered.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Service{store: store, opts: opts, client: c, log: opts.Log, now: opts.Now, wake: make(chan struct{}, 1)}, nil
}

// Serve answers a Subscription request on the Prior Authorization API for owner (the caller as the decision
// established it); base is the API's base as the client reached it (Location).
func (s *Service) Serve(ctx context.Context, d *decision.Decision, owner Owner, base string) (decision.Answer, error) {
	if d.Request.ResourceType != "Subscription" || owner.ClientID == "" {
		return decision.Answer{}, fmt.Errorf("subscriptions: a %s request without an owner reached the subscriptions service", d.Request.ResourceType)
	}
	switch d.Request.Interaction {
	case fhir.Create:
		if d.Request.Conditional {
			return decision.RefusalAnswer(outcome.NotSupported.WithDiagnostics("conditional create of a Subscription is not supported"), "not_supported"), nil
		}
		return s.create(ctx, d.Input.Body, owner, base)
	case fhir.Read:
		return s.read(ctx, d.Request.ID, owner)
	case fhir.Delete:
		return s.delete(ctx, d.Request.ID, owner)
	}
	return decision.RefusalAnswer(outcome.NotAllowed, "not_supported"), nil
}

func unprocessable(err error) decision.Answer {
	r := outcome.Refusal{Status: http.StatusUnprocessableEntity, Code: "business-rule", Diagnostics: err.Error()}
	return decision.RefusalAnswer(r, "invalid_subscription")
}

func (s *Service) create(ctx context.Context, body []byte, owner Owner, base string) (decision.Answer, error) {
	if len(owner.OrgIdentifiers) == 0 {
		return unprocessable(invalid("the organization you act for has no identifier to filter on")), nil
	}
	sub, err := parse(body, owner)
	if err != nil {
		switch {
		case errors.Is(err, errNotSubscription):
			return decision.RefusalAnswer(outcome.Rejected.WithDiagnostics(err.Error()), "invalid_subscription"), nil
		case errors.Is(err, ErrInvalid):
			return unprocessable(err), nil
		}
		return decision.Answer{}, err
	}
	live, err := s.store.Live(ctx, owner.ClientID)
	if err != nil {
		return decision.Answer{}, fmt.Errorf("subscriptions: create: %w", err)
	}
	if live >= s.opts.MaxPerClient {
		return unprocessable(invalid("your client has %d live subscriptions, the most allowed: delete one first", live)), nil
	}
	now := s.now().UTC()
	sub.ID, sub.ClientID, sub.Status, sub.Created, sub.NextAttempt = newID(), owner.ClientID, StatusRequested, now, now
	sub.Resource = append([]byte(nil), body...)
	out, err := answerResource(sub)
	if err != nil {
		return unprocessable(invalid("the body is not a JSON object")), nil
	}
	if err := s.store.Create(ctx, sub); err != nil {
		return decision.Answer{}, fmt.Errorf("subscriptions: create: %w", err)
	}
	s.log.Info("subscription created", "subscription", sub.ID, "client_id", owner.ClientID, "content", sub.Content,
		"heartbeat_s", int(sub.HeartbeatPeriod.Seconds()))
	s.poke()
	h := fhirHeader()
	h.Set("Location", base+"/Subscription/"+sub.ID)
	return decision.Answer{Status: http.StatusCreated, Header: h, Body: out, Outcome: "created"}, nil
}

func fhirHeader() http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/fhir+json;charset=utf-8")
	h.Set("Cache-Control", "no-store")
	return h
}

// own returns the owner's subscription; anybody else's is ErrNotFound, exactly like a missing one.
func (s *Service) own(ctx context.Context, id string, owner Owner) (Subscription, error) {
	sub, err := s.store.Get(ctx, id)
	if err != nil {
		return Subscription{}, err
	}
	// Another client's, or one its owner deleted (off): as if it never existed.
	if sub.ClientID != owner.ClientID || sub.Status == StatusOff {
		return Subscription{}, ErrNotFound
	}
	return sub, nil
}

func (s *Service) read(ctx context.Context, id string, owner Owner) (decision.Answer, error) {
	sub, err := s.own(ctx, id, owner)
	if errors.Is(err, ErrNotFound) {
		return decision.RefusalAnswer(outcome.NotFound, "not_found"), nil
	} else if err != nil {
		return decision.Answer{}, fmt.Errorf("subscriptions: read: %w", err)
	}
	out, err := answerResource(sub)
	if err != nil {
		return decision.Answer{}, err
	}
	return decision.Answer{Status: http.StatusOK, Header: fhirHeader(), Body: out, Outcome: "read"}, nil
}

func (s *Service) delete(ctx context.Context, id string, owner Owner) (decision.Answer, error) {
	_, err := s.own(ctx, id, owner)
	if errors.Is(err, ErrNotFound) {
		return decision.RefusalAnswer(outcome.NotFound, "not_found"), nil
	} else if err != nil {
		return decision.Answer{}, fmt.Errorf("subscriptions: delete: %w", err)
	}
	if err := s.store.SetOff(ctx, id); err != nil {
		return decision.Answer{}, fmt.Errorf("subscriptions: delete: %w", err)
	}
	s.log.Info("subscription turned off", "subscription", id, "client_id", owner.ClientID)
	return decision.Answer{Status: http.StatusNoContent, Header: http.Header{}, Outcome: "deleted"}, nil
}

// Decided enqueues one event notification of ev for every requested or active subscription whose filter
// names one of ev.OrgIdentifiers. The same (RequestID, Version) enqueues nothing the second time.
func (s *Service) Decided(ctx context.Context, ev Event) error {
	if ev.RequestID == "" || ev.ClaimResponseID == "" || len(ev.ResponseBundle) == 0 {
		return errors.New("subscriptions: an event needs its request id, ClaimResponse id and response Bundle")
	}
	if len(ev.OrgIdentifiers) == 0 {
		return nil
	}
	t := ev.Time
	if t.IsZero() {
		t = s.now()
	}
	n, err := s.store.Enqueue(ctx, ev.RequestID, ev.Version, ev.OrgIdentifiers, ev.Patients,
		func(sub Subscription, number int64) ([]byte, error) {
			return notificationBody(s.opts.Base, sub, TypeEvent, sub.Status, number,
				&event{number: number, time: t, claimResponseID: ev.ClaimResponseID, responseBundle: ev.ResponseBundle}, s.now())
		})
	if err != nil {
		return fmt.Errorf("subscriptions: enqueue: %w", err)
	}
	if n > 0 {
		s.log.Info("notifications enqueued", "request", ev.RequestID, "version", ev.Version, "subscriptions", n)
		s.poke()
	}
	return nil
}

// RegistryHosts is Options.HostsOf read from the client registry: a client that is unknown, inactive or that
// the registry cannot answer for has no host (nothing is sent; the delivery is retried).
func RegistryHosts(reg decision.Registry) func(clientID string) []string {
	return func(clientID string) []string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := reg.Lookup(ctx, clientID)
		if err != nil || !c.Active {
			return nil
		}
		return c.NotifyHosts
	}
}

// poke wakes the worker (this replica's; the others find the rows on their next poll).
func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
