// Package audit defines fhirwall's audit record: one per request, written before the answer leaves.
package audit

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// SchemaVersion is bumped on every incompatible change of Record.
const SchemaVersion = "1"

// Record is one request as a SIEM sees it. Field names are the wire format: see README "Audit record".
type Record struct {
	Schema         string    `json:"schema"`
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
	SourceIP       string    `json:"source_ip"`
	RequestID      string    `json:"request_id"`
	Status         int       `json:"status"` // the status the client received; 0 if no response was seen
	DataCategories []string  `json:"data_categories"`
	UpstreamMillis float64   `json:"upstream_ms"`
	Bytes          int64     `json:"bytes"`
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
