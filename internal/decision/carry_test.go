package decision

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/seal"
	"github.com/fhirwall/fhirwall/internal/token"
)

var carryT0 = time.Date(2026, 12, 7, 2, 30, 0, 123456789, time.UTC)

func carryKeys(t testing.TB, b byte) *seal.Keyring {
	t.Helper()
	k, err := seal.NewKeyring(bytes.Repeat([]byte{b}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// carryCore is a core that seals and opens with a fixed key at a clock the test moves.
func carryCore(t testing.TB) (*Core, *time.Time) {
	now := carryT0
	c := &Core{Carry: carryKeys(t, 1), Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Attribution: &fakeAttribution{lists: map[string]AttributionList{
			"Organization/org-a": NewAttributionList("attribution-org-a", []string{"m1", "m2", "m3"})}},
		Consent: &fakeConsent{out: map[string]bool{"m3": true}},
	}
	return c, &now
}

func carryRequestOf(t testing.TB, method, path, query string, header map[string]string, body []byte) fhir.Request {
	t.Helper()
	r, err := fhir.Classify(method, path, query, func(n string) []string {
		if v, ok := header[n]; ok {
			return []string{v}
		}
		return nil
	}, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// carryDecisions are allowed decisions of every API, with every field post-decision code reads set.
func carryDecisions(t testing.TB) map[string]*Decision {
	id := &token.Identity{Issuer: "https://idp", ClientID: "app", Subject: "sub-1", Patient: "p1", FHIRUser: "Patient/p1",
		Scopes: []string{"patient/*.rs", "openid"}, JTI: "jti-1", Expiry: carryT0.Add(time.Hour), IssuedAt: carryT0.Add(-time.Minute)}
	client := &Client{ID: "app", Name: "App", Active: true, APIs: []string{"patient-access"}, Scopes: []string{"patient/*.rs"},
		Tier: "gold", Org: "Organization/org-a", NotifyHosts: []string{"hooks.example"}}
	base := func(api, method, path, query string, req fhir.Request) *Decision {
		return &Decision{ID: "dec-" + api, Time: carryT0, Allow: true, Reasons: []string{"allowed"}, Identity: id, Client: client,
			Request: req, Input: Input{API: api, Method: method, Path: path, RawQuery: query, Authorization: []string{"Bearer secret-token"},
				SourceIP: "10.0.0.1", RequestID: "req-" + api, Mode: ModeEnvoy, BodyLimit: 1 << 20},
			Policy: policy.Result{Allow: true, Status: 200, Reasons: []string{"allowed"}, Revision: "rev-7",
				Obligations: policy.Obligations{Compartment: &policy.Compartment{Patient: "p1"}, DataScope: "us-core",
					ResourceTypes: map[string]policy.Constraints{"Observation": {"category": {"laboratory"}}}, PublicTypes: []string{"Practitioner"}}},
			UpstreamQuery: query, PolicyInput: []byte(`{"api":"` + api + `","authenticated":true,"q":"<&>\u2028"}`)}
	}
	out := map[string]*Decision{}

	q := "patient=p1&_elements=code,status&subject:Patient.name=x&_has:Observation:patient:code=1234&_summary=data"
	d := base("patient-access", "GET", "/Observation", q, carryRequestOf(t, "GET", "/Observation", q, nil, nil))
	d.Shape = Shape{Elements: []string{"code", "status"}, Summary: "data", IfNoneMatch: []string{`W/"1"`}, IfModifiedSince: carryT0.Add(-time.Hour).Truncate(time.Second)}
	d.UpstreamQuery, d.UpstreamAccept = "patient=p1", "application/fhir+json"
	d.DroppedScopes = []string{"user/*.*"}
	d.notices = http.Header{"Deprecation": {"@1767225600"}, "Link": {"<https://docs>; rel=deprecation", "<https://x>; rel=sunset"}}
	out["patient access search with shape and notices"] = d

	d = base("patient-access", "GET", "/Patient/p1/_history/2", "", carryRequestOf(t, "GET", "/Patient/p1/_history/2", "", nil, nil))
	d.Shape = Shape{HistoryCountZero: true}
	d.PolicyInput, d.PolicyInputTruncated = nil, true
	out["patient access version read"] = d

	body := []byte(`{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/p1"}}`)
	d = base("patient-access", "PUT", "/Observation", "subject=Patient/p1", carryRequestOf(t, "PUT", "/Observation", "subject=Patient/p1",
		map[string]string{"Content-Type": "application/fhir+json"}, body))
	d.Input.Body = body
	out["conditional update with body"] = d

	d = base("provider-access", "GET", "/Observation", "patient=m1", carryRequestOf(t, "GET", "/Observation", "patient=m1", nil, nil))
	d.Identity = &token.Identity{ClientID: "org-a-app", Org: "Organization/org-a", Scopes: []string{"system/*.rs"}}
	d.Policy.Obligations.Compartment = &policy.Compartment{Provider: "Organization/org-a"}
	d.members = &membership{list: NewAttributionList("attribution-org-a", []string{"m1", "m2"}), optedOut: map[string]bool{}}
	out["provider access with membership"] = d

	d = base("provider-access", "GET", "/Group/attribution-org-a/$export", "_type=Patient",
		carryRequestOf(t, "GET", "/Group/attribution-org-a/$export", "_type=Patient", map[string]string{"Prefer": "respond-async"}, nil))
	d.Identity = &token.Identity{ClientID: "org-a-app", Org: "Organization/org-a"}
	d.members = &membership{optedOut: map[string]bool{}}
	d.Policy.Obligations = policy.Obligations{}
	out["provider access export kick-off"] = d

	d = base(PayerToPayer, "GET", "/ExplanationOfBenefit", "patient=p1,p2", carryRequestOf(t, "GET", "/ExplanationOfBenefit", "patient=p1,p2", nil, nil))
	d.Identity = &token.Identity{ClientID: "payer-b", Org: "Organization/payer-b"}
	d.Policy.Obligations.Compartment = &policy.Compartment{Payer: "Organization/payer-b"}
	d.members = &membership{payer: "Organization/payer-b", list: NewAttributionList("", []string{"p1"}), regularOnly: map[string]bool{"p1": true}}
	out["payer to payer with opt-ins"] = d

	d = base(PayerToPayer, "GET", "/Patient", "identifier=x", carryRequestOf(t, "GET", "/Patient", "identifier=x", nil, nil))
	d.Identity = &token.Identity{ClientID: "payer-b", Org: "Organization/payer-b"}
	d.members = &membership{payer: "Organization/payer-b", list: NewAttributionList("", nil), regularOnly: map[string]bool{}, pending: true}
	out["payer to payer with opt-ins pending"] = d

	params := []byte(`{"resourceType":"Parameters","parameter":[{"name":"MemberPatient","resource":{"resourceType":"Patient"}}]}`)
	d = base(PayerToPayer, "POST", "/Patient/$member-match", "", carryRequestOf(t, "POST", "/Patient/$member-match", "",
		map[string]string{"Content-Type": "application/fhir+json"}, params))
	d.Input.Body = params
	d.Policy.Obligations = policy.Obligations{Adapter: "payer-exchange"}
	out["payer to payer member-match adapter"] = d

	d = base("patient-access-sandbox", "GET", "/Observation", "patient=p1&_tag=x", carryRequestOf(t, "GET", "/Observation", "patient=p1", nil, nil))
	out["sandbox"] = d
	return out
}

// postDecision is what code after the decision may read of d: not the token, the headers, the body or the
// classified body (none of which travel), and membership compared by behaviour.
func postDecision(d *Decision) Decision {
	v := *d
	v.Input.Authorization, v.Input.Header, v.Input.Body = nil, nil, nil
	v.Request.Body, v.Request.Patch, v.Request.Entries = nil, nil, nil
	v.members, v.body = nil, nil
	return v
}

func TestCarriedDecisionRoundTripKeepsWhatPostDecisionCodeReads(t *testing.T) {
	for name, d := range carryDecisions(t) {
		t.Run(name, func(t *testing.T) {
			c, _ := carryCore(t)
			sealed, err := c.Seal(d)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(sealed, "secret-token") {
				t.Fatal("the token is in the sealed value")
			}
			got, err := c.Unseal(context.Background(), sealed)
			if err != nil {
				t.Fatal(err)
			}
			if want, have := postDecision(d), postDecision(got); !equalEmpty(reflect.ValueOf(want), reflect.ValueOf(have)) {
				t.Fatalf("round trip differs:\nwant %+v\nhave %+v", want, have)
			}
			if got.Input.Authorization != nil || got.Input.Header != nil || got.Input.Body != nil {
				t.Fatal("token, headers or body travelled")
			}
			if got.Sandbox() != d.Sandbox() || got.AnsweredHere() != d.AnsweredHere() || got.NeedsResponseBody() != d.NeedsResponseBody() {
				t.Fatal("sandbox, adapter or response-body answer changed")
			}
			if got.NeedsRequestBody() != (d.AnsweredHere() && len(d.Input.Body) > 0) {
				t.Fatalf("NeedsRequestBody = %v", got.NeedsRequestBody())
			}
			if len(d.Input.Body) > 0 {
				if err := got.AttachBody(d.Input.Body); err != nil || !bytes.Equal(got.Input.Body, d.Input.Body) {
					t.Fatalf("the decided body does not attach: %v", err)
				}
			}
			checkMembership(t, d.members, got.members)
		})
	}
}

// checkMembership compares memberships by what enforcement asks of them; Provider Access lists are read
// again from the fakes (m1, m2, m3 attributed; m3 opted out).
func checkMembership(t *testing.T, want, got *membership) {
	t.Helper()
	if (want == nil) != (got == nil) {
		t.Fatalf("membership: want %v, got %v", want, got)
	}
	if want == nil {
		return
	}
	if got.payer != want.payer || got.pending != want.pending {
		t.Fatalf("payer %q pending %v, want %q %v", got.payer, got.pending, want.payer, want.pending)
	}
	if want.payer == "" {
		for id, ok := range map[string]bool{"m1": true, "m2": true, "m3": false, "m9": false} {
			if got.permits(id) != ok {
				t.Fatalf("provider membership re-read: permits(%s) = %v", id, !ok)
			}
		}
		return
	}
	for _, id := range []string{"p1", "p2", "p3"} {
		if got.permits(id) != want.permits(id) || got.regularOnlyFor([]string{id}) != want.regularOnlyFor([]string{id}) {
			t.Fatalf("payer membership of %s differs", id)
		}
	}
}

func TestProviderMembershipIsReadAgainAndItsOutageIsA503Error(t *testing.T) {
	c, _ := carryCore(t)
	d := carryDecisions(t)["provider access with membership"]
	sealed, _ := c.Seal(d)
	attr := c.Attribution.(*fakeAttribution)
	attr.asked = nil
	if _, err := c.Unseal(context.Background(), sealed); err != nil || len(attr.asked) != 1 || attr.asked[0] != "Organization/org-a" {
		t.Fatalf("attribution asked %v: %v", attr.asked, err)
	}
	attr.err = errors.New("fhir server down")
	if _, err := c.Unseal(context.Background(), sealed); !errors.Is(err, ErrCarryFacts) {
		t.Fatalf("attribution down: %v, want ErrCarryFacts", err)
	}
	attr.err = nil
	c.Consent = &fakeConsent{err: errors.New("consent down")}
	if _, err := c.Unseal(context.Background(), sealed); !errors.Is(err, ErrCarryFacts) {
		t.Fatalf("consent down: %v, want ErrCarryFacts", err)
	}
	if d, err := c.UnsealForRecord(sealed); err != nil || d.ID != "dec-provider-access" {
		t.Fatalf("a record needs no facts: %v", err)
	}
}

func TestCarriedDecisionExpiresAndIsNotValidBeforeItsTime(t *testing.T) {
	c, now := carryCore(t)
	sealed, _ := c.Seal(carryDecisions(t)["sandbox"])
	for _, tc := range []struct {
		at   time.Time
		open bool
	}{
		{carryT0, true}, {carryT0.Add(MaxCarryAge), true}, {carryT0.Add(MaxCarryAge + time.Millisecond), false},
		{carryT0.Add(-maxCarrySkew), true}, {carryT0.Add(-maxCarrySkew - time.Millisecond), false},
	} {
		*now = tc.at
		_, err := c.Unseal(context.Background(), sealed)
		if (err == nil) != tc.open || err != nil && !errors.Is(err, ErrCarryInvalid) {
			t.Fatalf("at %v: %v, want open %v", tc.at.Sub(carryT0), err, tc.open)
		}
	}
}

func TestTamperedOrForeignCarriedDecisionsDoNotOpen(t *testing.T) {
	c, _ := carryCore(t)
	d := carryDecisions(t)["sandbox"]
	sealed, _ := c.Seal(d)
	other := &Core{Carry: carryKeys(t, 2), Now: c.Now}
	foreign, _ := other.Seal(d)
	portalCookie, _ := c.Carry.Seal("__Host-fhirwall-portal", []byte(`{"v":1}`))
	for name, v := range map[string]string{
		"other key": foreign, "other purpose": portalCookie, "empty": "",
		"tampered": sealed[:len(sealed)-3] + strings.Map(func(r rune) rune { return r ^ 1 }, sealed[len(sealed)-3:]),
	} {
		if _, err := c.Unseal(context.Background(), v); !errors.Is(err, ErrCarryInvalid) {
			t.Fatalf("%s: %v, want ErrCarryInvalid", name, err)
		}
	}
	if _, err := (&Core{Now: c.Now}).Unseal(context.Background(), sealed); !errors.Is(err, ErrCarryInvalid) {
		t.Fatal("a core without keys opened a carried decision")
	}
}

func TestWrongVersionOrRefusalDoesNotOpen(t *testing.T) {
	c, _ := carryCore(t)
	for name, plain := range map[string]string{
		"version 2":       `{"v":2,"id":"x","t":"2026-12-07T02:30:00Z","a":true,"rq":{"m":"GET","i":"read"},"p":{},"s":{},"in":{"api":"a","m":"GET","p":"/"}}`,
		"refusal":         `{"v":1,"id":"x","t":"2026-12-07T02:30:00Z","a":false,"rq":{"m":"GET","i":"read"},"p":{},"s":{},"in":{"api":"a","m":"GET","p":"/"}}`,
		"unknown field":   `{"v":1,"id":"x","t":"2026-12-07T02:30:00Z","a":true,"auth":"Bearer x","rq":{},"p":{},"s":{},"in":{}}`,
		"two memberships": `{"v":1,"id":"x","t":"2026-12-07T02:30:00Z","a":true,"pm":true,"om":{"py":"Organization/b"},"rq":{},"p":{},"s":{},"in":{}}`,
		"short digest":    `{"v":1,"id":"x","t":"2026-12-07T02:30:00Z","a":true,"rq":{},"p":{},"s":{},"in":{"bn":3,"bs":"AAAA"}}`,
	} {
		sealed, _ := c.Carry.Seal(CarryPurpose, []byte(plain))
		if _, err := c.Unseal(context.Background(), sealed); !errors.Is(err, ErrCarryInvalid) {
			t.Fatalf("%s: %v, want ErrCarryInvalid", name, err)
		}
	}
	if _, err := c.Seal(&Decision{ID: "x", Time: carryT0}); err == nil {
		t.Fatal("a refusal was sealed")
	}
}

func TestAttachBodyTakesOnlyTheBodyDecidedOn(t *testing.T) {
	c, _ := carryCore(t)
	d := carryDecisions(t)["payer to payer member-match adapter"]
	sealed, _ := c.Seal(d)
	got, _ := c.Unseal(context.Background(), sealed)
	for name, b := range map[string][]byte{
		"nothing": nil, "shorter": d.Input.Body[:len(d.Input.Body)-1],
		"same length, other bytes": bytes.Replace(d.Input.Body, []byte("Patient"), []byte("Pat1ent"), 1),
	} {
		if err := got.AttachBody(b); err == nil || got.Input.Body != nil {
			t.Fatalf("%s: attached", name)
		}
	}
	if err := got.AttachBody(d.Input.Body); err != nil {
		t.Fatal(err)
	}
	noBody, _ := c.Unseal(context.Background(), mustSeal(t, c, carryDecisions(t)["sandbox"]))
	if noBody.NeedsRequestBody() || noBody.AttachBody([]byte("x")) == nil {
		t.Fatal("a decision taken without a body accepted one")
	}
}

func mustSeal(t testing.TB, c *Core, d *Decision) string {
	t.Helper()
	s, err := c.Seal(d)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDecideThenCarryHoldsProviderAnswers: a real Provider Access decision, carried, still holds its answer
// to the attributed members.
func TestDecideThenCarryHoldsProviderAnswers(t *testing.T) {
	c := providerCore(t, 1000)
	c.Carry = carryKeys(t, 3)
	d := providerSearch(c, "member-000005")
	if !d.Allow {
		t.Fatalf("refused: %v", d.Reasons)
	}
	got, err := c.Unseal(context.Background(), mustSeal(t, c, d))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"member-000005", "member-000099", "member-x"} {
		if got.members.permits(id) != d.members.permits(id) {
			t.Fatalf("permits(%s) changed in transit", id)
		}
	}
	if !equalEmpty(reflect.ValueOf(postDecision(d)), reflect.ValueOf(postDecision(got))) {
		t.Fatalf("round trip differs:\nwant %+v\nhave %+v", postDecision(d), postDecision(got))
	}
	if got.Request.Query == nil || got.Request.Params == nil {
		t.Fatal("Query and Params must never be nil")
	}
}

// equalEmpty is reflect.DeepEqual where a nil slice or map equals an empty one (JSON leaves out empty ones,
// and no code after the decision tells them apart) and times are compared with Equal.
func equalEmpty(a, b reflect.Value) bool {
	if a.Kind() != b.Kind() {
		return false
	}
	switch a.Kind() {
	case reflect.Slice, reflect.Map:
		if a.Len() == 0 && b.Len() == 0 {
			return true
		}
		if a.Len() != b.Len() {
			return false
		}
		if a.Kind() == reflect.Slice {
			for i := range a.Len() {
				if !equalEmpty(a.Index(i), b.Index(i)) {
					return false
				}
			}
			return true
		}
		for _, k := range a.MapKeys() {
			bv := b.MapIndex(k)
			if !bv.IsValid() || !equalEmpty(a.MapIndex(k), bv) {
				return false
			}
		}
		return true
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equalEmpty(a.Elem(), b.Elem())
	case reflect.Struct:
		if a.Type() == reflect.TypeOf(time.Time{}) {
			return a.Interface().(time.Time).Equal(b.Interface().(time.Time))
		}
		for i := range a.NumField() {
			if !equalEmpty(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Func:
		return a.IsNil() && b.IsNil()
	default:
		return reflect.DeepEqual(valueOf(a), valueOf(b))
	}
}

// valueOf reads a value, exported or not, for comparison.
func valueOf(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint()
	case reflect.String:
		return v.String()
	case reflect.Float32, reflect.Float64:
		return v.Float()
	}
	panic("equalEmpty: unexpected kind " + v.Kind().String())
}

// TestEqualEmptySeesADifference: the comparison the round trip relies on can fail.
func TestEqualEmptySeesADifference(t *testing.T) {
	a := carryDecisions(t)["sandbox"]
	b := *a
	b.Request.Params = []fhir.Param{{Key: "patient", Name: "patient", Values: []string{"p2"}}}
	if equalEmpty(reflect.ValueOf(postDecision(a)), reflect.ValueOf(postDecision(&b))) {
		t.Fatal("different params compared equal")
	}
	b = *a
	b.notices = http.Header{"Sunset": {"x"}}
	if equalEmpty(reflect.ValueOf(postDecision(a)), reflect.ValueOf(postDecision(&b))) {
		t.Fatal("different unexported notices compared equal")
	}
}

// TestDecisionOnTheLongestURLEnvoyAcceptsStillSeals: Envoy admits 60 KiB of request headers; the query
// appears several times in a decision (raw, parsed, upstream), and it still travels.
func TestDecisionOnTheLongestURLEnvoyAcceptsStillSeals(t *testing.T) {
	c, _ := carryCore(t)
	q := "code=" + strings.Repeat("1234-5,", 60<<10/7)
	d := carryDecisions(t)["sandbox"]
	d.Input.RawQuery, d.UpstreamQuery = q, q
	d.Request = carryRequestOf(t, "GET", "/Observation", q, nil, nil)
	sealed, err := c.Seal(d)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Unseal(context.Background(), sealed); err != nil || got.Input.RawQuery != q {
		t.Fatalf("%d bytes sealed: %v", len(sealed), err)
	}
}
