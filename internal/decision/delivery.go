package decision

import (
	"context"
	"fmt"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
)

// InteractionNotification is the audit records' interaction for a message fhirwall sends on its own
// initiative: a Subscription handshake, heartbeat or event notification (Prior Authorization).
const InteractionNotification = "notification"

// Delivery is one attempt to send such a message. It is audited like an answer: what left, to whom, about
// which members, and what the receiver said.
type Delivery struct {
	API       string
	ClientID  string   // the client that owns the Subscription
	Path      string   // what was sent, below the API's base: Subscription/<id>
	Type      string   // handshake, heartbeat or event-notification
	RequestID string   // the notification's id (unique per message, the same on every retry)
	Patients  []string // the members the message is about (bare ids)
	Status    int      // the receiver's HTTP status; 0 when none came back
	Outcome   string   // delivered, failed: <why>, refused: <why>
	Bytes     int64
	Took      time.Duration
	Time      time.Time
}

// RecordDelivery makes the audit record of a delivery durable. A non-nil error means the message must not be
// sent (or, after the fact, that its record is missing: the caller retries the delivery, never skips it).
func (c *Core) RecordDelivery(ctx context.Context, dl Delivery) error {
	if dl.Time.IsZero() {
		dl.Time = c.Now()
	}
	r := audit.Record{
		Schema: audit.SchemaVersion, Kind: audit.KindAccess, ID: audit.NewID(), Time: dl.Time.UTC(), API: dl.API,
		DecisionID: audit.NewID(), Allow: true, Reasons: []string{"subscription_" + dl.Type},
		PolicyRevision: c.Policy.Revision(), ClientID: dl.ClientID, Scopes: []string{}, Patients: nonNil(dl.Patients),
		ResourceType: "Subscription", Interaction: InteractionNotification, Method: "POST", Path: dl.Path,
		RequestID: dl.RequestID, Status: dl.Status, DataCategories: []string{}, Bytes: dl.Bytes,
		UpstreamMillis: float64(dl.Took.Microseconds()) / 1000, Outcome: dl.Outcome,
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), AuditTimeout)
	defer cancel()
	if err := c.Audit.Write(ctx, r); err != nil {
		return fmt.Errorf("audit: delivery: %w", err)
	}
	return nil
}
