package config

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDeprecationHeadersFollowRFC9745AndRFC8594(t *testing.T) {
	eob := Notice{ID: "eob", Kind: NoticeDeprecation, API: "patient-access", Resource: "ExplanationOfBenefit",
		Published: day("2026-11-02"), Deprecation: day("2026-12-01"), Sunset: day("2027-06-30"), Link: "https://fhirwall.dev/notices/eob"}
	whole := Notice{ID: "v1", Kind: NoticeDeprecation, API: "patient-access", Published: day("2026-10-01"), Deprecation: day("2027-01-01")}
	later := Notice{ID: "later", Kind: NoticeDeprecation, API: "patient-access", Published: day("2027-02-01"), Deprecation: day("2027-01-01"), Sunset: day("2027-03-01")}
	maint := Notice{ID: "m", Kind: NoticeMaintenance, API: "patient-access", Published: day("2026-10-01"), Start: day("2026-12-01")}
	now := day("2026-12-07")
	for _, tc := range []struct {
		name     string
		notices  []Notice
		api, typ string
		want     http.Header
	}{
		{"resource deprecation on its type", []Notice{eob}, "patient-access", "ExplanationOfBenefit", http.Header{
			"Deprecation": {"@1796083200"}, "Sunset": {"Wed, 30 Jun 2027 00:00:00 GMT"},
			"Link": {`<https://fhirwall.dev/notices/eob>; rel="deprecation"; type="text/html"`}}},
		{"not on another type", []Notice{eob}, "patient-access", "Patient", nil},
		{"not on another API", []Notice{eob}, "provider-access", "ExplanationOfBenefit", nil},
		{"a whole-API deprecation on every type, without sunset or link", []Notice{whole}, "patient-access", "Coverage", http.Header{"Deprecation": {"@1798761600"}}},
		{"on requests of no type", []Notice{whole}, "patient-access", "", http.Header{"Deprecation": {"@1798761600"}}},
		{"not before it is published", []Notice{later}, "patient-access", "Patient", nil},
		{"maintenance sends none", []Notice{maint}, "patient-access", "Patient", nil},
		{"several: the earliest of each date", []Notice{whole, eob}, "patient-access", "ExplanationOfBenefit", http.Header{
			"Deprecation": {"@1796083200"}, "Sunset": {"Wed, 30 Jun 2027 00:00:00 GMT"},
			"Link": {`<https://fhirwall.dev/notices/eob>; rel="deprecation"; type="text/html"`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := DeprecationHeaders(tc.notices, tc.api, tc.typ, now); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	if got := DeprecationHeaders([]Notice{later}, "patient-access", "", day("2027-02-01")); got.Get("Deprecation") == "" {
		t.Error("not sent from the moment it is published")
	}
	if next := NextNoticeChange([]Notice{eob, whole, later, maint}, now); !next.Equal(day("2027-02-01")) {
		t.Errorf("next change %v, want the later notice's publication", next)
	}
}

func TestBadNoticesAreAllReported(t *testing.T) {
	c := validConfig(t)
	c.Notices = []Notice{
		{ID: "a", Kind: "outage", API: "patient-access", Published: day("2026-01-01")},
		{ID: "a", Kind: NoticeDeprecation, API: "nope", Published: day("2026-01-01")},
		{ID: "b", Kind: NoticeDeprecation, API: "patient-access", Resource: "Claim", Published: day("2026-01-01"), Deprecation: day("2026-02-01"), Sunset: day("2026-01-15")},
		{ID: "c", Kind: NoticeDeprecation, API: "patient-access", Deprecation: day("2026-02-01"), Link: `https://x/"><script>`},
		{ID: "d", Kind: NoticeMaintenance, API: "patient-access", Resource: "Patient", Sunset: day("2026-02-01"), Start: day("2026-02-02"), End: day("2026-02-01")},
		{ID: "e", Kind: NoticeDeprecation, API: "patient-access", Title: "t", Published: day("2026-01-01"), Deprecation: day("2026-02-01"), Sunset: day("2026-02-01")},
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("bad notices accepted")
	}
	for _, want := range []string{`notices[0].kind "outage"`, `notices[1].id "a": used twice`, `notices[1].api "nope"`,
		"notices[1].deprecation: required", `notices[2].resource "Claim"`, "notices[2].sunset", "notices[3].published: required",
		"notices[3].link", "notices[4].resource: only a deprecation", "notices[4]: deprecation and sunset", "notices[4].end", "notices[5].sunset: want after"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}

func TestExampleNoticeIsPublishedWithASunsetAhead(t *testing.T) {
	c, err := Load("fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h := DeprecationHeaders(c.Notices, "patient-access", "ExplanationOfBenefit", c.Notices[0].Published.Add(time.Hour))
	if h.Get("Deprecation") == "" || h.Get("Sunset") == "" || h.Get("Link") == "" {
		t.Fatalf("the example deprecation sends %v", h)
	}
}
