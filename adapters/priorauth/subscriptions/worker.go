package subscriptions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// batch is how many deliveries one pass claims (and sends at once).
const batch = 16

// maxResponseBody is how much of a subscriber's answer is read (and thrown away) so the connection can be
// reused; the rest is not waited for.
const maxResponseBody = 64 << 10

// Run delivers until ctx ends: handshakes of requested subscriptions (accepted → active), due event
// notifications in event order per subscription, heartbeats. Every replica may run it: rows are claimed
// with a lease, so no two replicas send the same message at once.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.Poll)
	defer t.Stop()
	for {
		s.pass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.wake:
		}
	}
}

// pass sends what is due now; it keeps going while full batches come back.
func (s *Service) pass(ctx context.Context) {
	for ctx.Err() == nil {
		subs, err := s.store.ClaimSubscriptions(ctx, s.now(), s.opts.Lease, batch)
		if err != nil {
			s.log.Error("subscriptions: claim handshakes and heartbeats", "error", err)
			return
		}
		notes, err := s.store.ClaimNotifications(ctx, s.now(), s.opts.Lease, batch)
		if err != nil {
			s.log.Error("subscriptions: claim notifications", "error", err)
		}
		var wg sync.WaitGroup
		for _, sub := range subs {
			wg.Go(func() { s.sendSubscriptionMessage(ctx, sub) })
		}
		for _, n := range notes {
			wg.Go(func() { s.sendNotification(ctx, n) })
		}
		wg.Wait()
		if len(subs) < batch && len(notes) < batch {
			return
		}
	}
}

// backoff is the wait after the attempt-th failure: InitialBackoff doubling, at most MaxBackoff.
func (s *Service) backoff(attempt int) time.Duration {
	d := s.opts.InitialBackoff
	for i := 1; i < attempt && d < s.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.opts.MaxBackoff)
}

func (s *Service) result(delivered bool, attempt int) Result {
	now := s.now()
	switch {
	case delivered:
		return Result{Delivered: true, At: now}
	case attempt >= s.opts.MaxAttempts:
		return Result{GiveUp: true, At: now}
	}
	return Result{At: now, Next: now.Add(s.backoff(attempt))}
}

// sendSubscriptionMessage sends a claimed subscription's handshake (requested) or heartbeat (active).
func (s *Service) sendSubscriptionMessage(ctx context.Context, sub Subscription) {
	typ, msgID := TypeHandshake, sub.ID+"/handshake"
	if sub.Status == StatusActive {
		typ, msgID = TypeHeartbeat, sub.ID+"/heartbeat-"+strconv.FormatInt(s.now().Unix(), 10)
	}
	// Handshakes and heartbeats carry no event: they are built when sent (backport §Handshake: status is the
	// subscription's, events-since-subscription-start its count so far).
	body, err := notificationBody(s.opts.Base, sub, typ, sub.Status, sub.Events, nil, s.now())
	if err != nil {
		s.log.Error("subscriptions: build", "subscription", sub.ID, "type", typ, "error", err)
		return
	}
	ok := s.deliver(ctx, sub, Delivery{Type: typ, MessageID: msgID, Attempt: sub.Attempts}, body)
	r := s.result(ok, sub.Attempts)
	if err := s.store.FinishSubscription(ctx, sub.ID, sub.Lease, r); err != nil {
		s.log.Error("subscriptions: record delivery", "subscription", sub.ID, "type", typ, "error", err)
		return
	}
	if r.GiveUp {
		s.log.Warn("subscription in error: deliveries failed", "subscription", sub.ID, "type", typ, "attempts", sub.Attempts)
	}
}

func (s *Service) sendNotification(ctx context.Context, c Claimed) {
	d := Delivery{Type: TypeEvent, RequestID: c.RequestID, EventNumber: c.EventNumber, Attempt: c.Attempts,
		MessageID: c.SubscriptionID + "/" + strconv.FormatInt(c.EventNumber, 10), Patients: c.Patients}
	ok := s.deliver(ctx, c.Sub, d, c.Body)
	r := s.result(ok, c.Attempts)
	if err := s.store.FinishNotification(ctx, c.SubscriptionID, c.EventNumber, c.Lease, r); err != nil {
		s.log.Error("subscriptions: record delivery", "subscription", c.SubscriptionID, "event", c.EventNumber, "error", err)
		return
	}
	if r.GiveUp {
		s.log.Warn("subscription in error: notification not delivered", "subscription", c.SubscriptionID,
			"event", c.EventNumber, "attempts", c.Attempts)
	}
}

// errHostNotRegistered: the endpoint's host is no longer one the client registered.
var errHostNotRegistered = errors.New("refused: the endpoint's host is not registered for the client")

// deliver makes one attempt: host check, audit, POST, audit. It reports whether the subscriber accepted
// the message and both audit records were written.
func (s *Service) deliver(ctx context.Context, sub Subscription, d Delivery, body []byte) bool {
	u, err := url.Parse(sub.Endpoint)
	if err != nil {
		return false
	}
	d.SubscriptionID, d.ClientID, d.Endpoint, d.Bytes = sub.ID, sub.ClientID, redacted(u), int64(len(body))
	audit := func(d Delivery) error {
		d.Time = s.now()
		return s.opts.Audit(context.WithoutCancel(ctx), d)
	}
	if !HostAllowed(u, s.opts.HostsOf(sub.ClientID)) {
		d.Phase, d.Error = PhaseResult, errHostNotRegistered.Error()
		if err := audit(d); err != nil {
			s.log.Error("subscriptions: audit", "subscription", sub.ID, "error", err)
		}
		s.log.Warn("notification refused: host not registered", "subscription", sub.ID, "client_id", sub.ClientID, "host", u.Host)
		return false
	}
	d.Phase = PhaseAttempt
	if err := audit(d); err != nil {
		// Nothing leaves unaudited: the attempt counts as failed and comes back later.
		s.log.Error("subscriptions: audit failed; not sending", "subscription", sub.ID, "type", d.Type, "error", err)
		return false
	}
	start := time.Now()
	status, err := s.post(ctx, sub, body)
	d.Phase, d.Status, d.Took = PhaseResult, status, time.Since(start)
	ok := err == nil && status >= 200 && status < 300
	switch {
	case err != nil:
		d.Error = "failed: " + err.Error()
	case !ok:
		d.Error = "failed: status " + strconv.Itoa(status)
	}
	if err := audit(d); err != nil {
		s.log.Error("subscriptions: audit of the result failed; will send again", "subscription", sub.ID, "type", d.Type, "error", err)
		return false
	}
	if !ok {
		s.log.Warn("notification not accepted", "subscription", sub.ID, "type", d.Type, "host", u.Host, "status", status,
			"attempt", d.Attempt, "error", d.Error)
	}
	return ok
}

// post sends body to the subscriber with its channel headers, within its timeout. The headers' values are
// secrets of the subscriber (Inferno puts a bearer token there): they go on the wire and nowhere else.
func (s *Service) post(ctx context.Context, sub Subscription, body []byte) (int, error) {
	timeout := sub.Timeout
	if timeout <= 0 || timeout > MaxTimeout {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.Endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("request: %w", err)
	}
	for _, h := range sub.Headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("User-Agent", "fhirwall")
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the audit record already
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// redacted is the endpoint without query or fragment, for the audit record and logs.
func redacted(u *url.URL) string {
	c := *u
	c.RawQuery, c.Fragment, c.User = "", "", nil
	return c.String()
}
