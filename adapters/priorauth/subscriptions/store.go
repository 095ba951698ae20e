package subscriptions

import (
	"context"
	"errors"
	"time"
)

// Subscription statuses (R4 Subscription.status, http://hl7.org/fhir/subscription-status).
const (
	StatusRequested = "requested" // created; the handshake is not yet accepted
	StatusActive    = "active"    // the handshake was accepted: notifications are sent
	StatusError     = "error"     // deliveries failed MaxAttempts times: nothing more is sent
	StatusOff       = "off"       // deleted by its owner: nothing more is sent
)

// Payload contents (Subscriptions Backport 1.1.0 backport-payload-content, R5 Subscription.content).
const (
	ContentEmpty        = "empty"
	ContentIDOnly       = "id-only"
	ContentFullResource = "full-resource"
)

// Subscription is one stored Subscription with its delivery state.
type Subscription struct {
	ID       string
	ClientID string // the owner: only this client reads or deletes it
	// Filter holds the owner's identifiers (system|value) the topic filter named: notifications go out for
	// the requests of exactly these identifiers.
	Filter          []string
	Endpoint        string
	Headers         []string // "Name: value", sent with every notification; never logged
	Content         string
	HeartbeatPeriod time.Duration // 0: no heartbeats
	Timeout         time.Duration
	Status          string
	Resource        []byte // the Subscription as created (JSON); id and status are set when it is answered
	Created         time.Time
	Events          int64     // events so far: the last event number assigned
	LastSent        time.Time // the last delivery the subscriber accepted; zero before the handshake

	// The handshake's or heartbeat's delivery state: attempts made since the last success, when the next
	// one is due, and the lease of the replica sending it (zero when nobody holds it).
	Attempts    int
	NextAttempt time.Time
	Lease       time.Time
}

// Notification is one event notification, its body built once when the event was enqueued: a retry, on
// any replica and after any restart, sends the same bytes.
type Notification struct {
	SubscriptionID string
	EventNumber    int64
	RequestID      string
	Version        int
	Patients       []string // the members it is about (bare ids), for the audit record
	Body           []byte
	State          string // NotePending, NoteDelivered or NoteFailed
	Attempts       int
	NextAttempt    time.Time
	Lease          time.Time
	Created        time.Time
}

// Notification states.
const (
	NotePending   = "pending"
	NoteDelivered = "delivered"
	NoteFailed    = "failed" // MaxAttempts reached; its subscription is in error
)

// Claimed is a notification a replica holds the lease of, with what it needs to send it.
type Claimed struct {
	Notification
	Sub Subscription
}

// Result is the outcome of one delivery attempt, written back by the replica that held the lease.
type Result struct {
	Delivered bool
	At        time.Time
	// Next is when to try again after a failure; zero with GiveUp.
	Next time.Time
	// GiveUp: this was the last attempt; the subscription goes to StatusError.
	GiveUp bool
}

// Errors of a Store.
var (
	ErrNotFound = errors.New("subscription not found")
	// ErrLeaseLost: another replica took the row over (the lease expired); the result was not written.
	ErrLeaseLost = errors.New("subscription delivery lease lost")
)

// Store keeps Subscriptions and their outbox of notifications. PostgreSQL (every replica sees the same
// subscriptions and queue, and it survives a restart) or the one-process memory store.
type Store interface {
	// Create adds a new subscription (ID unique).
	Create(ctx context.Context, s Subscription) error
	// Get returns one subscription, whoever owns it (the caller checks).
	Get(ctx context.Context, id string) (Subscription, error)
	// Live counts a client's subscriptions in state requested or active.
	Live(ctx context.Context, clientID string) (int, error)
	// SetOff turns a subscription off: nothing more is sent for it.
	SetOff(ctx context.Context, id string) error
	// Enqueue adds the notification of one decision (requestID, version) to every subscription in state
	// requested or active whose Filter holds one of identifiers and which does not have it yet; build makes
	// its body given the subscription and the event number assigned to it, in the same transaction. It
	// returns how many notifications were added.
	Enqueue(ctx context.Context, requestID string, version int, identifiers, patients []string,
		build func(s Subscription, eventNumber int64) ([]byte, error)) (int, error)
	// ClaimSubscriptions leases up to limit subscriptions that owe a handshake (requested) or a heartbeat
	// (active, a heartbeat period, nothing sent within it), whose next attempt is due at now and which
	// nobody holds, counting the attempt.
	ClaimSubscriptions(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Subscription, error)
	// FinishSubscription writes the result of a handshake or heartbeat claimed with lease.
	FinishSubscription(ctx context.Context, id string, lease time.Time, r Result) error
	// ClaimNotifications leases up to limit pending notifications that are due at now: for each active
	// subscription only its lowest pending event number (notifications go out in event order).
	ClaimNotifications(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Claimed, error)
	// FinishNotification writes the result of a notification claimed with lease.
	FinishNotification(ctx context.Context, subscriptionID string, eventNumber int64, lease time.Time, r Result) error
	// Notifications lists a subscription's notifications in event order (tests, the admin view).
	Notifications(ctx context.Context, subscriptionID string) ([]Notification, error)
}
