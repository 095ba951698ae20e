package jobstore

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/decision/decisiontest"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/policies"
)

// Tokens of the replicas: a member, the same member through a token of other scopes, another member.
const (
	member01    = "member01"
	member01EOB = "member01-eob-only"
	member02    = "member02"
)

const upstream = "http://127.0.0.1:8090/fhir"

// newReplica is a decision core as one fhirwall-proxy replica builds it (the real policies of
// config/fhirwall.yaml), with pages as its page store.
func newReplica(t testing.TB, pages decision.PageStore) *decision.Core {
	t.Helper()
	cfg, err := config.Load("../../config/fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	engine, err := policy.New(context.Background(), policies.FS, cfg.PolicyData())
	if err != nil {
		t.Fatal(err)
	}
	return &decision.Core{
		Tokens: decisiontest.FakeTokens{
			member01:    {ClientID: "patient-app", Subject: "u1", Patient: "member-01", Scopes: []string{"launch/patient", "patient/*.rs"}},
			member01EOB: {ClientID: "patient-app", Subject: "u1", Patient: "member-01", Scopes: []string{"patient/ExplanationOfBenefit.rs"}},
			member02:    {ClientID: "patient-app", Subject: "u2", Patient: "member-02", Scopes: []string{"launch/patient", "patient/*.rs"}},
		},
		Policy: engine,
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:    time.Now,
		Registry: decisiontest.FakeRegistry{"patient-app": {ID: "patient-app", Name: "Member app", Active: true,
			APIs: []string{"patient-access"}, Scopes: []string{"patient/*.rs"}, Tier: "standard"}},
		UpstreamBase: upstream,
		PublicBase:   func(api string) string { return "https://api.example/" + api + "/fhir" },
		Pages:        pages,
	}
}

// search decides tok's search of its member's EOBs on c and enforces HAPI's first page, whose next link
// names pageID; it returns the decision and the enforced answer.
func search(t testing.TB, c *decision.Core, tok, patient, pageID string) (*decision.Decision, decision.Enforced) {
	t.Helper()
	ctx := context.Background()
	d := c.Decide(ctx, decision.Input{API: "patient-access", Method: "GET", Path: "/ExplanationOfBenefit",
		RawQuery: "patient=" + patient, Authorization: []string{"Bearer " + tok}})
	if !d.Allow {
		t.Fatalf("search refused: %d %v", d.Refusal.Status, d.Reasons)
	}
	body := `{"resourceType":"Bundle","type":"searchset","total":40,"link":[` +
		`{"relation":"next","url":"` + upstream + `?_getpages=` + url.QueryEscape(pageID) + `&_getpagesoffset=20&_count=20&_bundletype=searchset"}],` +
		`"entry":[{"search":{"mode":"match"},"resource":{"resourceType":"ExplanationOfBenefit","id":"e1","status":"active",` +
		`"patient":{"reference":"Patient/` + patient + `"}}}]}`
	e, err := c.EnforceResponse(ctx, d, 200, "application/fhir+json", []byte(body))
	if err != nil {
		t.Fatalf("enforce: %v", err)
	}
	return d, e
}

// nextPage decides tok's request for the page pageID on c.
func nextPage(c *decision.Core, tok, pageID string) *decision.Decision {
	return c.Decide(context.Background(), decision.Input{API: "patient-access", Method: "GET", Path: "",
		RawQuery:      "_getpages=" + url.QueryEscape(pageID) + "&_getpagesoffset=20&_count=20&_bundletype=searchset",
		Authorization: []string{"Bearer " + tok}})
}
