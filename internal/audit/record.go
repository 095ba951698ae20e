// Package audit is fhirwall's audit trail: the record written for every request before its answer leaves,
// the durable spool that holds records until Kafka has them, the hash chain and signed checkpoints that make
// tampering visible, and the readers (verify, query, AuditEvent export, CMS report) that work on it.
package audit

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// SchemaVersion is bumped on every incompatible change of the entries (Record, Checkpoint). Version 2 added
// kind, chain, seq, prev_hash and hash, and the checkpoint entry. The admin kind came later without a bump:
// it changes no byte of an access record or checkpoint, and a reader that selects entries by kind (as the
// CMS report and the AuditEvent export do) skips it.
const SchemaVersion = "2"

// Kinds of entry in the audit log.
const (
	KindAccess     = "access"     // a Record: one request
	KindCheckpoint = "checkpoint" // a Checkpoint: the signed chain head
	KindAdmin      = "admin"      // a Record with Kind admin: one administrative change (an app registered, approved, suspended …)
)

// Record is one request as a SIEM sees it, or (Kind admin) one administrative change. Field names are the wire
// format: see docs/audit/README.md and docs/audit/record.schema.json. Chain, Seq, PrevHash and Hash are set by
// the spool when the record joins the chain; Hash is always the last member of the JSON line (see line.go).
//
// An access record carries the request members and never the admin ones; an admin entry carries schema,
// kind, id, time, the admin members and the chain members, and none of the request members (MarshalJSON
// picks the shape by Kind). Both go through the same Write, so they are sealed into one chain.
type Record struct {
	Schema         string    `json:"schema"`
	Kind           string    `json:"kind"`
	ID             string    `json:"id"`
	Time           time.Time `json:"time"` // UTC, when the decision was made
	API            string    `json:"api"`
	DecisionID     string    `json:"decision_id"`
	Allow          bool      `json:"allow"`
	Reasons        []string  `json:"reasons"`
	PolicyRevision string    `json:"policy_revision"`
	ClientID       string    `json:"client_id"`
	Subject        string    `json:"subject"`
	FHIRUser       string    `json:"fhir_user"`
	TokenJTI       string    `json:"token_jti"`
	Scopes         []string  `json:"scopes"`
	Patients       []string  `json:"patients"`
	ResourceType   string    `json:"resource_type"`
	Interaction    string    `json:"interaction"`
	Method         string    `json:"method"`
	Path           string    `json:"path"`
	Query          string    `json:"query"` // as received, access_token values redacted (RedactQuery)
	SourceIP       string    `json:"source_ip"`
	RequestID      string    `json:"request_id"`
	// TraceID is the W3C trace id (32 lower-case hex digits) of the request's OpenTelemetry trace, to find its
	// spans; absent when tracing is off. docs/tracing.md.
	TraceID        string   `json:"trace_id,omitempty"`
	Status         int      `json:"status"` // the status the client received; 0 if no response was seen
	DataCategories []string `json:"data_categories"`
	UpstreamMillis float64  `json:"upstream_ms"`
	Bytes          int64    `json:"bytes"`
	// Outcome is what an operation fhirwall answers itself concluded (Payer-to-Payer $member-match: matched,
	// no_match, ambiguous, consent_refused, …), which its answer may deliberately not tell the client.
	Outcome string `json:"outcome"`
	// A record whose patient list would pass the spool's bound (Options.PartPatientBytes) is written as
	// several complete records, one per part of the list: each has its own id and place in the chain, all
	// share SplitID (the id the whole record would have had) and RequestID, Part is 1..Parts. Absent from a
	// record written whole. See docs/audit/README.md (records split in parts).
	SplitID string `json:"split_id,omitempty"`
	Part    int    `json:"part,omitempty"`
	Parts   int    `json:"parts,omitempty"`
	// Policy is what the policy saw and decided (policy replay reads it, docs/policy-replay.md); nil when the
	// policy never gave a verdict on this request (refused before it ran, or it failed).
	Policy *PolicyVerdict `json:"policy,omitempty"`

	// Admin entries only (KindAdmin): who changed what, why, and the object before and after the change.
	Actor  string          `json:"actor,omitempty"`  // the reviewer, developer or system that made the change ("admin:alice", "dcr", "import")
	Action string          `json:"action,omitempty"` // register, update, approve, activate, suspend, reactivate, deactivate, import, …
	Target string          `json:"target,omitempty"` // what changed: the app's client id
	Reason string          `json:"reason,omitempty"` // why, as the actor gave it; empty if none was given
	Before json.RawMessage `json:"before,omitempty"` // a JSON object; nil (null on the wire) when the object was created
	After  json.RawMessage `json:"after,omitempty"`  // a JSON object

	Chain    string `json:"chain,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
	PrevHash string `json:"prev_hash,omitempty"`
	Hash     string `json:"hash,omitempty"`
}

// MaxPolicyInput bounds the policy input an access record carries (and a carried decision with it): a
// larger input (a batch of hundreds of entries) is left out and the record says so (PolicyVerdict.Truncated);
// replay counts such a record as not replayable, never as unchanged.
const MaxPolicyInput = 16 << 10

// PolicyVerdict is the policy's own verdict on a request and the input it was given, as compact JSON with its
// keys sorted (encoding/json's), access_token values redacted. Reasons are the policy's alone: a record's
// reasons may add those of later stages (not_this_patient from the compartment check).
type PolicyVerdict struct {
	Input     json.RawMessage `json:"input,omitempty"`     // absent when Truncated
	Truncated bool            `json:"truncated,omitempty"` // the input passed MaxPolicyInput and was left out
	Allow     bool            `json:"allow"`
	Status    int             `json:"status"`
	Reasons   []string        `json:"reasons"`
	Revision  string          `json:"revision"`
}

// accessRecord is Record without its methods: the access shape, the encoding every access record always had.
type accessRecord Record

// adminEntry is the wire shape of an admin entry. Every member is always present (before is null on
// creation), as in an access record; the chain members are set only when a sealed line is re-encoded.
type adminEntry struct {
	Schema   string          `json:"schema"`
	Kind     string          `json:"kind"`
	ID       string          `json:"id"`
	Time     time.Time       `json:"time"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Target   string          `json:"target"`
	Reason   string          `json:"reason"`
	Before   json.RawMessage `json:"before"`
	After    json.RawMessage `json:"after"`
	Chain    string          `json:"chain,omitempty"`
	Seq      uint64          `json:"seq,omitempty"`
	PrevHash string          `json:"prev_hash,omitempty"`
	Hash     string          `json:"hash,omitempty"`
}

// ErrIncomplete is returned when an admin entry lacks what makes it an audit record of a change (an actor,
// an action, a target, the object after the change): the spool refuses it rather than seal a record that
// says nothing, and the change is not made.
var ErrIncomplete = errors.New("audit: incomplete admin entry")

// MarshalJSON writes the record in the shape of its kind: an access record exactly as it always was (the admin
// members left out, whatever they hold), an admin entry with only the admin members.
func (r Record) MarshalJSON() ([]byte, error) { return r.encode() }

// encode is MarshalJSON without encoding/json's second pass over a Marshaler's output: the spool calls it on
// every request, so an access record is written without reflection (encode.go).
func (r Record) encode() ([]byte, error) {
	if r.Kind != KindAdmin {
		a := accessRecord(r)
		a.Actor, a.Action, a.Target, a.Reason, a.Before, a.After = "", "", "", "", nil, nil
		if a.Parts < 2 { // part members only on a record that really was split
			a.SplitID, a.Part, a.Parts = "", 0, 0
		}
		return encodeAccess(&a)
	}
	var missing []string
	for _, m := range []struct{ name, v string }{{"actor", r.Actor}, {"action", r.Action}, {"target", r.Target}} {
		if m.v == "" {
			missing = append(missing, m.name)
		}
	}
	if !isObject(r.After) {
		missing = append(missing, "after (a JSON object)")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w %s: no %s", ErrIncomplete, r.ID, strings.Join(missing, ", "))
	}
	before := r.Before
	if isNull(before) {
		before = nil // encodes as null
	} else if !isObject(before) {
		return nil, fmt.Errorf("%w %s: before is neither null nor a JSON object", ErrIncomplete, r.ID)
	}
	return json.Marshal(adminEntry{Schema: r.Schema, Kind: r.Kind, ID: r.ID, Time: r.Time, Actor: r.Actor,
		Action: r.Action, Target: r.Target, Reason: r.Reason, Before: before, After: r.After,
		Chain: r.Chain, Seq: r.Seq, PrevHash: r.PrevHash, Hash: r.Hash})
}

func isNull(b json.RawMessage) bool {
	t := strings.TrimSpace(string(b))
	return t == "" || t == "null"
}

func isObject(b json.RawMessage) bool {
	t := strings.TrimSpace(string(b))
	return strings.HasPrefix(t, "{") && json.Valid(b)
}

// RedactQuery returns a raw query string with the value of every access_token parameter replaced: a token
// sent in the URL (refused, RFC 6750 §2.3 is not supported) must not reach the audit trail.
func RedactQuery(raw string) string {
	if raw == "" {
		return raw
	}
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		name, _, _ := strings.Cut(p, "=")
		n, err := url.QueryUnescape(name)
		if err != nil {
			n = name
		}
		if strings.EqualFold(n, "access_token") {
			parts[i] = name + "=REDACTED"
		}
	}
	return strings.Join(parts, "&")
}

// NewID returns a random 128-bit identifier in hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// DataCategories maps a FHIR resource type to the data categories it carries. The walking skeleton derives
// them from the requested type; response enforcement will derive them from what was actually returned.
func DataCategories(resourceType string) []string {
	switch resourceType {
	case "Patient":
		return []string{"demographics"}
	case "ExplanationOfBenefit", "Claim", "ClaimResponse":
		return []string{"claims"}
	case "Coverage":
		return []string{"coverage"}
	case "Observation", "DiagnosticReport":
		return []string{"lab-results", "clinical"}
	case "Condition", "Procedure", "AllergyIntolerance", "Immunization", "Encounter", "CarePlan":
		return []string{"clinical"}
	case "MedicationRequest", "MedicationDispense", "Medication":
		return []string{"pharmacy"}
	case "DocumentReference":
		return []string{"clinical-notes"}
	case "":
		return []string{}
	default:
		return []string{"other"}
	}
}
