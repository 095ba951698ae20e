//go:build e2e

package adversarial

// One test (or more) per finding of issue 12, named after what it proves. Every answer also goes through
// check (check_test.go): whatever a case expects, no 2xx answer may leak.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// Finding 1: _elements and _summary never shape the checks.

// TestElementsCannotRevealWithheldClaimsToAProvider: a provider's search and read of an attributed
// member's claims answer with the same resources however the client shapes them (or refuse the shape);
// the drug prior authorization and the claim from before 2016 stay withheld (the markers hold their ids
// and identifiers).
func TestElementsCannotRevealWithheldClaimsToAProvider(t *testing.T) {
	evidence.Proves(t, "CMS-PROV-03", "SEC-02")
	tr := groundTruth(t)
	p := providerOrgA
	var drugPA, before2016 string
	for _, h := range tr.of("ExplanationOfBenefit", "member-01") {
		if withheldFromProviders(h.resource) {
			if isDrug(h.resource) {
				drugPA = h.id
			} else {
				before2016 = h.id
			}
		}
	}
	if drugPA == "" || before2016 == "" {
		t.Fatalf("seed changed: member-01 has no drug prior authorization or claim before 2016 (%q, %q)", drugPA, before2016)
	}
	base := "/ExplanationOfBenefit?patient=member-01&_count=50"
	want := idsOf(t, exchange(t, p, get(base)))
	for _, shape := range []string{"_elements=patient,item", "_elements=item", "_elements=patient", "_elements=id",
		"_elements=use,type", "_summary=true", "_summary=data", "_summary=text", "_elements=patient,item&_summary=false",
		"_elements:exclude=type,use,billablePeriod,item", "_elements=patient&_elements=item", "_summary=data&_elements=patient"} {
		t.Run(shape, func(t *testing.T) {
			got := exchange(t, p, get(base+"&"+shape))
			for _, a := range got {
				switch {
				case a.status >= 400 && a.status < 500 && (strings.HasPrefix(shape, "_summary=") || strings.Contains(shape, ":exclude")):
					// refusing a summary mode (or an R5 modifier) fhirwall cannot apply after its checks is
					// safe (check saw the OperationOutcome); _elements must work.
				case a.status != http.StatusOK:
					t.Errorf("%s: %d, want 200 with the same claims: %.300s", a.mode, a.status, a.body)
				default:
					if g := idsOf(t, [2]answer{a, a}); !slices.Equal(g, want) {
						t.Errorf("%s: %s returns %v; without it %v", a.mode, shape, g, want)
					}
				}
			}
		})
	}
	for _, id := range []string{drugPA, before2016} {
		for _, shape := range []string{"_elements=patient,item", "_elements=patient", "_summary=true", "_elements=id"} {
			t.Run("read "+id+"?"+shape, func(t *testing.T) {
				sameAsMissing(t, p, get("/ExplanationOfBenefit/"+id+"?"+shape), get("/ExplanationOfBenefit/no-such-claim-0000?"+shape))
			})
		}
	}
}

// TestElementsTrimAMembersSearchWithoutEmptyingIt: _elements=id,status on a member's own search returns
// the same resources as without it, trimmed to those elements (meta may stay to say SUBSETTED), each with
// resourceType first.
func TestElementsTrimAMembersSearchWithoutEmptyingIt(t *testing.T) {
	evidence.Proves(t, "SEC-02")
	for _, typ := range []string{"Observation", "ExplanationOfBenefit", "Condition"} {
		t.Run(typ, func(t *testing.T) {
			want := idsOf(t, exchange(t, member01, get("/"+typ+"?_count=50")))
			if len(want) == 0 {
				t.Fatalf("member-01 has no %s", typ)
			}
			for _, a := range exchange(t, member01, get("/"+typ+"?_count=50&_elements=id,status")) {
				if a.status != http.StatusOK {
					t.Errorf("%s: %d %.300s", a.mode, a.status, a.body)
					continue
				}
				if got := idsOf(t, [2]answer{a, a}); !slices.Equal(got, want) {
					t.Errorf("%s: _elements=id,status returns %v, without it %v", a.mode, got, want)
				}
				for _, raw := range rawEntries(t, a) {
					if !startsWithResourceType(raw) {
						t.Errorf("%s: resourceType is not first: %.120s", a.mode, raw)
					}
					var r map[string]any
					_ = json.Unmarshal(raw, &r)
					for k := range r {
						if !slices.Contains([]string{"resourceType", "id", "meta", "status"}, k) {
							t.Errorf("%s: %v/%v keeps %q", a.mode, r["resourceType"], r["id"], k)
						}
					}
				}
			}
		})
	}
	t.Run("paged", func(t *testing.T) {
		// The shape holds on every page, and trimming still decides on whole resources there.
		want := idsOf(t, exchange(t, member01, get("/Observation?_count=50")))
		for _, m := range modes() {
			var got []string
			path := "/Observation?_count=1&_elements=id,status"
			for page := 0; path != "" && page < 10; page++ {
				a := sendAs(t, member01, m, get(path))
				if a.status != http.StatusOK {
					t.Fatalf("%s: page %d: %d %.300s", m.name, page, a.status, a.body)
				}
				for _, r := range entries(t, a) {
					got = append(got, fmt.Sprintf("%v/%v", r["resourceType"], r["id"]))
					if _, ok := r["code"]; ok {
						t.Errorf("%s: page %d is not trimmed: %v", m.name, page, r)
					}
				}
				path = ""
				if next := link(a, "next"); next != "" {
					path = relative(t, next, patientAccess)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s: pages of _elements=id,status hold %v, the search %v", m.name, got, want)
			}
		}
	})
	t.Run("read", func(t *testing.T) {
		for _, a := range exchange(t, member01, get("/Observation/observation-member-01-bp?_elements=status")) {
			if a.status != http.StatusOK || !startsWithResourceType(a.body) || !bytes.Contains(a.body, []byte(`"status"`)) ||
				bytes.Contains(a.body, []byte(`"component"`)) {
				t.Errorf("%s: own read with _elements=status: %d %.300s", a.mode, a.status, a.body)
			}
		}
	})
}

// Finding 2: the scope of every included type is checked.

// TestIncludedTypesNeedTheirOwnScope: a token that grants one type gets no other through _include,
// _revinclude or :iterate, on either API: refused, or answered without those entries (check looks at
// every entry's type).
func TestIncludedTypesNeedTheirOwnScope(t *testing.T) {
	evidence.Proves(t, "SMART-05")
	cases := []ask{
		{member01PatientOnly, "/Patient?_revinclude=ExplanationOfBenefit:patient"},
		{member01PatientOnly, "/Patient?_revinclude=Observation:patient"},
		{member01PatientOnly, "/Patient?_revinclude=Observation:subject"},
		{member01PatientOnly, "/Patient?_revinclude=Condition:patient"},
		{member01PatientOnly, "/Patient?_revinclude=Coverage:patient"},
		{member01PatientOnly, "/Patient?_revinclude=Coverage:beneficiary"},
		{member01PatientOnly, "/Patient?_revinclude=*"},
		{member01PatientOnly, "/Patient?_revinclude:iterate=ExplanationOfBenefit:patient"},
		{member01PatientOnly, "/Patient?_revinclude=Coverage:beneficiary&_revinclude:iterate=ExplanationOfBenefit:coverage"},
		{member01PatientOnly, "/Patient/member-01?_revinclude=Observation:patient"},
		{member01ClaimsOnly, "/ExplanationOfBenefit?_include=ExplanationOfBenefit:patient"},
		{member01ClaimsOnly, "/ExplanationOfBenefit?_include=ExplanationOfBenefit:coverage"},
		{member01ClaimsOnly, "/ExplanationOfBenefit?_include=*"},
		{member01ClaimsOnly, "/ExplanationOfBenefit?_include=ExplanationOfBenefit:patient&_revinclude:iterate=Observation:patient"},
		{member01ClaimsOnly, "/ExplanationOfBenefit?_include:iterate=Coverage:beneficiary&_include=ExplanationOfBenefit:coverage"},
		{providerOrgAPatientOnly, "/Patient?_revinclude=ExplanationOfBenefit:patient"},
		{providerOrgAPatientOnly, "/Patient?_id=member-01&_revinclude=Coverage:beneficiary"},
		{providerOrgAPatientOnly, "/Patient?_id=member-01&_revinclude=*"},
		{providerOrgAPatientOnly, "/Patient?_id=member-01&_revinclude:iterate=Observation:patient"},
	}
	for _, c := range cases {
		t.Run(c.p.name+" "+c.path, func(t *testing.T) {
			for _, a := range exchange(t, c.p, get(c.path)) {
				refusedOrServed(t, a)
			}
		})
	}
}

// Finding 3: granular scopes cannot be widened.

// TestGranularScopeRefusesModifiersOnItsParameter: with only patient/Observation.rs?category=vital-signs,
// any modifier on category is refused with an OperationOutcome, and nothing outside vital signs leaves by
// any road (check looks at every Observation's category; the lab result's id is a marker).
func TestGranularScopeRefusesModifiersOnItsParameter(t *testing.T) {
	evidence.Proves(t, "SMART-06")
	p := member01VitalsOnly
	for _, q := range []string{"category:not=vital-signs", "category:not=laboratory", "category:missing=true", "category:missing=false",
		"category:text=Laboratory", "category:text=vital", "category:in=http://hl7.org/fhir/ValueSet/observation-category",
		"category:not-in=http://hl7.org/fhir/ValueSet/observation-category", "category:below=vital-signs", "category:above=vital-signs",
		"category:of-type=vital-signs", "category:code-text=Vital", "category:exact=vital-signs", "category:contains=vital",
		"category:Observation=vital-signs", "category:identifier=vital-signs", "category:iterate=vital-signs",
		"category:not=vital-signs&category=vital-signs", "category=vital-signs&category:not=vital-signs"} {
		t.Run(q, func(t *testing.T) {
			for _, c := range []call{get("/Observation?" + q), searchPost("Observation", q)} {
				for _, a := range exchange(t, p, c) {
					if a.status < 400 || a.status > 499 {
						t.Errorf("%s %s: %d, want a 4xx OperationOutcome: %.300s", a.mode, c, a.status, a.body)
					}
				}
			}
		})
	}
}

// TestGranularScopeLetsNoOtherCategoryThrough: searches, reads and include chains that do not use a
// modifier: each is refused or answers vital signs only.
func TestGranularScopeLetsNoOtherCategoryThrough(t *testing.T) {
	evidence.Proves(t, "SMART-06")
	p := member01VitalsOnly
	for _, path := range []string{
		"/Observation", "/Observation?category=vital-signs", "/Observation?code=4548-4", "/Observation?code=http://loinc.org|4548-4",
		"/Observation?_id=observation-member-01-hba1c", "/Observation?category=vital-signs,laboratory", "/Observation?category=laboratory,vital-signs",
		"/Observation?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
		"/Observation?category=|vital-signs", "/Observation?category=vital-signs&category=laboratory",
		"/Observation?category=VITAL-SIGNS", "/Observation?category=vital-signs%2Claboratory",
		"/Observation?_lastUpdated=gt2000-01-01", "/Observation?status=final", "/Observation?date=ge2000",
		"/Observation?category=vital-signs&_revinclude:iterate=Observation:has-member",
		"/Observation?category=vital-signs&_include:iterate=Observation:patient&_revinclude:iterate=Observation:patient",
		"/Observation?category=vital-signs&_revinclude=Observation:derived-from",
		"/Observation?category=vital-signs&_include=Observation:has-member",
		"/Observation/observation-member-01-hba1c", "/Observation/observation-member-01-hba1c/_history/1",
		"/Observation/observation-member-01-hba1c/_history", "/Observation?category=vital-signs&_summary=count",
		"/Patient?_revinclude=Observation:patient", "/Observation/_history",
	} {
		t.Run(path, func(t *testing.T) {
			for _, a := range exchange(t, p, get(path)) {
				refusedOrServed(t, a)
			}
		})
	}
}

// Finding 4: not yours answers exactly like does not exist.

// TestNotYoursAnswersExactlyLikeMissing: for read, vread, instance history (with and without _count=0)
// and the conditional headers, another member's resource and a resource that does not exist get the same
// status and the same bytes (fhirwall's 404 OperationOutcome), and no validator headers.
func TestNotYoursAnswersExactlyLikeMissing(t *testing.T) {
	evidence.Proves(t, "SEC-01")
	past := "Mon, 01 Jan 2001 00:00:00 GMT"
	future := time.Now().Add(365 * 24 * time.Hour).UTC().Format(http.TimeFormat)
	// core: the interactions Patient Access serves, where the answer must be fhirwall's 404 itself; the
	// others may also be refused as requests (400), as long as both answers are the same.
	variants := []struct {
		name, suffix string
		header       []string
		core         bool
	}{
		{"read", "", nil, true},
		{"vread", "/_history/1", nil, true},
		{"history", "/_history", nil, true},
		{"history _count=0", "/_history?_count=0", nil, true},
		{"history _summary=count", "/_history?_summary=count", nil, false},
		{"history _since", "/_history?_since=2000-01-01", nil, false},
		{"read If-None-Match", "", []string{"If-None-Match", `W/"1"`}, true},
		{"vread If-None-Match", "/_history/1", []string{"If-None-Match", `W/"1"`}, true},
		{"read If-None-Match *", "", []string{"If-None-Match", "*"}, false},
		{"read If-Modified-Since past", "", []string{"If-Modified-Since", past}, true},
		{"read If-Modified-Since future", "", []string{"If-Modified-Since", future}, true},
		{"vread If-Modified-Since past", "/_history/1", []string{"If-Modified-Since", past}, true},
		{"vread If-Modified-Since future", "/_history/1", []string{"If-Modified-Since", future}, true},
		{"read If-Match", "", []string{"If-Match", `W/"1"`}, false},
		{"read _summary=count", "?_summary=count", nil, false},
		{"read _elements=id", "?_elements=id", nil, false},
	}
	targets := []struct {
		p              *principal
		other, missing string
	}{
		{member01, "/Observation/observation-member-02-bp", "/Observation/observation-no-such-0000"},
		{member01, "/Patient/member-02", "/Patient/no-such-member-0000"},
		{member01, "/ExplanationOfBenefit/eob-member-02-3", "/ExplanationOfBenefit/no-such-claim-0000"},
		{member01VitalsOnly, "/Observation/observation-member-01-hba1c", "/Observation/observation-no-such-0000"},
		{providerOrgA, "/Patient/member-02", "/Patient/no-such-member-0000"},
		{providerOrgA, "/Patient/member-12", "/Patient/no-such-member-0000"},
		{providerOrgA, "/ExplanationOfBenefit/eob-member-02-3", "/ExplanationOfBenefit/no-such-claim-0000"},
	}
	for _, tg := range targets {
		for _, v := range variants {
			t.Run(tg.p.name+" "+tg.other+" "+v.name, func(t *testing.T) {
				n := sameAsMissing(t, tg.p, get(tg.other+v.suffix, v.header...), get(tg.missing+v.suffix, v.header...))
				// A member's full token may use every core interaction: the answer is the 404 of a missing
				// resource. (Provider Access serves read and search only; a granular token may be refused
				// history: alike for both is enough there.)
				for _, a := range n {
					if tg.p == member01 && v.core && a.status != http.StatusNotFound {
						t.Errorf("%s: %d, want fhirwall's 404", a.mode, a.status)
					}
				}
			})
		}
	}
}

// TestConditionalHeadersStillWorkOnOwnResources: the member's own resource answers 304 to its current
// ETag and to an If-Modified-Since in the future, and 200 to a past one.
func TestConditionalHeadersStillWorkOnOwnResources(t *testing.T) {
	future := time.Now().Add(365 * 24 * time.Hour).UTC().Format(http.TimeFormat)
	for _, path := range []string{"/Observation/observation-member-01-bp", "/Observation/observation-member-01-bp/_history/1", "/Patient/member-01"} {
		t.Run(path, func(t *testing.T) {
			for i, first := range exchange(t, member01, get(path)) {
				m := modes()[i]
				etag := first.header.Get("ETag")
				if first.status != http.StatusOK || etag == "" {
					t.Errorf("%s: own %s: %d, ETag %q", m.name, path, first.status, etag)
					continue
				}
				for _, h := range [][]string{{"If-None-Match", etag}, {"If-Modified-Since", future}} {
					if a := sendAs(t, member01, m, get(path, h...)); a.status != http.StatusNotModified {
						t.Errorf("%s: %s %s: %d, want 304", m.name, h[0], h[1], a.status)
					}
				}
				if a := sendAs(t, member01, m, get(path, "If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT")); a.status != http.StatusOK {
					t.Errorf("%s: If-Modified-Since in the past: %d, want 200", m.name, a.status)
				}
			}
		})
	}
}

// TestVersionsThatBelongedToAnotherMemberStayHidden: the fixture movedObservation was member-02's
// (version 1) before it was filed under member-01 (version 2). member-01's vread of the old version is the
// 404 of a missing version, with or without conditional headers; its history holds and counts only its own
// versions, page after page. member-02 reads none of member-01's version, and providers see member-02's
// version only if they may see member-02 (org-a and dr-smith may not). Each case first shows that HAPI's
// own answer would leak (wouldLeak): the fixture is there, and check would see it.
func TestVersionsThatBelongedToAnotherMemberStayHidden(t *testing.T) {
	evidence.Proves(t, "SEC-01", "CMS-PA-02")
	ref := "/Observation/" + movedObservation
	theirs, ours := versionsOf(t, ref[1:], "member-02"), versionsOf(t, ref[1:], "member-01")
	for _, v := range theirs {
		vread := ref + "/_history/" + v
		t.Run("member01 vread "+v, func(t *testing.T) {
			wouldLeak(t, member01, vread, "FWADV-MOVED-V1", `"member-02"`)
			for _, h := range [][]string{nil, {"If-None-Match", `W/"` + v + `"`}, {"If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT"},
				{"If-Modified-Since", time.Now().Add(24 * time.Hour).UTC().Format(http.TimeFormat)}} {
				sameAsMissing(t, member01, get(vread, h...), get("/Observation/observation-no-such-0000/_history/"+v, h...))
			}
		})
		for _, p := range []*principal{providerOrgA, drSmith} {
			t.Run(p.name+" vread "+v, func(t *testing.T) {
				wouldLeak(t, p, vread, "FWADV-MOVED-V1", `"member-02"`)
				for _, a := range exchange(t, p, get(vread)) {
					refusedOrServed(t, a)
				}
			})
		}
	}
	for _, q := range []string{"", "?_count=1", "?_count=50", "?_since=2000-01-01T00:00:00Z", "?_count=0", "?_summary=count"} {
		t.Run("member01 history"+q, func(t *testing.T) {
			if raw := hapiAnswer(t, ref+"/_history"+q); raw.status != http.StatusOK || len(versionProblems(raw, ours)) == 0 {
				t.Fatalf("the check cannot fail: HAPI's history%s holds only member-01's versions %v: %d %.300s", q, ours, raw.status, raw.body)
			}
			if q == "" {
				wouldLeak(t, member01, ref+"/_history", "FWADV-MOVED-V1")
			}
			for i, a := range exchange(t, member01, get(ref+"/_history"+q)) {
				for page := 0; a.status == http.StatusOK; page++ {
					for _, problem := range versionProblems(a, ours) {
						t.Errorf("page %d: %s", page, problem)
					}
					next := link(a, "next")
					if next == "" || page > 5 {
						break
					}
					// A next link that leads to none of the caller's versions says there are versions it may
					// not see: a resource whose versions are all its own has no such link.
					following := sendAs(t, member01, modes()[i], get(relative(t, next, patientAccess)))
					if following.status != http.StatusOK || len(historyEntries(following.body)) == 0 {
						t.Errorf("%s: page %d links to %s, which holds none of member-01's versions (%d %.200s): the link reveals withheld versions",
							a.mode, page, next, following.status, following.body)
					}
					a = following
				}
				refusedOrServed(t, a)
			}
		})
	}
	for _, c := range []struct {
		p    *principal
		leak string // org-a may see member-01, so version 1's identifier; dr-smith neither member, so the id
	}{{providerOrgA, "FWADV-MOVED-V1"}, {drSmith, `"fwadv-moved-obs"`}} {
		p := c.p
		t.Run(p.name+" history", func(t *testing.T) {
			wouldLeak(t, p, ref+"/_history", c.leak)
			for _, a := range exchange(t, p, get(ref+"/_history")) {
				refusedOrServed(t, a)
			}
		})
	}
	t.Run("member02 read", func(t *testing.T) {
		wouldLeak(t, member02, ref, "FWADV-MOVED-V2", `"member-01"`)
		sameAsMissing(t, member02, get(ref), get("/Observation/observation-no-such-0000"))
	})
	for _, v := range ours {
		t.Run("member02 vread "+v, func(t *testing.T) {
			wouldLeak(t, member02, ref+"/_history/"+v, "FWADV-MOVED-V2")
			sameAsMissing(t, member02, get(ref+"/_history/"+v), get("/Observation/observation-no-such-0000/_history/"+v))
		})
	}
	t.Run("member02 history", func(t *testing.T) {
		wouldLeak(t, member02, ref+"/_history", "FWADV-MOVED-V2")
		for _, a := range exchange(t, member02, get(ref+"/_history")) {
			refusedOrServed(t, a)
			if a.status == http.StatusOK {
				for _, problem := range versionProblems(a, theirs) {
					t.Error(problem)
				}
			}
		}
	})
}

// Finding 5: counts never include what is withheld.

// TestCountsNeverExceedWhatCanBePagedThrough: _summary=count, _total=accurate and _count=0 either give a
// total equal to the number of entries the caller can page through, or are refused with an
// OperationOutcome (a page that gives no total claims nothing).
func TestCountsNeverExceedWhatCanBePagedThrough(t *testing.T) {
	evidence.Proves(t, "SEC-01")
	cases := []ask{
		{providerOrgA, "/ExplanationOfBenefit?patient=member-01"},
		{providerOrgA, "/ExplanationOfBenefit?patient=member-04"},
		{providerOrgA, "/ExplanationOfBenefit?patient=member-01,member-04"},
		{providerOrgA, "/Patient"},
		{member01VitalsOnly, "/Observation"},
		{member01, "/ExplanationOfBenefit"},
	}
	for _, c := range cases {
		t.Run(c.p.name+" "+c.path, func(t *testing.T) {
			for _, m := range modes() {
				// One page holds everything (the seed has 79 claims): paging is TestProvidersCanPageThroughTheirSearches'.
				visible := len(pageThrough(t, c.p, m, c.path+sep(c.path)+"_count=200"))
				for _, counted := range []string{"_summary=count", "_total=accurate", "_total=estimate", "_summary=count&_total=accurate", "_count=0"} {
					a := sendAs(t, c.p, m, get(c.path+sep(c.path)+counted))
					if a.status >= 400 && a.status < 500 {
						continue // refused: allowed, check has seen it is an OperationOutcome
					}
					total, ok := bundleTotal(a.body)
					switch {
					case a.status != http.StatusOK:
						t.Errorf("%s %s: %d %.200s", m.name, counted, a.status, a.body)
					case !ok && strings.Contains(counted, "_summary=count"):
						t.Errorf("%s %s: 200 without a total: %.200s", m.name, counted, a.body)
					case ok && total != visible:
						t.Errorf("%s %s: total %d, but %d can be paged through", m.name, counted, total, visible)
					}
				}
			}
		})
	}
}

// Finding 6: paging links are bound to the scope set.

// TestPagingLinkIsBoundToTheScopesThatMadeIt: a member's Observation next link works for the token that
// made it and is the 404 of a page that does not exist for the same member's Patient.rs-only token, for
// another member, and for a provider.
func TestPagingLinkIsBoundToTheScopesThatMadeIt(t *testing.T) {
	evidence.Proves(t, "USCORE-02")
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			first := sendAs(t, member01, m, get("/Observation?_count=1"))
			next := link(first, "next")
			if first.status != http.StatusOK || next == "" {
				t.Fatalf("no next link: %d %.300s", first.status, first.body)
			}
			path := relative(t, next, patientAccess)
			if own := sendAs(t, member01, m, get(path)); own.status != http.StatusOK {
				t.Fatalf("the searcher's own next page: %d %.300s", own.status, own.body)
			}
			missing := sendAs(t, member01PatientOnly, m, get("?_getpages=00000000-0000-0000-0000-000000000000&_getpagesoffset=1&_count=1"))
			for _, other := range []*principal{member01PatientOnly, member01ClaimsOnly, member02} {
				a := sendAs(t, other, m, get(path))
				if a.status != http.StatusNotFound || !bytes.Equal(a.body, missing.body) {
					t.Errorf("%s follows member01's Observation link: %d %.300s; a page never issued: %d %.300s",
						other.name, a.status, a.body, missing.status, missing.body)
				}
			}
			if a := sendAs(t, providerOrgA, m, get(path)); a.status < 400 {
				t.Errorf("a provider follows a member's paging link on Provider Access: %d %.300s", a.status, a.body)
			}
		})
	}
}

// Finding 7: _elements cannot hide the patient reference.

// TestElementsCannotHideWhoseAVersionIs: another member's versions and history, trimmed so that no patient
// reference is left, are still the 404 of a missing resource; the member's own trimmed vread still works.
func TestElementsCannotHideWhoseAVersionIs(t *testing.T) {
	evidence.Proves(t, "SEC-02")
	for _, shape := range []string{"_elements=id", "_elements=id,performer", "_elements=code,performer", "_elements=performer",
		"_summary=true", "_summary=text", "_elements=meta"} {
		for _, suffix := range []string{"/_history/1", "/_history", ""} {
			t.Run(suffix+"?"+shape, func(t *testing.T) {
				sameAsMissing(t, member01, get("/Observation/observation-member-02-bp"+suffix+"?"+shape),
					get("/Observation/observation-no-such-0000"+suffix+"?"+shape))
			})
		}
	}
	// The fixture movedObservation: its current version is member-01's, so only the version itself says
	// that version 1 is member-02's, and a trimmed one says nothing. HAPI answers every shape with a 200
	// (never the 404 of a missing version), and its trimmed history still holds version 1: passing either
	// on would fail these cases, markers or not.
	ref := "/Observation/" + movedObservation
	theirs, ours := versionsOf(t, ref[1:], "member-02"), versionsOf(t, ref[1:], "member-01")
	for _, shape := range []string{"_elements=id", "_elements=id,performer", "_elements=code,performer", "_elements=performer",
		"_elements=status", "_elements=meta", "_summary=true", "_summary=text", "_summary=data"} {
		for _, v := range theirs {
			t.Run("moved vread "+v+"?"+shape, func(t *testing.T) {
				path := ref + "/_history/" + v + "?" + shape
				if raw := hapiAnswer(t, path); raw.status != http.StatusOK {
					t.Fatalf("the check cannot fail: HAPI answers %s with %d %.300s", path, raw.status, raw.body)
				}
				sameAsMissing(t, member01, get(path), get("/Observation/observation-no-such-0000/_history/"+v+"?"+shape))
			})
		}
		t.Run("moved history?"+shape, func(t *testing.T) {
			path := ref + "/_history?" + shape
			if raw := hapiAnswer(t, path); raw.status != http.StatusOK || len(versionProblems(raw, ours)) == 0 {
				t.Fatalf("the check cannot fail: HAPI's %s holds only member-01's versions: %d %.300s", path, raw.status, raw.body)
			}
			for _, a := range exchange(t, member01, get(path)) {
				refusedOrServed(t, a)
				if a.status == http.StatusOK {
					for _, problem := range versionProblems(a, ours) {
						t.Error(problem)
					}
				}
			}
		})
	}
	t.Run("own vread trimmed", func(t *testing.T) {
		for _, a := range exchange(t, member01, get("/Observation/observation-member-01-bp/_history/1?_elements=id,performer")) {
			if a.status != http.StatusOK || !startsWithResourceType(a.body) || !bytes.Contains(a.body, []byte("Practitioner/")) {
				t.Errorf("%s: %d %.300s", a.mode, a.status, a.body)
			}
		}
	})
	t.Run("own history trimmed", func(t *testing.T) {
		for _, a := range exchange(t, member01, get("/Observation/observation-member-01-bp/_history?_elements=id")) {
			if a.status != http.StatusOK || len(entries(t, a)) == 0 {
				t.Errorf("%s: %d %.300s", a.mode, a.status, a.body)
			}
		}
	})
}

// Finding 8: answers with patient data are not cached.

// TestEveryAnswerWithPatientDataIsNoStore: every 2xx answer that carries patient data says
// Cache-Control: no-store and Pragma: no-cache, in both modes, whatever the interaction.
func TestEveryAnswerWithPatientDataIsNoStore(t *testing.T) {
	evidence.Proves(t, "SEC-06")
	cases := []struct {
		p *principal
		c call
	}{
		{member01, get("/Patient/member-01")},
		{member01, get("/Patient/member-01/_history/1")},
		{member01, get("/Patient/member-01/_history")},
		{member01, get("/ExplanationOfBenefit")},
		{member01, get("/Observation?_count=1")},
		{member01, get("/Patient?_revinclude=Observation:patient")},
		{member01, get("/Observation?_summary=count")},
		{member01, get("/Observation?_count=1", "Accept-Encoding", "gzip")},
		{member01, searchPost("Condition", "category=problem-list-item")},
		{providerOrgA, get("/Patient?_count=5")},
		{providerOrgA, get("/ExplanationOfBenefit?patient=member-01")},
		{providerOrgA, get("/Patient/member-01")},
		{drSmith, get("/Patient?_count=5")},
	}
	for _, c := range cases {
		t.Run(c.p.name+" "+c.c.String(), func(t *testing.T) {
			for i, a := range exchange(t, c.p, c.c) {
				if a.status != http.StatusOK {
					t.Errorf("%s: %d %.200s", a.mode, a.status, a.body)
					continue
				}
				noStore(t, a)
				if next := link(a, "next"); next != "" {
					noStore(t, sendAs(t, c.p, modes()[i], get(relative(t, next, c.p.api))))
				}
			}
		})
	}
}

// Finding 9: a provider never receives money, nor types outside the patient compartment.

// TestProvidersNeverReceiveMoney: every claim, prior authorization and coverage of every attributed
// member, by search, include and read, reaches the provider without money anywhere (check looks at
// contained resources and extensions too).
func TestProvidersNeverReceiveMoney(t *testing.T) {
	evidence.Proves(t, "CMS-PROV-03")
	tr := groundTruth(t)
	for _, p := range []*principal{providerOrgA, drSmith} {
		p.prepare(t, tr)
		for _, patient := range p.patients(tr)[:3] {
			for _, path := range []string{
				"/ExplanationOfBenefit?patient=" + patient + "&_count=50",
				"/ExplanationOfBenefit?patient=" + patient + "&_include=ExplanationOfBenefit:*",
				"/ExplanationOfBenefit?patient=" + patient + "&_include=ExplanationOfBenefit:coverage",
				"/Coverage?patient=" + patient,
				"/Patient?_id=" + patient + "&_revinclude=ExplanationOfBenefit:patient&_revinclude=Coverage:beneficiary",
			} {
				t.Run(p.name+" "+path, func(t *testing.T) { exchange(t, p, get(path)) })
			}
		}
	}
	for _, h := range tr.all {
		if h.typ == "ExplanationOfBenefit" && slices.Contains(h.patients, "member-01") {
			t.Run("read "+h.id, func(t *testing.T) { exchange(t, providerOrgA, get("/ExplanationOfBenefit/"+h.id)) })
		}
	}
}

// TestTypesOutsideTheCompartmentNeverRideAnInclude: Provenance, Task and PaymentReconciliation carry
// patient data but sit outside the Patient compartment; no include or revinclude brings them (or any type
// the API does not serve) to a member or a provider, nor does asking for them. The fixtures
// (fixtures_test.go) give member-01 and member-02 one of each; where a case names one in proof, HAPI's
// own answer to the same query (proofPath: the query as fhirwall sends it upstream, narrowed to the
// member) carries it and check would report it.
func TestTypesOutsideTheCompartmentNeverRideAnInclude(t *testing.T) {
	evidence.Proves(t, "SMART-05", "USCORE-02")
	const (
		provA, taskA, payA = "fwadv-provenance-a", "fwadv-task-a", "fwadv-payrec-a"
		provB, taskB, payB = "fwadv-provenance-b", "fwadv-task-b", "fwadv-payrec-b"
	)
	for _, c := range []struct {
		p         *principal
		path      string
		proofPath string // "": path
		proof     []string
	}{
		{p: providerOrgA, path: "/ExplanationOfBenefit?patient=member-01&_revinclude:iterate=Provenance:target", proof: []string{provA}},
		{p: providerOrgA, path: "/ExplanationOfBenefit?patient=member-01&_revinclude=Provenance:target", proof: []string{provA}},
		{p: providerOrgA, path: "/Patient?_id=member-01&_revinclude=Provenance:target", proof: []string{provA}},
		{p: providerOrgA, path: "/Patient?_id=member-01&_revinclude=Task:patient", proof: []string{taskA}},
		{p: providerOrgA, path: "/Patient?_id=member-01&_revinclude=Task:focus&_revinclude:iterate=PaymentReconciliation:request"},
		{p: providerOrgA, path: "/Patient?_id=member-01&_revinclude=Task:patient&_revinclude:iterate=PaymentReconciliation:request", proof: []string{taskA, payA}},
		{p: providerOrgA, path: "/ExplanationOfBenefit?patient=member-01&_revinclude=Task:focus&_revinclude:iterate=PaymentReconciliation:request", proof: []string{taskA, payA}},
		{p: providerOrgA, path: "/ExplanationOfBenefit?patient=member-01&_revinclude=PaymentReconciliation:request"},
		{p: providerOrgA, path: "/Patient?_id=member-01&_revinclude=Consent:patient"},
		{p: providerOrgA, path: "/Patient?_id=member-01&_revinclude=Group:member", proof: []string{"Group/attribution-org-a"}},
		{p: providerOrgA, path: "/Task?patient=member-01", proof: []string{taskA}},
		{p: providerOrgA, path: "/Provenance?target=ExplanationOfBenefit/eob-member-01-3", proof: []string{provA}},
		{p: providerOrgA, path: "/PaymentReconciliation/" + payA, proof: []string{payA}},
		{p: providerOrgA, path: "/ExplanationOfBenefit?patient=member-02&_revinclude=Provenance:target", proof: []string{provB}},
		{p: member01, path: "/Patient?_revinclude:iterate=Provenance:target", proofPath: "/Patient?_id=member-01&_revinclude:iterate=Provenance:target", proof: []string{provA}},
		{p: member01, path: "/Patient?_revinclude=Consent:patient"},
		{p: member01, path: "/Patient?_revinclude=Group:member", proofPath: "/Patient?_id=member-01&_revinclude=Group:member", proof: []string{"Group/attribution-org-a"}},
		{p: member01, path: "/ExplanationOfBenefit?_revinclude=Task:focus", proofPath: "/ExplanationOfBenefit?patient=member-01&_revinclude=Task:focus", proof: []string{taskA}},
		{p: member01, path: "/ExplanationOfBenefit?_revinclude=Task:focus&_revinclude:iterate=PaymentReconciliation:request",
			proofPath: "/ExplanationOfBenefit?patient=member-01&_revinclude=Task:focus&_revinclude:iterate=PaymentReconciliation:request", proof: []string{taskA, payA}},
		{p: member01, path: "/ExplanationOfBenefit?_revinclude:iterate=Provenance:target", proofPath: "/ExplanationOfBenefit?patient=member-01&_revinclude:iterate=Provenance:target", proof: []string{provA}},
		{p: member01, path: "/Provenance?patient=member-01", proof: []string{provA}},
		{p: member01, path: "/Task?patient=member-01", proof: []string{taskA}},
		{p: member01, path: "/Task/" + taskA, proof: []string{taskA}},
		{p: member01, path: "/PaymentReconciliation?request=Task/" + taskA, proof: []string{payA}},
		{p: member02, path: "/Patient?_revinclude=Provenance:target", proofPath: "/Patient?_id=member-02&_revinclude=Provenance:target", proof: []string{provB}},
		{p: member02, path: "/ExplanationOfBenefit?_revinclude=Task:focus&_revinclude:iterate=PaymentReconciliation:request",
			proofPath: "/ExplanationOfBenefit?patient=member-02&_revinclude=Task:focus&_revinclude:iterate=PaymentReconciliation:request", proof: []string{taskB, payB}},
		{p: member02, path: "/Task?patient=member-01", proof: []string{taskA}},
	} {
		t.Run(c.p.name+" "+c.path, func(t *testing.T) {
			if len(c.proof) > 0 {
				proofPath := c.proofPath
				if proofPath == "" {
					proofPath = c.path
				}
				wouldLeak(t, c.p, proofPath, c.proof...)
			}
			for _, a := range exchange(t, c.p, get(c.path)) {
				refusedOrServed(t, a)
			}
		})
	}
}

// TestMoneyInContainedResourcesAndExtensionsNeverReachesAProvider: the fixtures moneyEOB (money in a
// root extension, an item extension and a contained Coverage's costToBeneficiary) and moneyCoverage
// (costToBeneficiary) of member-04 reach org-a and dr-smith, both attributed to member-04, by read, search
// and include, without money anywhere (check walks contained resources and extensions); HAPI's own
// answers carry that money at those paths. The member gets both whole.
func TestMoneyInContainedResourcesAndExtensionsNeverReachesAProvider(t *testing.T) {
	evidence.Proves(t, "CMS-PROV-03")
	eob, cov := "ExplanationOfBenefit/"+moneyEOB+": money reaches a provider at ", "Coverage/"+moneyCoverage+": money reaches a provider at "
	eobMoney := []string{eob + "ExplanationOfBenefit.contained[0].costToBeneficiary", eob + "ExplanationOfBenefit.extension[0].valueMoney",
		eob + "ExplanationOfBenefit.item[0].extension[0].valueMoney", "Coverage/cov: money reaches a provider at Coverage.costToBeneficiary"}
	covMoney := []string{cov + "Coverage.costToBeneficiary"}
	for _, p := range []*principal{providerOrgA, drSmith} {
		for _, c := range []struct {
			path  string
			money []string
			holds string // the resource a 200 answer must hold: the data scope keeps it, only its money goes
			// refusable: Provider Access may refuse the include (with an OperationOutcome, check has seen it)
			refusable bool
		}{
			{"/ExplanationOfBenefit/" + moneyEOB, eobMoney, moneyEOB, false},
			{"/ExplanationOfBenefit?patient=member-04&_count=50", eobMoney, moneyEOB, false},
			{"/ExplanationOfBenefit?_id=" + moneyEOB + "&_include=ExplanationOfBenefit:*", eobMoney, moneyEOB, true},
			{"/ExplanationOfBenefit?patient=member-04&_elements=contained,extension,item", eobMoney, moneyEOB, false},
			{"/Coverage/" + moneyCoverage, covMoney, moneyCoverage, false},
			{"/Coverage?patient=member-04", covMoney, moneyCoverage, false},
			{"/Patient?_id=member-04&_revinclude=ExplanationOfBenefit:patient&_revinclude=Coverage:beneficiary", append(slices.Clone(eobMoney), covMoney...), "", true},
		} {
			t.Run(p.name+" "+c.path, func(t *testing.T) {
				wouldLeak(t, p, c.path, c.money...)
				for _, a := range exchange(t, p, get(c.path)) {
					if c.refusable && a.status >= 400 && a.status < 500 {
						continue
					}
					if a.status != http.StatusOK {
						t.Errorf("%s: %d, want the resource without its money: %.300s", a.mode, a.status, a.body)
						continue
					}
					if c.holds != "" && !slices.ContainsFunc(resources(a.body), func(r map[string]any) bool { return r["id"] == c.holds }) {
						t.Errorf("%s: the answer lacks %s: %.300s", a.mode, c.holds, a.body)
					}
				}
			})
		}
	}
	for _, path := range []string{"/ExplanationOfBenefit/" + moneyEOB, "/Coverage/" + moneyCoverage} {
		t.Run("member04 "+path, func(t *testing.T) {
			raw := hapiAnswer(t, path)
			want := money(mustObject(t, raw.body), resourceType(raw.body))
			for _, a := range exchange(t, member04, get(path)) {
				if a.status != http.StatusOK {
					t.Errorf("%s: %d %.300s", a.mode, a.status, a.body)
					continue
				}
				if got := money(mustObject(t, a.body), resourceType(a.body)); !slices.Equal(got, want) {
					t.Errorf("%s: the member's own %s carries money at %v, HAPI holds it at %v", a.mode, path, got, want)
				}
			}
		})
	}
}

// TestContainedResourcesNeedTheirOwnScope: moneyEOB contains a Coverage; a token granting only
// ExplanationOfBenefit gets the claim without it, or not at all (check looks at every contained
// resource's type), never the Coverage.
func TestContainedResourcesNeedTheirOwnScope(t *testing.T) {
	evidence.Proves(t, "SMART-05")
	p := member04ClaimsOnly
	for _, path := range []string{"/ExplanationOfBenefit/" + moneyEOB, "/ExplanationOfBenefit?_id=" + moneyEOB,
		"/ExplanationOfBenefit?_count=50", "/ExplanationOfBenefit/" + moneyEOB + "/_history/1", "/ExplanationOfBenefit?_id=" + moneyEOB + "&_elements=contained"} {
		t.Run(path, func(t *testing.T) {
			proof := path
			if path == "/ExplanationOfBenefit?_count=50" {
				proof = "/ExplanationOfBenefit?patient=member-04&_count=50"
			}
			wouldLeak(t, p, proof, "Coverage/cov: the token grants no Coverage")
			for _, a := range exchange(t, p, get(path)) {
				refusedOrServed(t, a)
			}
		})
	}
}

func mustObject(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %v %.200s", err, b)
	}
	return m
}

// Finding 10: XML is refused before the FHIR server.

// TestXMLIsRefusedBeforeTheFHIRServer: _format=xml, _format=application/fhir+xml and Accept:
// application/fhir+xml answer 406 with a JSON OperationOutcome, and the FHIR server sees no request.
func TestXMLIsRefusedBeforeTheFHIRServer(t *testing.T) {
	for _, c := range []struct {
		c call
		// also: a 4xx refusal other than 406 (a _format in a form body), or, where JSON is acceptable too,
		// a 200 JSON answer; never the FHIR server's XML.
		refusal, json bool
	}{
		{c: get("/Patient/member-01?_format=xml")},
		{c: get("/Patient/member-01?_format=application/fhir%2Bxml")},
		{c: get("/Patient/member-01?_format=application/fhir+xml")}, // '+' is a space in a query: HAPI reads it back as '+'
		{c: get("/Patient/member-01?_format=application/xml")},
		{c: get("/Patient/member-01?_format=text/xml")},
		{c: get("/Patient/member-01?_format=application%2Ffhir%2Bxml")},
		{c: get("/Patient/member-01?_format=XML")},
		{c: get("/Observation?_format=xml")},
		{c: get("/Observation?_format=json&_format=xml")},
		{c: get("/Patient/member-01", "Accept", "application/fhir+xml")},
		{c: get("/Patient/member-01", "Accept", "application/xml")},
		{c: get("/Patient/member-01", "Accept", "application/xml+fhir")},
		{c: get("/Patient/member-01", "Accept", "text/xml")},
		{c: get("/Patient/member-01", "Accept", "application/fhir+xml;q=1.0, application/fhir+json;q=0.1"), json: true},
		{c: get("/Patient/member-01", "Accept", "application/fhir+xml, */*;q=0.1"), json: true},
		// Not XML, but no more JSON than XML: HAPI renders them with the data in them.
		{c: get("/Patient/member-01?_format=html")},
		{c: get("/Patient/member-01?_format=ttl")},
		{c: get("/Patient/member-01", "Accept", "text/html")},
		{c: get("/Patient/member-01", "Accept", "text/turtle")},
		{c: searchPost("Observation", "_format=xml"), refusal: true},
	} {
		t.Run(c.c.String(), func(t *testing.T) {
			for _, m := range modes() {
				var a answer
				reached := upstreamDelta(t, m, func() { a = sendAs(t, member01, m, c.c) })
				switch {
				case a.status == http.StatusOK && c.json && strings.Contains(a.header.Get("Content-Type"), "json"):
					continue
				case a.status == http.StatusNotAcceptable && strings.Contains(a.header.Get("Content-Type"), "json"):
				case c.refusal && a.status >= 400 && a.status < 500:
				default:
					t.Errorf("%s: %d (%s), want 406 with a JSON OperationOutcome: %.200s", m.name, a.status, a.header.Get("Content-Type"), a.body)
				}
				if reached {
					t.Errorf("%s: the request reached the FHIR server", m.name)
				}
			}
		})
	}
	t.Run("JSON formats still pass", func(t *testing.T) {
		for _, f := range []string{"json", "application/fhir%2Bjson", "application/json"} {
			for _, a := range exchange(t, member01, get("/Patient/member-01?_format="+f)) {
				if a.status != http.StatusOK {
					t.Errorf("%s: _format=%s: %d %.200s", a.mode, f, a.status, a.body)
				}
			}
		}
	})
}

// ---- helpers shared by the cases ----

// sameAsMissing: the answer about what the caller may not see is the answer about what does not exist:
// the same status and bytes, a 4xx OperationOutcome (fhirwall's 404, or the same refusal of the request
// itself), no ETag, Last-Modified or Content-Location.
func sameAsMissing(t *testing.T, p *principal, notYours, missing call) [2]answer {
	t.Helper()
	n, m := exchange(t, p, notYours), exchange(t, p, missing)
	for i := range n {
		if n[i].status != m[i].status || !bytes.Equal(n[i].body, m[i].body) || n[i].status < 400 || n[i].status > 499 {
			t.Errorf("%s: not yours %d %.300s\n  missing %d %.300s", n[i].mode, n[i].status, n[i].body, m[i].status, m[i].body)
		}
		for _, h := range []string{"ETag", "Last-Modified", "Content-Location", "Location"} {
			if n[i].header.Get(h) != "" {
				t.Errorf("%s: not-yours answer carries %s: %s", n[i].mode, h, n[i].header.Get(h))
			}
		}
	}
	return n
}

// refusedOrServed: a 4xx (check has already required an OperationOutcome) or a 200 Bundle or resource
// (check has already required it to hold nothing p may not see).
func refusedOrServed(t *testing.T, a answer) {
	t.Helper()
	if a.status != http.StatusOK && (a.status < 400 || a.status > 499) {
		t.Errorf("%s: %d, want a 4xx refusal or a 200 without what the token does not grant: %.300s", a.mode, a.status, a.body)
	}
}

func noStore(t *testing.T, a answer) {
	t.Helper()
	if cc := strings.ToLower(a.header.Get("Cache-Control")); !strings.Contains(cc, "no-store") {
		t.Errorf("%s: 2xx with patient data has Cache-Control %q, want no-store", a.mode, cc)
	}
	if pr := strings.ToLower(a.header.Get("Pragma")); pr != "no-cache" {
		t.Errorf("%s: 2xx with patient data has Pragma %q, want no-cache", a.mode, pr)
	}
}

// idsOf returns the sorted Type/id of a Bundle's entries; both modes must agree.
func idsOf(t *testing.T, as [2]answer) []string {
	t.Helper()
	var got [2][]string
	for i, a := range as {
		if a.status != http.StatusOK {
			t.Fatalf("%s: %d %.300s", a.mode, a.status, a.body)
		}
		got[i] = ids(entries(t, a))
		slices.Sort(got[i])
	}
	if !slices.Equal(got[0], got[1]) {
		t.Errorf("the modes disagree: %s %v, %s %v", as[0].mode, got[0], as[1].mode, got[1])
	}
	return got[0]
}

func rawEntries(t *testing.T, a answer) []json.RawMessage {
	t.Helper()
	var b struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(a.body, &b); err != nil {
		t.Fatalf("%s: %v", a.mode, err)
	}
	var out []json.RawMessage
	for _, e := range b.Entry {
		out = append(out, e.Resource)
	}
	return out
}

var resourceTypeFirst = regexp.MustCompile(`^\s*\{\s*"resourceType"\s*:`)

func startsWithResourceType(b []byte) bool { return resourceTypeFirst.Match(b) }

// pageThrough follows next links from a search and returns every entry it could see (search mode match).
func pageThrough(t *testing.T, p *principal, m mode, path string) []string {
	t.Helper()
	var out []string
	for page := 0; path != ""; page++ {
		if page > 200 {
			t.Fatalf("%s: more than 200 pages", m.name)
		}
		a := sendAs(t, p, m, get(path))
		if a.status != http.StatusOK {
			t.Fatalf("%s: page %d of %s: %d %.300s", m.name, page, path, a.status, a.body)
		}
		var b struct {
			Entry []struct {
				Resource struct{ ResourceType, ID string } `json:"resource"`
				Search   struct{ Mode string }             `json:"search"`
			} `json:"entry"`
		}
		_ = json.Unmarshal(a.body, &b)
		for _, e := range b.Entry {
			if e.Search.Mode == "" || e.Search.Mode == "match" {
				out = append(out, e.Resource.ResourceType+"/"+e.Resource.ID)
			}
		}
		path = ""
		if next := link(a, "next"); next != "" {
			path = relative(t, next, p.api)
		}
	}
	return out
}

func bundleTotal(b []byte) (int, bool) {
	var x struct {
		Total *int `json:"total"`
	}
	if json.Unmarshal(b, &x) != nil || x.Total == nil {
		return 0, false
	}
	return *x.Total, true
}

func sep(path string) string {
	if strings.Contains(path, "?") {
		return "&"
	}
	return "?"
}

// upstreamDelta runs fn and reports whether a request reached the FHIR server meanwhile: Envoy's FHIR
// server clusters count them in Envoy mode, the proxy's allowed decisions in standalone mode (a refused
// request is never proxied). Other suites may share the stack: a nonzero count is measured up to three
// times before it is believed.
func upstreamDelta(t *testing.T, m mode, fn func()) bool {
	t.Helper()
	for attempt := 0; ; attempt++ {
		before := upstreamCount(t, m)
		fn()
		if reached := upstreamCount(t, m) != before; !reached || attempt == 2 {
			return reached
		}
	}
}

var (
	envoyUpstream = regexp.MustCompile(`(?m)^cluster\.fhir_server_[a-z-]+\.upstream_rq_total: (\d+)$`)
	proxyAllowed  = regexp.MustCompile(`(?m)^fhirwall_decisions_total\{[^}]*mode="standalone"[^}]*outcome="allow"[^}]*\} (\S+)$`)
)

func upstreamCount(t *testing.T, m mode) float64 {
	t.Helper()
	u, re := stackenv.EnvoyAdminURL+"/stats?filter=fhir_server_", envoyUpstream
	if m.name == "standalone" {
		u, re = stackenv.ProxyAdminURL+"/metrics", proxyAllowed
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("%s counters: %v", m.name, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	sum := 0.0
	for _, mm := range re.FindAllStringSubmatch(buf.String(), -1) {
		v, _ := strconv.ParseFloat(mm[1], 64)
		sum += v
	}
	return sum
}
