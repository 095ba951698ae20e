package apps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
)

// AuditSink is where an Auditor writes: the audit spool (*audit.Spool), which returns once the entry is
// durable in the same hash chain as the access records.
type AuditSink interface {
	Write(ctx context.Context, r audit.Record) error
}

var _ AuditSink = (*audit.Spool)(nil)

// ErrNoAuditSink is what an Auditor built without a sink returns for every change: with nowhere to audit,
// nothing changes (fail closed).
var ErrNoAuditSink = errors.New("apps: no audit sink")

// NewAuditor returns the Auditor that writes each Event as an admin entry (audit.KindAdmin) into sink: actor,
// action, target (the client id), reason, and the app before (null on registration) and after, with every
// secret removed (see Redact). The Store calls it inside the change's transaction and passes the context it
// wants the write bound by; an error (the spool full or closed, an event without actor or app) rolls the
// change back.
func NewAuditor(sink AuditSink) Auditor {
	return func(ctx context.Context, ev Event) error {
		if sink == nil {
			return ErrNoAuditSink
		}
		r, err := AuditRecord(ev)
		if err != nil {
			return err
		}
		return sink.Write(ctx, r)
	}
}

// AuditRecord is ev as an admin entry of the audit log. An event without an id gets one (the log needs it to
// drop Kafka's duplicates); one without a time is stamped now.
func AuditRecord(ev Event) (audit.Record, error) {
	if ev.After == nil {
		return audit.Record{}, fmt.Errorf("%w: event %q (%s of %s) has no app after the change", audit.ErrIncomplete, ev.ID, ev.Action, ev.ClientID)
	}
	after, err := Redact(*ev.After)
	if err != nil {
		return audit.Record{}, err
	}
	var before json.RawMessage // nil: null on the wire (registration)
	if ev.Before != nil {
		if before, err = Redact(*ev.Before); err != nil {
			return audit.Record{}, err
		}
	}
	id, at := ev.ID, ev.Time
	if id == "" {
		id = audit.NewID()
	}
	if at.IsZero() {
		at = time.Now()
	}
	return audit.Record{Schema: audit.SchemaVersion, Kind: audit.KindAdmin, ID: id, Time: at.UTC(),
		Actor: ev.Actor, Action: ev.Action, Target: ev.ClientID, Reason: ev.Reason, Before: before, After: after}, nil
}

// jwkPrivate are the members of a JWK that hold private or symmetric key material (RFC 7518 §6.2.2, §6.3.2,
// §6.4.1): a JWKS in the audit log keeps only what anyone may see.
var jwkPrivate = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// Redact is the app as JSON with every secret removed, at any depth: members named like a secret (containing
// "secret" or "password", or ending in "token": client_secret, registration_access_token …) and, in any
// object with a "kty" (a JWK, inline in jwks), the private key members. Registration policy already refuses
// private keys in a JWKS; this holds for whatever reaches the log anyway. Members come out in name order.
func Redact(a App) (json.RawMessage, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // numbers as written: no float rounding
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(scrub(v))
}

func scrub(v any) any {
	switch v := v.(type) {
	case map[string]any:
		_, jwk := v["kty"]
		for k, m := range v {
			if secretName(k) || (jwk && slices.Contains(jwkPrivate, k)) {
				delete(v, k)
				continue
			}
			v[k] = scrub(m)
		}
	case []any:
		for i := range v {
			v[i] = scrub(v[i])
		}
	}
	return v
}

func secretName(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "secret") || strings.Contains(k, "password") || strings.HasSuffix(k, "token")
}
