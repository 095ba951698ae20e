package decision

import (
	"context"
	"errors"
	"reflect"
	"testing"

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

func TestProviderFactsNameTheProviderItsListAndEveryOptOut(t *testing.T) {
	lists := map[string]AttributionList{
		"Organization/org-a":    {GroupID: "attribution-org-a", Patients: []string{"member-12", "member-01", "member-04"}},
		"Organization/org-b":    {GroupID: "attribution-org-b", Patients: []string{"member-02"}},
		"Practitioner/pract-01": {GroupID: "attribution-org-a", Patients: []string{"member-04", "member-12"}},
	}
	optedOut := map[string]bool{"member-20": true, "member-05": true, "member-12": true, "member-99": false}
	cases := []struct {
		name     string
		identity *token.Identity
		client   *Client
		want     map[string]any
	}{
		{
			name:     "backend service: the token's organisation",
			identity: &token.Identity{ClientID: "provider-org-a", Org: "Organization/org-a"},
			want: map[string]any{"provider": "Organization/org-a", "attribution_group": "attribution-org-a",
				"attributed_patients": []any{"member-01", "member-04", "member-12"},
				"opted_out":           []any{"member-05", "member-12", "member-20"}},
		},
		{
			name:     "user scopes: the practitioner, not the app's organisation",
			identity: &token.Identity{ClientID: "provider-app", FHIRUser: "Practitioner/pract-01"},
			client:   &Client{ID: "provider-app", Org: "Organization/org-b"},
			want: map[string]any{"provider": "Practitioner/pract-01", "attribution_group": "attribution-org-a",
				"attributed_patients": []any{"member-04", "member-12"},
				"opted_out":           []any{"member-05", "member-12", "member-20"}},
		},
		{
			name:     "no org claim: the organisation the registry binds the client to",
			identity: &token.Identity{ClientID: "provider-org-b"},
			client:   &Client{ID: "provider-org-b", Org: "Organization/org-b"},
			want: map[string]any{"provider": "Organization/org-b", "attribution_group": "attribution-org-b",
				"attributed_patients": []any{"member-02"},
				"opted_out":           []any{"member-05", "member-12", "member-20"}},
		},
		{
			name:     "a provider without an attribution list sees no patient",
			identity: &token.Identity{ClientID: "provider-org-c", Org: "Organization/org-c"},
			want: map[string]any{"provider": "Organization/org-c", "attribution_group": "",
				"attributed_patients": []any{},
				"opted_out":           []any{"member-05", "member-12", "member-20"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &Core{Attribution: &fakeAttribution{lists: lists}, Consent: &fakeConsent{out: optedOut}}
			got, err := c.providerFacts(context.Background(), &Decision{Identity: tc.identity, Client: tc.client})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("facts\n got %v\nwant %v", got, tc.want)
			}
		})
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
			facts, err := c.providerFacts(context.Background(), &Decision{Identity: tc.identity})
			if err == nil || facts != nil {
				t.Fatalf("got facts %v, err %v; want an error and no facts", facts, err)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err %v, want it to wrap %v", err, tc.wantIs)
			}
		})
	}
}
