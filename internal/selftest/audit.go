package selftest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/adapters/auditsink/kafka"
)

// auditRecord is what the audit check reads of a record (internal/audit.Record's wire names).
type auditRecord struct {
	Kind       string    `json:"kind"`
	ID         string    `json:"id"`
	Time       time.Time `json:"time"`
	API        string    `json:"api"`
	DecisionID string    `json:"decision_id"`
	ClientID   string    `json:"client_id"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	RequestID  string    `json:"request_id"`
	Status     int       `json:"status"`
	Allow      *bool     `json:"allow"`
	SourceIP   string    `json:"source_ip"`
	Policy     string    `json:"policy_revision"`
	Scopes     []string  `json:"scopes"`
}

// Every answer this run got carried X-Fhirwall-Decision-Id (both modes set it): the record with that
// decision id must reach the audit topic with the status the client got, the X-Request-Id it was given, the
// method and path, a refusal where it was refused, the source address and policy revision, and the client
// and its scopes where a token was served; and no record may hold a token this run sent (the token-in-query
// probe's access_token must be redacted).
func checkAuditRecords(ctx context.Context, r *runner) (Outcome, string) {
	if len(r.o.AuditKafka) == 0 {
		return skipf("not asked: -audit-kafka BROKERS reads the audit topic for this run's records")
	}
	// Answers of its own, so that the check proves something when run alone (-only): a refused request per
	// API and, with a member, a served one.
	for _, a := range r.apis() {
		if _, err := r.send(ctx, a[0]+" refused for the audit check", "GET", a[1]+"/Patient", "", nil, nil); err != nil {
			return Fail, err.Error()
		}
	}
	if tok, _, _ := r.memberReady(ctx); tok != "" {
		if _, err := r.send(ctx, "member read for the audit check", "GET", r.c.APIs.PatientAccess+"/Patient/"+r.c.Member.Patient, tok, nil, nil); err != nil {
			return Fail, err.Error()
		}
	}
	r.mu.Lock()
	want := map[string]answered{}
	for _, a := range r.answered {
		want[a.decisionID] = a
	}
	secrets := append([]string(nil), r.secrets...)
	r.mu.Unlock()
	if len(want) == 0 {
		return Fail, "no answer carried an X-Fhirwall-Decision-Id"
	}
	total := len(want)
	ctx, cancel := context.WithTimeout(ctx, r.o.AuditWait)
	defer cancel()
	var bad string
	_, err := kafka.Scan(ctx, r.o.AuditKafka, r.o.AuditTopic, r.started.Add(-5*time.Second), func(raw []byte) bool {
		for _, s := range secrets {
			if s != "" && strings.Contains(string(raw), s) {
				bad = "an audit record holds a token this run sent"
				return true
			}
		}
		var rec auditRecord
		if json.Unmarshal(raw, &rec) != nil || rec.DecisionID == "" {
			return false
		}
		a, ok := want[rec.DecisionID]
		if !ok {
			return false
		}
		switch {
		case rec.Status != a.status:
			bad = fmt.Sprintf("%s: record says status %d, the client got %d", a.what, rec.Status, a.status)
		case a.requestID != "" && rec.RequestID != a.requestID:
			bad = fmt.Sprintf("%s: record's request_id differs from the answer's X-Request-Id", a.what)
		case rec.ID == "" || rec.Time.IsZero() || rec.Method == "" || rec.Path == "" || rec.Allow == nil || rec.SourceIP == "" || rec.Policy == "":
			bad = fmt.Sprintf("%s: record %s lacks id, time, method, path, allow, source_ip or policy_revision", a.what, rec.ID)
		case rec.API == "" && r.underAPI(a.path):
			bad = fmt.Sprintf("%s: record %s names no API", a.what, rec.ID)
		case !*rec.Allow && a.status/100 == 2:
			bad = fmt.Sprintf("%s: record %s says refused, the client got %d", a.what, rec.ID, a.status)
		case a.withToken && a.status/100 == 2 && (rec.ClientID == "" || len(rec.Scopes) == 0):
			bad = fmt.Sprintf("%s: record %s names no client or no scopes", a.what, rec.ID)
		}
		if bad != "" {
			return true
		}
		delete(want, rec.DecisionID)
		return len(want) == 0
	})
	if bad != "" {
		return Fail, bad
	}
	if err != nil {
		return Fail, err.Error()
	}
	if len(want) > 0 {
		for _, a := range want {
			return failf("%d of %d answers have no record in %s after %v, e.g. %s (decision %s)", len(want), total, r.o.AuditTopic, r.o.AuditWait, a.what, a.decisionID)
		}
	}
	return Pass, fmt.Sprintf("all %d answers' records are in %s with the status, request id and client", total, r.o.AuditTopic)
}

// underAPI reports whether path (as sent) is under one of the configured APIs' bases.
func (r *runner) underAPI(path string) bool {
	for _, a := range r.apis() {
		if strings.HasPrefix(path, a[1]+"/") && !strings.Contains(path, "..") && !strings.Contains(strings.ToLower(path), "%2e") {
			return true
		}
	}
	return false
}
