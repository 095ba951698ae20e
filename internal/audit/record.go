// Package audit is fhirwall's audit trail: the record written for every request before its answer leaves,
// the durable spool that holds records until Kafka has them, the hash chain and signed checkpoints that make
// tampering visible, and the readers (verify, query, AuditEvent export, CMS report) that work on it.
package audit

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strings"
	"time"
)

// SchemaVersion is bumped on every incompatible change of the entries (Record, Checkpoint). Version 2 added
// kind, chain, seq, prev_hash and hash, and the checkpoint entry.
const SchemaVersion = "2"

// Kinds of entry in the audit log.
const (
	KindAccess     = "access"     // a Record: one request
	KindCheckpoint = "checkpoint" // a Checkpoint: the signed chain head
)

// Record is one request as a SIEM sees it. Field names are the wire format: see README "Audit record" and
// docs/audit/record.schema.json. Chain, Seq, PrevHash and Hash are set by the spool when the record joins the
// chain; Hash is always the last member of the JSON line (see line.go).
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
	Status         int       `json:"status"` // the status the client received; 0 if no response was seen
	DataCategories []string  `json:"data_categories"`
	UpstreamMillis float64   `json:"upstream_ms"`
	Bytes          int64     `json:"bytes"`
	// Outcome is what an operation fhirwall answers itself concluded (Payer-to-Payer $member-match: matched,
	// no_match, ambiguous, consent_refused, …), which its answer may deliberately not tell the client.
	Outcome  string `json:"outcome"`
	Chain    string `json:"chain,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
	PrevHash string `json:"prev_hash,omitempty"`
	Hash     string `json:"hash,omitempty"`
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
