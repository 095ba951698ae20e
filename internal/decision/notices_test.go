package decision

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/config"
)

func TestDeprecationNoticesAreAnnouncedOnAllowedAnswersOfTheirType(t *testing.T) {
	c, _, _ := newRegistryCore(fakeRealmRegistry())
	c.Policy, c.Compartment = fakeMemberPolicy{}, fakeOwnCompartment{}
	published := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	notices := []config.Notice{{ID: "eob", Kind: config.NoticeDeprecation, API: "patient-access", Resource: "ExplanationOfBenefit",
		Published: published, Deprecation: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Sunset: time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC),
		Link: "https://fhirwall.dev/notices/eob"}, {ID: "eob-2", Kind: config.NoticeDeprecation, API: "patient-access", Resource: "ExplanationOfBenefit",
		Published: published, Deprecation: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), Link: "https://fhirwall.dev/notices/eob-2"}}
	var asked []time.Time
	c.Notices = func(api, resourceType string, now time.Time) http.Header {
		asked = append(asked, now)
		return config.DeprecationHeaders(notices, api, resourceType, now)
	}
	decide := func(api, path, token string) *Decision {
		in := Input{API: api, Method: "GET", Path: path, Authorization: []string{"Bearer " + token}, Header: http.Header{}.Values}
		return c.Decide(context.Background(), in)
	}
	none := func(string) string { return "" }

	eob := AnswerHeaders(decide("patient-access", "/ExplanationOfBenefit", "patient-app"), 200, none)
	if eob.Set["Deprecation"] != "@1796083200" || eob.Set["Sunset"] != "Wed, 30 Jun 2027 00:00:00 GMT" ||
		eob.Set["Link"] != `<https://fhirwall.dev/notices/eob>; rel="deprecation"; type="text/html", <https://fhirwall.dev/notices/eob-2>; rel="deprecation"; type="text/html"` {
		t.Errorf("EOB answer headers %v", eob.Set)
	}
	if len(asked) != 1 || asked[0].Before(published) {
		t.Errorf("notices asked at %v, want the decision's time", asked)
	}
	if obs := AnswerHeaders(decide("patient-access", "/Observation", "patient-app"), 200, none); obs.Set["Deprecation"] != "" {
		t.Errorf("another type's answer announces %v", obs.Set)
	}
	if refused := AnswerHeaders(decide("patient-access", "/ExplanationOfBenefit", "stranger"), 200, none); refused.Set["Deprecation"] != "" {
		t.Errorf("a refusal announces %v", refused.Set)
	}
	c.Registry = &fakeRegistry{clients: map[string]Client{"patient-app": {ID: "patient-app", Active: true, APIs: []string{"patient-access-sandbox"}, Scopes: []string{"patient/*.rs"}}}}
	if sb := AnswerHeaders(decide("patient-access-sandbox", "/ExplanationOfBenefit", "patient-app"), 200, none); sb.Set["Deprecation"] != "@1796083200" {
		t.Errorf("the sandbox does not announce its base API's deprecation: %v", sb.Set)
	}
}
