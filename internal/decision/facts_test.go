package decision

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/token"
)

type fakeAttribution struct {
	lists map[string]AttributionList
	err   error
	asked []string
}

func (f *fakeAttribution) Attributed(_ context.Context, provider string) (AttributionList, error) {
	f.asked = append(f.asked, provider)
	if f.err != nil {
		return AttributionList{}, f.err
	}
	l, ok := f.lists[provider]
	if !ok {
		return AttributionList{}, ErrNoAttribution
	}
	return l, nil
}

type fakeConsent struct {
	out map[string]bool
	err error
}

func (f *fakeConsent) OptedOut(context.Context) (map[string]bool, error) { return f.out, f.err }

func TestProviderFactsAnswerForTheNamedPatientsOnly(t *testing.T) {
	lists := map[string]AttributionList{
		"Organization/org-a":    NewAttributionList("attribution-org-a", []string{"member-01", "member-04", "member-12"}),
		"Organization/org-b":    NewAttributionList("attribution-org-b", []string{"member-02"}),
		"Practitioner/pract-01": NewAttributionList("attribution-org-a", []string{"member-04", "member-12"}),
		"Organization/org-d":    NewAttributionList("attribution-org-d", []string{"member-12"}),
	}
	optedOut := map[string]bool{"member-20": true, "member-05": true, "member-12": true, "member-99": false}
	named := fhir.Request{ResourceType: "Observation", Params: []fhir.Param{
		{Key: "patient", Name: "patient", Values: []string{"Patient/member-01", "member-04", "member-12", "member-02"}}}}
	cases := []struct {
		name     string
		identity *token.Identity
		client   *Client
		want     map[string]any
	}{
		{
			name:     "backend service: the token's organisation",
			identity: &token.Identity{ClientID: "provider-org-a", Org: "Organization/org-a"},
			want: map[string]any{"provider": "Organization/org-a", "attribution_group": "attribution-org-a", "has_permitted": true,
				"patients": map[string]any{"member-01": true, "member-04": true, "member-12": false, "member-02": false}},
		},
		{
			name:     "user scopes: the practitioner, not the app's organisation",
			identity: &token.Identity{ClientID: "provider-app", FHIRUser: "Practitioner/pract-01"},
			client:   &Client{ID: "provider-app", Org: "Organization/org-b"},
			want: map[string]any{"provider": "Practitioner/pract-01", "attribution_group": "attribution-org-a", "has_permitted": true,
				"patients": map[string]any{"member-01": false, "member-04": true, "member-12": false, "member-02": false}},
		},
		{
			name:     "no org claim: the organisation the registry binds the client to",
			identity: &token.Identity{ClientID: "provider-org-b"},
			client:   &Client{ID: "provider-org-b", Org: "Organization/org-b"},
			want: map[string]any{"provider": "Organization/org-b", "attribution_group": "attribution-org-b", "has_permitted": true,
				"patients": map[string]any{"member-01": false, "member-04": false, "member-12": false, "member-02": true}},
		},
		{
			name:     "every member opted out: nobody",
			identity: &token.Identity{ClientID: "provider-org-d", Org: "Organization/org-d"},
			want: map[string]any{"provider": "Organization/org-d", "attribution_group": "attribution-org-d", "has_permitted": false,
				"patients": map[string]any{"member-01": false, "member-04": false, "member-12": false, "member-02": false}},
		},
		{
			name:     "a provider without an attribution list sees no patient",
			identity: &token.Identity{ClientID: "provider-org-c", Org: "Organization/org-c"},
			want: map[string]any{"provider": "Organization/org-c", "attribution_group": "", "has_permitted": false,
				"patients": map[string]any{"member-01": false, "member-04": false, "member-12": false, "member-02": false}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &Core{Attribution: &fakeAttribution{lists: lists}, Consent: &fakeConsent{out: optedOut}}
			d := &Decision{Identity: tc.identity, Client: tc.client, Request: named}
			got, m, err := c.providerFacts(context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("facts\n got %v\nwant %v", got, tc.want)
			}
			for id, want := range tc.want["patients"].(map[string]any) {
				if m.permits(strings.TrimPrefix(id, "Patient/")) != want {
					t.Errorf("membership of %s: %v, facts say %v", id, !want.(bool), want)
				}
			}
		})
	}
}

func TestNamedPatientsAreWhereThePolicyLooksForThem(t *testing.T) {
	for _, tc := range []struct {
		req  fhir.Request
		want []string
	}{
		{fhir.Request{ResourceType: "Patient", ID: "member-01"}, []string{"member-01"}},
		{fhir.Request{ResourceType: "Patient", Params: []fhir.Param{{Key: "_id", Name: "_id", Values: []string{"a", "b"}}}}, []string{"a", "b"}},
		{fhir.Request{ResourceType: "Observation", Params: []fhir.Param{{Key: "subject", Name: "subject", Values: []string{"Patient/x"}},
			{Key: "code", Name: "code", Values: []string{"y"}}, {Key: "patient:missing", Name: "patient", Modifier: "missing", Values: []string{"z"}}}}, []string{"x"}},
		{fhir.Request{ResourceType: "Practitioner", Params: []fhir.Param{{Key: "_id", Name: "_id", Values: []string{"p"}}}}, nil},
	} {
		if got := namedPatients(tc.req); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %v: named %v, want %v", tc.req.ResourceType, tc.req.Params, got, tc.want)
		}
	}
}

func TestProviderFactsFailClosed(t *testing.T) {
	down := errors.New("fhir server down")
	org := &token.Identity{ClientID: "provider-org-a", Org: "Organization/org-a"}
	lists := map[string]AttributionList{"Organization/org-a": {GroupID: "g", Patients: []string{"member-01"}}}
	cases := []struct {
		name        string
		attribution Attribution
		consent     Consent
		identity    *token.Identity
		wantIs      error
	}{
		{"attribution unavailable", &fakeAttribution{err: down}, &fakeConsent{}, org, down},
		{"consent unavailable", &fakeAttribution{lists: lists}, &fakeConsent{err: down}, org, down},
		{"no attribution source configured", nil, &fakeConsent{}, org, nil},
		{"no consent source configured", &fakeAttribution{lists: lists}, nil, org, nil},
		{"patient token acts for no provider", &fakeAttribution{lists: lists}, &fakeConsent{},
			&token.Identity{ClientID: "app", Patient: "member-01", FHIRUser: "Patient/member-01"}, ErrNoProvider},
		{"unauthenticated", &fakeAttribution{lists: lists}, &fakeConsent{}, nil, ErrNoProvider},
		{"org claim that is not an Organization", &fakeAttribution{lists: lists}, &fakeConsent{},
			&token.Identity{ClientID: "x", Org: "Practitioner/pract-01"}, ErrNoProvider},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &Core{Attribution: tc.attribution, Consent: tc.consent}
			facts, _, err := c.providerFacts(context.Background(), &Decision{Identity: tc.identity})
			if err == nil || facts != nil {
				t.Fatalf("got facts %v, err %v; want an error and no facts", facts, err)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err %v, want it to wrap %v", err, tc.wantIs)
			}
		})
	}
}

// TestPriorAuthFactsNameTheProviderAndLeaveRefusalsToThePolicy: the Prior Authorization policy reads the
// provider a caller acts for; a caller acting for none (a member's token) gets no provider fact and no
// refusal from the core, so the policy says why it refuses (patient_token_not_allowed, no_provider_identity).
func TestPriorAuthFactsNameTheProviderAndLeaveRefusalsToThePolicy(t *testing.T) {
	submit := fhir.Request{Method: "POST", Interaction: fhir.Operation, ResourceType: "Claim", Operation: &fhir.OperationName{Name: "submit", Level: fhir.LevelType}}
	for _, tc := range []struct {
		name     string
		identity *token.Identity
		client   *Client
		want     map[string]any
	}{
		{"backend service: the token's organisation", &token.Identity{ClientID: "provider-org-a", Org: "Organization/org-a"},
			&Client{ID: "provider-org-a", Org: "Organization/org-a"}, map[string]any{"provider": "Organization/org-a"}},
		{"backend service: the registry's organisation", &token.Identity{ClientID: "provider-org-b"},
			&Client{ID: "provider-org-b", Org: "Organization/org-b"}, map[string]any{"provider": "Organization/org-b"}},
		{"clinician: the Practitioner fhirUser", &token.Identity{ClientID: "provider-app", FHIRUser: "Practitioner/pract-01"},
			&Client{ID: "provider-app"}, map[string]any{"provider": "Practitioner/pract-01"}},
		{"member: no provider", &token.Identity{ClientID: "patient-app", Patient: "member-01", FHIRUser: "Patient/member-01"},
			&Client{ID: "patient-app"}, map[string]any{}},
		{"org claim that is not an Organization: no provider", &token.Identity{ClientID: "x", Org: "Practitioner/pract-01"},
			&Client{ID: "x"}, map[string]any{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Decision{Identity: tc.identity, Client: tc.client, Request: submit, Input: Input{API: "prior-auth"}}
			input := map[string]any{}
			if !(&Core{}).addFacts(context.Background(), d, input) || len(d.Reasons) > 0 {
				t.Fatalf("the core refused (%v): the policy should decide", d.Reasons)
			}
			if got := input["facts"]; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("facts %v, want %v", got, tc.want)
			}
		})
	}
}
