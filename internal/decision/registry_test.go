package decision

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/token"
)

// fakeTokens accepts the tokens in its map and nothing else.
type fakeTokens map[string]token.Identity

func (f fakeTokens) Verify(_ context.Context, raw string) (token.Identity, error) {
	if id, ok := f[raw]; ok {
		return id, nil
	}
	return token.Identity{}, token.ErrInvalid
}

// fakeRegistry knows the clients in its map; err, when set, is what every lookup fails with.
type fakeRegistry struct {
	clients map[string]Client
	err     error
	lookups int
}

func (f *fakeRegistry) Lookup(_ context.Context, id string) (Client, error) {
	f.lookups++
	if f.err != nil {
		return Client{}, f.err
	}
	c, ok := f.clients[id]
	if !ok {
		return Client{}, ErrUnknownClient
	}
	return c, nil
}

// fakeRecordingPolicy refuses everything and keeps the input it was asked about.
type fakeRecordingPolicy struct{ input map[string]any }

func (f *fakeRecordingPolicy) Decide(_ context.Context, in any) (policy.Result, error) {
	f.input = in.(map[string]any)
	return policy.Result{Allow: false, Status: 403, Reasons: []string{"fake_policy"}}, nil
}

func (f *fakeRecordingPolicy) Revision() string { return "fake" }

var memberScopes = []string{"openid", "launch/patient", "profile", "patient/*.rs", "patient/*.cruds",
	"user/*.rs", "patient/Observation.rs?category=laboratory"}

func newRegistryCore(reg Registry) (*Core, *fakeRecordingPolicy, fakeTokens) {
	tokens := fakeTokens{
		"patient-app": {ClientID: "patient-app", Subject: "u1", Patient: "member-01", Scopes: slices.Clone(memberScopes)},
		"retired":     {ClientID: "retired-app", Subject: "u1", Scopes: []string{"patient/*.rs"}},
		"stranger":    {ClientID: "stranger", Subject: "u1", Scopes: []string{"patient/*.rs"}},
		"org-a":       {ClientID: "provider-org-a", Subject: "svc", Org: "Organization/org-a", Scopes: []string{"system/*.rs"}},
		"org-a-as-b":  {ClientID: "provider-org-a", Subject: "svc", Org: "Organization/org-b", Scopes: []string{"system/*.rs"}},
	}
	pol := &fakeRecordingPolicy{}
	return &Core{Tokens: tokens, Policy: pol, Registry: reg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}, pol, tokens
}

func fakeRealmRegistry() *fakeRegistry {
	return &fakeRegistry{clients: map[string]Client{
		"patient-app":    {ID: "patient-app", Name: "Member app", Active: true, APIs: []string{"patient-access"}, Scopes: []string{"patient/*.rs"}, Tier: "standard"},
		"retired-app":    {ID: "retired-app", Active: false, APIs: []string{"patient-access"}, Scopes: []string{"patient/*.rs"}},
		"provider-org-a": {ID: "provider-org-a", Active: true, APIs: []string{"provider-access", "patient-access"}, Scopes: []string{"system/*.rs"}, Org: "Organization/org-a", Tier: "backend"},
	}}
}

func decideWith(c *Core, api, tok string) *Decision {
	in := Input{API: api, Method: "GET", Path: "/Patient/member-01"}
	if tok != "" {
		in.Authorization = []string{"Bearer " + tok}
	}
	return c.Decide(context.Background(), in)
}

func TestRegistryRefusesClientsNotAllowedOnTheAPI(t *testing.T) {
	cases := []struct {
		name, api, token string
		registry         *fakeRegistry
		status           int
		reason           string
	}{
		{"unregistered client", "patient-access", "stranger", fakeRealmRegistry(), 403, "client_not_registered"},
		{"deactivated client with a valid token", "patient-access", "retired", fakeRealmRegistry(), 403, "client_inactive"},
		{"client not enabled for this API", "prior-auth", "patient-app", fakeRealmRegistry(), 403, "client_not_enabled_for_api"},
		{"token org differs from the registered org", "patient-access", "org-a-as-b", fakeRealmRegistry(), 403, "client_org_mismatch"},
		{"registry down fails closed", "patient-access", "patient-app", &fakeRegistry{err: errors.New("fake registry down")}, 503, "registry_unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			core, pol, _ := newRegistryCore(tc.registry)
			d := decideWith(core, tc.api, tc.token)
			if d.Allow || d.Refusal.Status != tc.status || !slices.Contains(d.Reasons, tc.reason) {
				t.Fatalf("got allow=%v status=%d reasons=%v, want %d %s", d.Allow, d.Refusal.Status, d.Reasons, tc.status, tc.reason)
			}
			if pol.input != nil {
				t.Fatal("the policy was asked about a refused client")
			}
		})
	}
}

func TestNoRegistryRefusesAuthenticatedRequests(t *testing.T) {
	core, _, _ := newRegistryCore(nil)
	core.Registry = nil
	if d := decideWith(core, "patient-access", "patient-app"); d.Allow || d.Refusal.Status != 503 {
		t.Fatalf("got %v %d %v", d.Allow, d.Refusal.Status, d.Reasons)
	}
}

func TestScopesTheClientMayNotHoldAreDroppedBeforeThePolicy(t *testing.T) {
	reg := fakeRealmRegistry()
	core, pol, tokens := newRegistryCore(reg)
	d := decideWith(core, "patient-access", "patient-app")
	if pol.input == nil {
		t.Fatalf("policy not asked: %v", d.Reasons)
	}
	idm := pol.input["identity"].(map[string]any)
	var raws []string
	for _, s := range idm["scopes"].([]any) {
		raws = append(raws, s.(map[string]any)["raw"].(string))
	}
	if want := []string{"patient/*.rs", "patient/Observation.rs?category=laboratory"}; !slices.Equal(raws, want) {
		t.Errorf("resource scopes the policy saw: %v, want %v", raws, want)
	}
	if got := idm["other_scopes"].([]any); len(got) != 2 || got[0] != "openid" || got[1] != "launch/patient" {
		t.Errorf("other scopes: %v", got)
	}
	if got := idm["dropped_scopes"].([]any); len(got) != 3 || got[0] != "profile" || got[1] != "patient/*.cruds" || got[2] != "user/*.rs" {
		t.Errorf("dropped scopes: %v", got)
	}
	client := pol.input["client"].(map[string]any)
	if client["id"] != "patient-app" || client["name"] != "Member app" || client["tier"] != "standard" || len(client["apis"].([]any)) != 1 {
		t.Errorf("client: %v", client)
	}
	if !slices.Equal(tokens["patient-app"].Scopes, memberScopes) {
		t.Errorf("verifier's identity changed: %v", tokens["patient-app"].Scopes)
	}
	if len(d.Identity.Scopes) != 4 || len(d.DroppedScopes) != 3 || d.Client.ID != "patient-app" {
		t.Errorf("decision: %+v %v %+v", d.Identity.Scopes, d.DroppedScopes, d.Client)
	}
}

func TestBackendClientOrgReachesThePolicy(t *testing.T) {
	core, pol, _ := newRegistryCore(fakeRealmRegistry())
	decideWith(core, "patient-access", "org-a")
	if pol.input == nil {
		t.Fatal("policy not asked")
	}
	if org := pol.input["identity"].(map[string]any)["org"]; org != "Organization/org-a" {
		t.Errorf("identity.org = %v", org)
	}
	if org := pol.input["client"].(map[string]any)["org"]; org != "Organization/org-a" {
		t.Errorf("client.org = %v", org)
	}
}

func TestUnauthenticatedRequestsDoNotConsultTheRegistry(t *testing.T) {
	reg := fakeRealmRegistry()
	core, _, _ := newRegistryCore(reg)
	for _, tok := range []string{"", "not-a-known-token"} {
		if d := decideWith(core, "patient-access", tok); d.Allow {
			t.Fatalf("token %q allowed", tok)
		}
	}
	if reg.lookups != 0 {
		t.Fatalf("%d registry lookups for unauthenticated requests", reg.lookups)
	}
}

func TestScopePatternsOnlyNarrow(t *testing.T) {
	cases := []struct {
		pattern, scope string
		covers         bool
	}{
		{"patient/*.rs", "patient/Observation.rs", true},
		{"patient/*.rs", "patient/Observation.r", true},
		{"patient/*.rs", "patient/*.read", true}, // v1 read == rs
		{"patient/*.read", "patient/Observation.rs", true},
		{"patient/*.rs", "patient/Observation.rs?category=laboratory", true},
		{"patient/*.rs", "patient/Observation.cruds", false},
		{"patient/*.rs", "patient/*.write", false},
		{"patient/*.rs", "patient/*.*", false},
		{"patient/*.rs", "user/Observation.rs", false},
		{"patient/*.rs", "system/*.rs", false},
		{"patient/Observation.rs", "patient/*.rs", false},
		{"patient/Observation.rs", "patient/Condition.rs", false},
		{"patient/Observation.rs?category=laboratory", "patient/Observation.rs", false},
		{"patient/Observation.rs?category=laboratory", "patient/Observation.rs?category=vital-signs", false},
		{"patient/Observation.rs?category=laboratory", "patient/Observation.rs?category=laboratory&code=x", true},
		{"patient/*.rs", "launch", false},
		{"profile", "profile", true},
		{"patient/*.rs", "patient/Observation.xyz", false},
	}
	for _, tc := range cases {
		if got := Covers(tc.pattern, tc.scope); got != tc.covers {
			t.Errorf("Covers(%q, %q) = %v, want %v", tc.pattern, tc.scope, got, tc.covers)
		}
	}
}
