//go:build e2e

package adversarial

// The known ways through a naive gateway (FHIR-NOTES), on the Payer-to-Payer API: payer-b, to whom this
// suite's member fwadv-p2p-exact opted in (#regular) through $member-match at the start of each test, and
// payer-c, to whom nobody did. Every answer goes through check: a 2xx carries no marker (other members' ids,
// names, member numbers; the ids and p2p-marker- identifiers of the opted-in member's old data, denied and
// drug prior auths and PSY-labelled Observation; the data of members nobody opted in) and no Money; every
// refusal is an OperationOutcome.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// TestPayerToPayerForbiddenDataIsReallyInHAPI: each check below can fail. HAPI holds every withheld fixture
// with its marker and the property that withholds it (a date of service over five years ago, an A3 denial,
// a drug, a PSY label), a claim with Money, and the members nobody opted in; and HAPI's own answers, passed
// on to payer-b or payer-c unchanged, would be leaks that check names.
func TestPayerToPayerForbiddenDataIsReallyInHAPI(t *testing.T) {
	evidence.Proves(t, "CMS-P2P-02", "CMS-P2P-03")
	tr := groundTruth(t)
	cutoff := time.Now().AddDate(-5, 0, 0).Format("2006-01-02")
	for ref, why := range payerWithheld {
		h := tr.byID[ref]
		if h == nil {
			t.Errorf("HAPI lacks %s", ref)
			continue
		}
		if !strings.Contains(h.json, `"p2p-marker-`+h.id+`"`) {
			t.Errorf("%s carries no marker identifier p2p-marker-%s", ref, h.id)
		}
		switch why {
		case "old":
			if d := dateOfService(h.resource); d == "" || d >= cutoff {
				t.Errorf("%s: date of service %q is not before %s", ref, d, cutoff)
			}
		case "denied":
			if !strings.Contains(h.json, `"A3"`) {
				t.Errorf("%s is not an A3 (denied) prior auth", ref)
			}
		case "drug":
			if !isDrug(h.resource) || h.resource["use"] != "preauthorization" {
				t.Errorf("%s is not a drug prior auth", ref)
			}
		case "sensitive":
			if !regexp.MustCompile(`"security"\s*:\s*\[[^\]]*"PSY"`).MatchString(h.json) {
				t.Errorf("%s has no meta.security PSY", ref)
			}
		}
	}
	if h := tr.byID["ExplanationOfBenefit/fwadv-p2p-eob-exact-2024"]; h == nil || len(money(h.resource, "ExplanationOfBenefit")) == 0 {
		t.Errorf("HAPI's fwadv-p2p-eob-exact-2024 carries no Money")
	}
	// One resource per answer: markers.find names at most eight hits, and a search's first resources use them up.
	wouldLeak(t, payerB, "/ExplanationOfBenefit/fwadv-p2p-eob-exact-2019", "fwadv-p2p-eob-exact-2019")
	wouldLeak(t, payerB, "/ExplanationOfBenefit/fwadv-p2p-pa-exact-denied-2025", "fwadv-p2p-pa-exact-denied-2025")
	wouldLeak(t, payerB, "/ExplanationOfBenefit/fwadv-p2p-pa-exact-drug-2025", "fwadv-p2p-pa-exact-drug-2025")
	wouldLeak(t, payerB, "/ExplanationOfBenefit/fwadv-p2p-eob-exact-2024", "money reaches")
	wouldLeak(t, payerB, "/Observation?patient=Patient/"+p2pSelf, "fwadv-p2p-obs-exact-psy-2024")
	wouldLeak(t, payerB, "/Encounter?patient=Patient/"+p2pSelf, "fwadv-p2p-encounter-exact-2018")
	wouldLeak(t, payerB, "/Condition?patient=Patient/"+p2pSelf, "fwadv-p2p-condition-exact-2017")
	// check names at most eight hits per answer: one member per answer.
	wouldLeak(t, payerB, "/Patient/"+p2pNotOpted, p2pNotOpted, "Kessington", p2pNotOptedID)
	for _, m := range []string{p2pTwin, "p2p-notopted", "p2p-twin-1", "member-01"} {
		wouldLeak(t, payerB, "/Patient/"+m, m)
	}
	wouldLeak(t, payerB, "/ExplanationOfBenefit?patient=Patient/"+p2pNotOpted, "fwadv-p2p-eob-notopted-2024")
	wouldLeak(t, payerC, "/Patient?_id="+p2pSelf, p2pSelf, "Thornbury", p2pSelfMemberID)
	wouldLeak(t, payerC, "/ExplanationOfBenefit/fwadv-p2p-eob-exact-2024", "fwadv-p2p-eob-exact-2024")
	wouldLeak(t, payerC, "/ExplanationOfBenefit/fwadv-p2p-pa-exact-approved-2025", "fwadv-p2p-pa-exact-approved-2025")
}

// dateOfService is the earliest date a resource says its service happened on.
func dateOfService(r map[string]any) string {
	earliest := ""
	keep := func(v any) {
		if s, ok := v.(string); ok && len(s) >= 10 && (earliest == "" || s[:10] < earliest) {
			earliest = s[:10]
		}
	}
	for _, k := range []string{"billablePeriod", "period"} {
		if p, ok := r[k].(map[string]any); ok {
			keep(p["start"])
		}
	}
	for _, k := range []string{"recordedDate", "onsetDateTime", "effectiveDateTime", "servicedDate"} {
		keep(r[k])
	}
	for _, it := range asObjects(r["item"]) {
		keep(it["servicedDate"])
	}
	return earliest
}

// TestPayerToPayerSeesOnlyOptedInMembersWithinTheDataScope: payer-b's search of each served type for its
// opted-in member returns exactly the member's resources inside the data scope (none of payerWithheld, no
// Money); its reads of them work; the Patient is found by identifier. payer-c, asking the same, gets nothing.
func TestPayerToPayerSeesOnlyOptedInMembersWithinTheDataScope(t *testing.T) {
	evidence.Proves(t, "CMS-P2P-01", "CMS-P2P-02", "CMS-P2P-03")
	optInPayerB(t)
	tr := groundTruth(t)
	payerB.prepare(t, tr)
	for _, typ := range mapKeys(tr.surface[payerToPayer]) {
		var want []string
		for _, h := range tr.of(typ, p2pSelf) {
			if payerB.visible(tr, h) {
				want = append(want, typ+"/"+h.id)
			}
		}
		if len(want) == 0 || typ == "Patient" {
			continue
		}
		slices.Sort(want)
		t.Run(typ, func(t *testing.T) {
			for _, a := range exchange(t, payerB, get("/"+typ+"?patient=Patient/"+p2pSelf+"&_count=100")) {
				if a.status != http.StatusOK {
					t.Errorf("%s: %s", a.mode, a)
					continue
				}
				got := ids(entries(t, a))
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("%s: %v, want %v", a.mode, got, want)
				}
			}
			for _, ref := range want {
				for _, a := range exchange(t, payerB, get("/"+ref)) {
					if a.status != http.StatusOK {
						t.Errorf("%s read %s: %s", a.mode, ref, a)
					}
				}
			}
			for _, a := range exchange(t, payerC, get("/"+typ+"?patient=Patient/"+p2pSelf+"&_count=100")) {
				if a.status == http.StatusOK && len(entries(t, a)) > 0 {
					t.Errorf("payer-c, %s: %s", a.mode, a)
				}
			}
		})
	}
	for _, path := range []string{"/Patient/" + p2pSelf, "/Patient?identifier=" + p2pMemberIDSys + "|" + p2pSelfMemberID, "/Patient?_id=" + p2pSelf} {
		for _, a := range exchange(t, payerB, get(path)) {
			if a.status != http.StatusOK || !bytes.Contains(a.body, []byte(`"`+p2pSelf+`"`)) {
				t.Errorf("%s %s: %s", a.mode, path, a)
			}
		}
	}
}

// p2pOthers are members payer-b and payer-c may never see: this suite's not-opted-in member and twin, the
// other suite's never-opted-in twin, and a seed member; p2p-notopted for payer-b (only payer-c is ever named
// in its Consent).
var p2pOthers = []string{p2pNotOpted, p2pTwin, "p2p-twin-1", "member-01"}

// p2pSearchProbes are every accepted search parameter of every served type, with modifiers, chains, _has, OR
// lists mixing the opted-in member with one nobody opted in, result parameters, and values naming withheld
// resources: alone and beside patient=Patient/<the opted-in member>.
func p2pSearchProbes(tr *truth) []string {
	self, other := "Patient/"+p2pSelf, "Patient/"+p2pNotOpted
	patientVals := []string{
		"patient=" + self, "patient=" + p2pSelf, "patient=" + other, "patient=" + self + "," + other, "patient=" + other + "," + self,
		"patient=" + self + ",Patient/p2p-twin-1", "patient=" + self + "&patient=" + other, "patient=" + self + ",Patient/member-01",
		"patient=" + stackenv.HAPIURL + "/" + other, "patient=" + self + "%2C" + other, "patient=" + self + "\\," + other,
		"patient:missing=true", "patient:missing=false", "patient:not=" + self, "patient:Patient=" + p2pNotOpted,
		"patient:identifier=" + p2pMemberIDSys + "|" + p2pNotOptedID, "patient:identifier=" + p2pSelfMemberID,
		"patient.name=Kessington", "patient.identifier=" + p2pNotOptedID, "patient:Patient.family=Kessington",
		"patient:Patient._id=" + p2pNotOpted, "patient:Patient.identifier=" + p2pNotOptedID, "patient:above=" + other,
		"patient:below=" + other, "patient:text=Kessington", "subject=" + other, "subject=" + self + "," + other,
		"subject:Group=x", "patient=" + self + "&subject=" + other, "patient=" + other + "/_history/1", "Patient=" + other,
		"pat%69ent=" + other, "patient=" + strings.ToUpper(p2pNotOpted),
	}
	withheldIDs := []string{}
	for ref := range payerWithheld {
		withheldIDs = append(withheldIDs, strings.SplitN(ref, "/", 2)[1])
	}
	slices.Sort(withheldIDs)
	valuesOf := func(typ string, sp searchParam) []string {
		switch sp.name {
		case "_id":
			var vs []string
			for _, h := range tr.of(typ, p2pSelf) {
				vs = append(vs, h.id)
			}
			for _, id := range withheldIDs {
				vs = append(vs, id)
			}
			for _, h := range tr.of(typ, p2pNotOpted) {
				vs = append(vs, h.id)
			}
			if len(vs) > 1 {
				vs = append(vs, vs[0]+","+vs[len(vs)-1])
			}
			return vs
		case "identifier":
			return []string{p2pMemberIDSys + "|" + p2pNotOptedID, p2pNotOptedID, p2pTwinID, p2pMemberIDSys + "|" + p2pTwinID,
				p2pSelfMemberID + "," + p2pNotOptedID, p2pMemberIDSys + "|", "|" + p2pNotOptedID, "FWM0001",
				"https://fhirwall.example/p2p-marker|p2p-marker-fwadv-p2p-eob-exact-2019", "p2p-marker-fwadv-p2p-pa-exact-denied-2025"}
		case "date", "created", "authoredon":
			return []string{"lt2021-12-01", "le2019-12-31", "eq2019", "ge1900", "ne2024", "sa2000", "eb2100"}
		case "status", "clinical-status":
			return []string{"active", "final", "cancelled", "entered-in-error", "completed"}
		case "category":
			return []string{"survey", "laboratory", "http://terminology.hl7.org/CodeSystem/observation-category|survey"}
		case "code":
			return []string{"44261-6", "http://loinc.org|44261-6", "4548-4", "195967001"}
		case "type", "class":
			return []string{"pharmacy", "AMB", "x"}
		case "intent":
			return []string{"order"}
		case "name":
			return []string{"Kessington", "Thornbury"}
		}
		return []string{"x"}
	}
	var out []string
	for _, typ := range mapKeys(tr.surface[payerToPayer]) {
		public := publicTypes[typ]
		for _, sp := range tr.surface[payerToPayer][typ] {
			if sp.name == "patient" {
				continue
			}
			for _, mod := range modifiers[sp.typ] {
				vals := valuesOf(typ, sp)
				if mod != "" {
					vals = vals[:1]
				}
				if mod == ":missing" {
					vals = []string{"true", "false"}
				}
				if public && mod != "" {
					continue // nothing of a member to reach: the plain parameter is enough
				}
				if mod == "" && len(vals) > 4 {
					vals = vals[:4]
				}
				for _, v := range vals {
					q := sp.name + mod + "=" + queryValue(v)
					// Beside the member's own patient=, where the API answers; alone only for _id (an _id-only
					// search names no patient) and for the public types.
					if public || typ == "Patient" || sp.name == "_id" {
						out = append(out, "/"+typ+"?"+q)
					}
					if !public && typ != "Patient" {
						out = append(out, "/"+typ+"?patient="+self+"&"+q)
					}
				}
			}
		}
		if public || typ == "Patient" {
			continue
		}
		// Every shape on the types with withheld data, a sample elsewhere (the suite's time is bounded).
		full := typ == "ExplanationOfBenefit" || typ == "Observation"
		pvs := patientVals
		if !full {
			pvs = slices.Concat(patientVals[:6], patientVals[11:13])
		}
		for _, pv := range pvs {
			out = append(out, "/"+typ+"?"+pv)
		}
		results := []string{"_elements=id,patient", "_elements=meta,identifier,item,total,payment", "_elements=id&_elements=item",
			"_summary=true", "_summary=data", "_summary=text", "_summary=count", "_count=0", "_total=accurate", "_count=0&_total=accurate",
			"_include=*", "_include=" + typ + ":patient", "_include:iterate=*", "_include=ExplanationOfBenefit:coverage&_include:iterate=Coverage:payor",
			"_include=ExplanationOfBenefit:claim", "_include=ExplanationOfBenefit:insurer", "_revinclude=*", "_revinclude=Provenance:target",
			"_revinclude=Consent:patient", "_revinclude:iterate=*", "_sort=-date", "_sort=patient", "_contained=true", "_containedType=contained",
			"_has:Consent:patient:actor=Organization/payer-b", "_security=PSY", "_security:not=PSY", "_tag=x", "_content=Kessington",
			"_filter=patient%20eq%20" + other, "_list=x", "_query=x", "_format=xml", "_pretty=true", "_elements:exclude=meta"}
		if !full {
			results = results[:12]
		}
		for _, r := range results {
			out = append(out, "/"+typ+"?patient="+self+"&"+r)
			if full {
				out = append(out, "/"+typ+"?patient="+other+"&"+r)
			}
		}
	}
	// The Patient compartment anchor: _id and identifier, with OR lists, chains, _has and includes.
	for _, q := range []string{
		"_id=" + p2pSelf + "," + p2pNotOpted, "_id=" + p2pNotOpted + "," + p2pSelf, "_id=" + p2pSelf + "&_id=" + p2pNotOpted,
		"_id:not=" + p2pSelf, "_id:missing=false", "identifier=" + p2pSelfMemberID + "," + p2pNotOptedID,
		"identifier=" + p2pMemberIDSys + "|" + p2pSelfMemberID + "," + p2pMemberIDSys + "|" + p2pNotOptedID,
		"identifier=" + p2pMemberIDSys + "|" + p2pSelfMemberID + "&identifier=" + p2pMemberIDSys + "|" + p2pNotOptedID,
		"identifier:not=" + p2pSelfMemberID, "identifier:missing=false", "identifier:text=Member", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MB|" + p2pNotOptedID,
		"identifier:contains=FWADV", "identifier:below=FWADV", "name=Kessington", "family=Kessington", "birthdate=1975-11-02", "gender=male",
		"_has:ExplanationOfBenefit:patient:status=active", "_has:Consent:patient:actor=Organization/payer-b", "_has:Coverage:beneficiary:identifier=" + p2pNotOptedID,
		"_has:Observation:patient:_security=PSY", "_id=" + p2pSelf + "&_revinclude=*", "_id=" + p2pSelf + "&_revinclude=ExplanationOfBenefit:patient",
		"_id=" + p2pSelf + "&_revinclude=Observation:patient", "_id=" + p2pSelf + "&_revinclude=Consent:patient", "_id=" + p2pSelf + "&_revinclude:iterate=*",
		"identifier=" + p2pMemberIDSys + "|" + p2pSelfMemberID + "&_revinclude=Encounter:patient&_revinclude=Condition:patient",
		"_id=" + p2pSelf + "&_elements=id,link", "_id=" + p2pSelf + "&_summary=count", "_id=" + p2pSelf + "&_total=accurate&_count=0",
		"link=" + other, "_id=" + p2pSelf + "&_include=Patient:link", "_id=" + p2pSelf + "&_include=Patient:general-practitioner&_include:iterate=*",
	} {
		out = append(out, "/Patient?"+q)
	}
	return out
}

// TestPayerToPayerEveryAcceptedSearchKeepsToOptedInMembersAndTheDataScope: every probe of p2pSearchProbes,
// by GET and as a POST _search form, as payer-b (opted in), payer-b with claims only, and payer-c (nobody).
func TestPayerToPayerEveryAcceptedSearchKeepsToOptedInMembersAndTheDataScope(t *testing.T) {
	evidence.Proves(t, "CMS-P2P-01", "CMS-P2P-03", "SEC-02")
	optInPayerB(t)
	tr := groundTruth(t)
	var probes []probe
	// make e2e holds the whole package to go test's 10 minutes and the API to 20 requests/s per payer: by default
	// one probe in three (all of the Patient anchor's) is sent, FHIRWALL_P2P_ALL=1 sends every one.
	all := os.Getenv("FHIRWALL_P2P_ALL") == "1"
	for i, path := range p2pSearchProbes(tr) {
		if !all && i%3 != 0 && !strings.HasPrefix(path, "/Patient?") {
			continue
		}
		probes = append(probes, probe{p: payerB, c: get(path)})
		typ, q, _ := strings.Cut(strings.TrimPrefix(path, "/"), "?")
		// payer-c asks what names payer-b's member; the POST form and the down-scoped token a sample of each type.
		if strings.Contains(path, p2pSelf) || strings.Contains(path, p2pSelfMemberID) || typ == "Patient" {
			probes = append(probes, probe{p: payerC, c: get(path)})
		}
		if i%4 == 0 || typ == "Patient" {
			probes = append(probes, probe{p: payerB, c: searchPost(typ, q)})
		}
		if i%2 == 0 && (typ == "ExplanationOfBenefit" || typ == "Observation" || typ == "Patient") {
			probes = append(probes, probe{p: payerBClaimsOnly, c: get(path)})
		}
	}
	// POST _search mixing query and form, and forms a server may still read.
	for _, c := range []call{
		{method: http.MethodPost, path: "/ExplanationOfBenefit/_search?patient=Patient/" + p2pSelf, body: "patient=Patient/" + p2pNotOpted,
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}},
		{method: http.MethodPost, path: "/ExplanationOfBenefit/_search?patient=Patient/" + p2pNotOpted, body: "patient=Patient/" + p2pSelf,
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}},
		{method: http.MethodPost, path: "/ExplanationOfBenefit/_search", body: "patient=Patient/" + p2pSelf + "&_id=fwadv-p2p-eob-exact-2019",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, chunked: true},
		{method: http.MethodPost, path: "/Observation/_search", body: "patient=Patient/" + p2pSelf + "&_security=PSY",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded; charset=ISO-8859-1"}},
		{method: http.MethodPost, path: "/Patient/_search", body: `{"identifier":"` + p2pNotOptedID + `"}`,
			header: map[string]string{"Content-Type": "application/json"}},
		{method: http.MethodPost, path: "/Patient/_search", body: "--x\r\nContent-Disposition: form-data; name=\"_id\"\r\n\r\n" + p2pNotOpted + "\r\n--x--\r\n",
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=x"}},
	} {
		probes = append(probes, probe{p: payerB, c: c}, probe{p: payerC, c: c})
	}
	t.Logf("%d requests", sweep(t, probes))
}

// TestPayerToPayerReadsHistoryAndHeadersKeepToTheDataScope: reads, vreads and history of the opted-in
// member's resources (inside and outside the data scope) and of other members', operations the API does not
// serve, writes, and the conditional and other headers that change HAPI's answer.
func TestPayerToPayerReadsHistoryAndHeadersKeepToTheDataScope(t *testing.T) {
	evidence.Proves(t, "CMS-P2P-02", "CMS-P2P-03", "SEC-02")
	optInPayerB(t)
	tr := groundTruth(t)
	var refs []string
	for _, m := range append([]string{p2pSelf}, p2pOthers...) {
		for _, h := range tr.all {
			if slices.Contains(h.patients, m) && tr.surface[payerToPayer][h.typ] != nil {
				refs = append(refs, h.typ+"/"+h.id)
			}
		}
	}
	var probes []probe
	add := func(c call) { probes = append(probes, probe{p: payerB, c: c}, probe{p: payerC, c: c}) }
	for i, ref := range refs {
		suffixes := []string{"", "/_history", "/_history/1", "?_elements=id"}
		if i%4 == 0 {
			suffixes = append(suffixes, "/_history/2", "?_summary=true", "/$everything", "/$meta")
		}
		for _, suffix := range suffixes {
			add(get("/" + ref + suffix))
		}
	}
	for _, path := range []string{"/_history", "/Patient/_history", "/ExplanationOfBenefit/_history", "/Consent?patient=Patient/" + p2pSelf,
		"/Consent", "/Group?member=Patient/" + p2pSelf, "/Patient/" + p2pSelf + "/ExplanationOfBenefit", "/Patient/$everything",
		"/$export", "/Patient/$export", "/Group/x/$davinci-data-export", "/$graphql?query={PatientList{id}}", "/?_type=Patient",
		"/Patient/" + p2pSelf + "/../" + p2pNotOpted, "/Patient/" + p2pNotOpted + "%2F", "//Patient/" + p2pNotOpted, "/patient/" + p2pNotOpted,
		"/Binary/" + binaryID(), "/Provenance?patient=Patient/" + p2pSelf, "/Claim?patient=Patient/" + p2pSelf, "/metadata"} {
		add(get(path))
	}
	for _, h := range [][]string{{"If-None-Match", "*"}, {"If-None-Match", `W/"1"`}, {"If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT"},
		{"If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT"}, {"If-Match", `W/"1"`}, {"Prefer", "handling=lenient"}, {"Prefer", "return=minimal"},
		{"Accept-Encoding", "gzip"}, {"X-HTTP-Method-Override", "DELETE"}, {"X-Fhirwall-Patient", p2pNotOpted}, {"X-Fhirwall-Client", "payer-b"},
		{"X-Forwarded-Host", "evil.example"}, {"Range", "bytes=0-40"}, {"Accept", "application/fhir+xml"}, {"Cache-Control", "no-cache"}} {
		for _, path := range []string{"/Patient/" + p2pSelf, "/Patient/" + p2pNotOpted, "/ExplanationOfBenefit/fwadv-p2p-eob-exact-2019",
			"/Observation/fwadv-p2p-obs-exact-psy-2024", "/ExplanationOfBenefit?patient=Patient/" + p2pSelf, "/Observation?patient=Patient/" + p2pSelf} {
			probes = append(probes, probe{p: payerB, c: get(path, h...), expect: notPartial}, probe{p: payerC, c: get(path, h...), expect: notPartial})
		}
	}
	fhirJSON := map[string]string{"Content-Type": "application/fhir+json"}
	for _, c := range []call{
		{method: http.MethodPut, path: "/Patient/" + p2pNotOpted, header: fhirJSON, body: `{"resourceType":"Patient","id":"` + p2pNotOpted + `"}`},
		{method: http.MethodDelete, path: "/Consent?patient=Patient/" + p2pSelf},
		{method: http.MethodPost, path: "/Consent", header: fhirJSON, body: string(mustMarshal(p2pConsent("Organization/payer-c", hrexRegular)))},
		{method: http.MethodPost, path: "", header: fhirJSON, body: `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/` + p2pNotOpted + `"}},{"request":{"method":"GET","url":"ExplanationOfBenefit?patient=Patient/` + p2pSelf + `"}}]}`},
		{method: http.MethodPatch, path: "/Consent/x", header: map[string]string{"Content-Type": "application/json-patch+json"}, body: `[{"op":"replace","path":"/status","value":"active"}]`},
	} {
		add(c)
	}
	t.Logf("%d requests", sweep(t, probes))
}

// TestPayerToPayerMembersNotOptedInLookExactlyLikeMissingOnes: to payer-b, members nobody opted in to it
// (this suite's, the other suite's twin, a seed member), their resources, and the opted-in member's withheld
// resources answer byte for byte like ids that do not exist; to payer-c, so does everything of the member
// who opted in to payer-b.
func TestPayerToPayerMembersNotOptedInLookExactlyLikeMissingOnes(t *testing.T) {
	evidence.Proves(t, "CMS-P2P-01", "SEC-01")
	optInPayerB(t)
	tr := groundTruth(t)
	cases := map[*principal][]string{}
	for _, m := range append(slices.Clone(p2pOthers), "p2p-notopted") {
		cases[payerB] = append(cases[payerB], "Patient/"+m)
		for _, h := range tr.all {
			if h.typ != "Patient" && slices.Contains(h.patients, m) && tr.surface[payerToPayer][h.typ] != nil && len(cases[payerB]) < 24 {
				cases[payerB] = append(cases[payerB], h.typ+"/"+h.id)
			}
		}
	}
	for ref := range payerWithheld {
		cases[payerB] = append(cases[payerB], ref)
	}
	for _, h := range tr.all {
		if slices.Contains(h.patients, p2pSelf) && tr.surface[payerToPayer][h.typ] != nil {
			cases[payerC] = append(cases[payerC], h.typ+"/"+h.id)
		}
	}
	cases[payerC] = append(cases[payerC], "Patient/p2p-twin-1", "Patient/member-01")
	for _, p := range []*principal{payerB, payerC} {
		for _, ref := range cases[p] {
			typ, _, _ := strings.Cut(ref, "/")
			suffixes := []string{"", "/_history/1"}
			if typ == "Patient" {
				suffixes = append(suffixes, "?_elements=id")
			}
			for _, suffix := range suffixes {
				t.Run(p.name+" "+ref+suffix, func(t *testing.T) {
					sameAsMissing(t, p, get("/"+ref+suffix), get("/"+typ+"/fwadv-no-such-0000"+suffix))
				})
			}
		}
	}
	// Searches naming them answer like searches naming a member that does not exist.
	for _, c := range []struct {
		p      *principal
		member string
	}{{payerB, p2pNotOpted}, {payerB, p2pTwin}, {payerB, "p2p-twin-1"}, {payerB, "member-01"}, {payerC, p2pSelf}} {
		for _, path := range []string{"/ExplanationOfBenefit?patient=Patient/%s", "/Observation?patient=Patient/%s", "/Coverage?patient=Patient/%s",
			"/Patient?_id=%s", "/ExplanationOfBenefit?patient=Patient/%s&_summary=count", "/ExplanationOfBenefit?patient=Patient/%s&_count=0&_total=accurate"} {
			t.Run(c.p.name+" "+fmt.Sprintf(path, c.member), func(t *testing.T) {
				n := exchange(t, c.p, get(fmt.Sprintf(path, c.member)))
				m := exchange(t, c.p, get(fmt.Sprintf(path, "fwadv-no-such-0000")))
				for i := range n {
					if n[i].status != m[i].status || normalizedSearch(n[i].body, c.member) != normalizedSearch(m[i].body, "fwadv-no-such-0000") {
						t.Errorf("%s: naming %s: %d %.300s\n  naming a missing member: %d %.300s", n[i].mode, c.member, n[i].status, n[i].body, m[i].status, m[i].body)
					}
				}
			})
		}
	}
	// The Patient found by identifier: a member number nobody opted in, or shared by twins, like an unknown one.
	for _, c := range []struct {
		p  *principal
		id string
	}{{payerB, p2pNotOptedID}, {payerB, p2pTwinID}, {payerB, "FWM0001"}, {payerC, p2pSelfMemberID}} {
		t.Run(c.p.name+" identifier "+c.id, func(t *testing.T) {
			n := exchange(t, c.p, get("/Patient?identifier="+p2pMemberIDSys+"|"+c.id))
			m := exchange(t, c.p, get("/Patient?identifier="+p2pMemberIDSys+"|FWADV-0000"))
			for i := range n {
				if n[i].status != m[i].status || normalizedSearch(n[i].body, c.id) != normalizedSearch(m[i].body, "FWADV-0000") {
					t.Errorf("%s: %d %.300s\n  unknown member number: %d %.300s", n[i].mode, n[i].status, n[i].body, m[i].status, m[i].body)
				}
			}
		})
	}
}

// normalizedSearch is an answer without what differs between any two searches (the Bundle's id, meta and
// links) and with the value the search named replaced.
func normalizedSearch(b []byte, named string) string {
	var root map[string]any
	if json.Unmarshal(b, &root) != nil {
		return string(b)
	}
	if root["resourceType"] == "Bundle" {
		delete(root, "id")
		delete(root, "meta")
		delete(root, "link")
	}
	return strings.ReplaceAll(string(mustMarshal(root)), named, "NAMED")
}

// TestPayerToPayerPagingLinksStayWithTheirPayer: payer-b pages through its member's claims and gets what one
// page holds; payer-c replaying each of payer-b's links gets the 404 of a page never issued; payer-b's own
// links tampered with (another member, a larger page, another shape) stay within the data scope.
func TestPayerToPayerPagingLinksStayWithTheirPayer(t *testing.T) {
	evidence.Proves(t, "CMS-P2P-04")
	optInPayerB(t)
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			const search = "/ExplanationOfBenefit?patient=Patient/" + p2pSelf
			want := ids(entries(t, sendAs(t, payerB, m, get(search+"&_count=100"))))
			var got []string
			path := search + "&_count=1"
			never := sendAs(t, payerC, m, get("?_getpages=00000000-0000-0000-0000-000000000000&_getpagesoffset=1&_count=1"))
			for page := 0; path != "" && page < 20; page++ {
				a := sendAs(t, payerB, m, get(path))
				if a.status != http.StatusOK {
					t.Fatalf("page %d: %s", page, a)
				}
				got = append(got, ids(entries(t, a))...)
				next := link(a, "next")
				path = ""
				if next == "" {
					break
				}
				path = relative(t, next, payerToPayer)
				if c := sendAs(t, payerC, m, get(path)); c.status != never.status || !bytes.Equal(c.body, never.body) {
					t.Errorf("payer-c replays payer-b's page %s: %s; a page never issued: %s", path, c, never)
				}
				for _, tampered := range []string{path + "&patient=Patient/" + p2pNotOpted, path + "&_count=1000",
					strings.Replace(path, "_getpagesoffset=", "_getpagesoffset=0&x=", 1), path + "&_elements=id", path + "&_include=*"} {
					sendAs(t, payerB, m, get(tampered))
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("pages hold %v; one page %v", got, want)
			}
		})
	}
}

// p2pMalformed are $member-match bodies fhirwall must refuse (400, 413, 415 for a content type, 422), never
// with 5xx, never storing a Consent. Where two bodies differ only in whether a real member is named (real,
// fake), their answers must be the same bytes.
type p2pMalformed struct {
	name, real, fake string
	contentType      string
	chunked          bool
}

func p2pMalformedBodies() []p2pMalformed {
	b := p2pConsent("Organization/payer-b", hrexRegular)
	real, fake := p2pSelfParts(b), p2pNobodyParts(b)
	mutate := func(parts []any, f func(patient, coverage, consent map[string]any) []any) string {
		var c []any
		_ = json.Unmarshal(mustMarshal(parts), &c)
		r := func(i int) map[string]any { return c[i].(map[string]any)["resource"].(map[string]any) }
		out := f(r(0), r(1), r(2))
		if out == nil {
			out = c
		}
		return p2pMatchIn(out)
	}
	pair := func(name string, f func(patient, coverage, consent map[string]any) []any) p2pMalformed {
		return p2pMalformed{name: name, real: mutate(real, f), fake: mutate(fake, f)}
	}
	one := func(name, body string) p2pMalformed { return p2pMalformed{name: name, real: body} }
	huge := strings.Repeat("9", 200_000)
	setID := func(v string) func(p, c, _ map[string]any) []any {
		return func(p, c, _ map[string]any) []any {
			p["identifier"].([]any)[0].(map[string]any)["value"] = v
			c["identifier"].([]any)[0].(map[string]any)["value"] = v
			c["subscriberId"] = v
			return nil
		}
	}
	cases := []p2pMalformed{
		one("empty body", ""),
		one("not JSON", "member-match please"),
		one("truncated JSON", `{"resourceType":"Parameters","parameter":[`),
		one("JSON null", "null"),
		one("JSON array", `[{"resourceType":"Parameters"}]`),
		one("JSON string", `"Parameters"`),
		one("empty object", `{}`),
		one("Parameters without parameter", `{"resourceType":"Parameters"}`),
		one("Parameters with empty parameter", `{"resourceType":"Parameters","parameter":[]}`),
		one("parameter not an array", `{"resourceType":"Parameters","parameter":{"name":"MemberPatient"}}`),
		one("a Patient, not Parameters", string(mustMarshal(real[0].(map[string]any)["resource"]))),
		one("a Bundle of the parts", string(mustMarshal(map[string]any{"resourceType": "Bundle", "type": "collection", "entry": []any{
			map[string]any{"resource": real[0].(map[string]any)["resource"]}, map[string]any{"resource": real[1].(map[string]any)["resource"]}}}))),
		one("deeply nested JSON", `{"resourceType":"Parameters","parameter":`+strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000)+`}`),
		one("invalid UTF-8", "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"MemberPatient\",\"resource\":{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xff\xfe\"}]}}]}"),
		one("duplicate JSON keys", strings.Replace(p2pMatchIn(real), `{"parameter"`, `{"resourceType":"Bundle","parameter"`, 1)),
		pair("MemberPatient is a Coverage", func(p, c, _ map[string]any) []any { p["resourceType"] = "Coverage"; return nil }),
		pair("CoverageToMatch is a Patient", func(p, c, _ map[string]any) []any { c["resourceType"] = "Patient"; return nil }),
		pair("Consent is a Patient", func(p, c, k map[string]any) []any { k["resourceType"] = "Patient"; return nil }),
		pair("parts swapped", func(p, c, k map[string]any) []any {
			return []any{map[string]any{"name": "MemberPatient", "resource": c}, map[string]any{"name": "CoverageToMatch", "resource": p},
				map[string]any{"name": "Consent", "resource": k}}
		}),
		pair("MemberPatient given as a value", func(p, c, k map[string]any) []any {
			return []any{map[string]any{"name": "MemberPatient", "valueString": "Patient/" + p2pSelf}, map[string]any{"name": "CoverageToMatch", "resource": c},
				map[string]any{"name": "Consent", "resource": k}}
		}),
		pair("huge MemberPatient id", func(p, c, _ map[string]any) []any { p["id"] = huge; return nil }),
		pair("huge member id beside the real one", func(p, c, _ map[string]any) []any {
			p["identifier"] = append(p["identifier"].([]any), map[string]any{"type": coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MB"), "system": p2pMemberIDSys, "value": huge})
			return nil
		}),
		{name: "huge member id", real: mutate(real, setID(huge))},
		pair("eleven member ids", func(p, c, _ map[string]any) []any {
			for i := range 10 {
				p["identifier"] = append(p["identifier"].([]any), map[string]any{"type": coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MB"), "system": p2pMemberIDSys, "value": fmt.Sprintf("FWADV-99%02d", i)})
			}
			return nil
		}),
		{name: "member ids joined by a comma", real: mutate(real, setID(p2pSelfMemberID+","+p2pNotOptedID)), fake: mutate(real, setID("FWADV-9998,FWADV-9999"))},
		{name: "member id with an escaped comma", real: mutate(real, setID(p2pSelfMemberID+`\,x`)), fake: mutate(real, setID(`FWADV-9998\,x`))},
		{name: "member id with a system bar", real: mutate(real, setID(p2pMemberIDSys+"|"+p2pSelfMemberID)), fake: mutate(real, setID(p2pMemberIDSys+"|FWADV-9998"))},
		{name: "member id as a wildcard", real: mutate(real, setID("*")), fake: mutate(real, setID("%"))},
		{name: "member id a search modifier", real: mutate(real, setID(p2pSelfMemberID+"&_id="+p2pNotOpted)), fake: mutate(real, setID("FWADV-9998&_id=x"))},
		pair("two MemberPatient", func(p, c, k map[string]any) []any {
			return []any{map[string]any{"name": "MemberPatient", "resource": p}, map[string]any{"name": "MemberPatient", "resource": p},
				map[string]any{"name": "CoverageToMatch", "resource": c}, map[string]any{"name": "Consent", "resource": k}}
		}),
		pair("two CoverageToMatch", func(p, c, k map[string]any) []any {
			return []any{map[string]any{"name": "MemberPatient", "resource": p}, map[string]any{"name": "CoverageToMatch", "resource": c},
				map[string]any{"name": "CoverageToMatch", "resource": c}, map[string]any{"name": "Consent", "resource": k}}
		}),
		pair("two Consents, one naming payer-c", func(p, c, k map[string]any) []any {
			return []any{map[string]any{"name": "MemberPatient", "resource": p}, map[string]any{"name": "CoverageToMatch", "resource": c},
				map[string]any{"name": "Consent", "resource": p2pConsent("Organization/payer-c", hrexRegular)}, map[string]any{"name": "Consent", "resource": k}}
		}),
		pair("name a string", func(p, c, _ map[string]any) []any { p["name"] = "Thornbury"; return nil }),
		pair("subscriberId an array", func(p, c, _ map[string]any) []any { c["subscriberId"] = []any{c["subscriberId"]}; return nil }),
		pair("birthDate not a date", func(p, c, _ map[string]any) []any { p["birthDate"] = "14/03/1980"; return nil }),
		pair("NUL in the family name", func(p, c, _ map[string]any) []any {
			n := p["name"].([]any)[0].(map[string]any)
			n["family"] = fmt.Sprint(n["family"]) + "\x00"
			return nil
		}),
	}
	big := mutate(real, func(p, _, _ map[string]any) []any {
		p["text"] = map[string]any{"status": "generated", "div": `<div xmlns="http://www.w3.org/1999/xhtml">` + strings.Repeat("x", 1<<20+1024) + `</div>`}
		return nil
	})
	cases = append(cases,
		p2pMalformed{name: "body over 1 MiB", real: big},
		p2pMalformed{name: "body over 1 MiB, chunked", real: big, chunked: true},
		p2pMalformed{name: "text/plain", real: p2pMatchIn(real), fake: p2pMatchIn(fake), contentType: "text/plain"},
		p2pMalformed{name: "XML", real: `<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="MemberPatient"/></parameter></Parameters>`, contentType: "application/fhir+xml"},
		p2pMalformed{name: "form", real: "MemberPatient=" + p2pSelf, contentType: "application/x-www-form-urlencoded"},
	)
	return cases
}

// TestPayerToPayerMalformedMemberMatchIsRefusedWithoutLeaking: every malformed $member-match body answers
// 400, 413 or 422 (415 for a content type) with an OperationOutcome, never 5xx or a match, stores no Consent,
// and answers the same bytes whether or not it names a real member.
func TestPayerToPayerMalformedMemberMatchIsRefusedWithoutLeaking(t *testing.T) {
	evidence.Proves(t, "PDEX-01")
	forgetP2PConsents(t)
	t.Cleanup(func() { forgetP2PConsents(t) })
	payerB.prepare(t, groundTruth(t))
	for _, c := range p2pMalformedBodies() {
		t.Run(c.name, func(t *testing.T) {
			mk := func(body string) call {
				cl := memberMatchCall(body)
				if c.contentType != "" {
					cl.header["Content-Type"] = c.contentType
				}
				cl.chunked = c.chunked
				return cl
			}
			real := exchangeNoWait(t, payerB, mk(c.real))
			for _, a := range real {
				ok := a.status == http.StatusBadRequest || a.status == http.StatusRequestEntityTooLarge || a.status == http.StatusUnprocessableEntity ||
					(c.contentType != "" && a.status == http.StatusUnsupportedMediaType)
				if !ok {
					t.Errorf("%s: %s", a.mode, a)
				}
			}
			if c.fake != "" {
				fake := exchangeNoWait(t, payerB, mk(c.fake))
				for i := range real {
					if real[i].status != fake[i].status || !bytes.Equal(real[i].body, fake[i].body) {
						t.Errorf("%s: naming a real member %d %.300s\n  naming nobody %d %.300s", real[i].mode, real[i].status, real[i].body, fake[i].status, fake[i].body)
					}
				}
			}
			if n := len(storedP2PConsents(t)); n != 0 {
				t.Errorf("a malformed $member-match stored %d Consents", n)
				forgetP2PConsents(t)
			}
		})
	}
}

// TestPayerToPayerFailedMatchesAreOne422: no such member, twins, a wrong birth date, a member nobody opted in
// whose Consent names another payer, an expired Consent, a Consent naming the caller under no known policy:
// every one answers the same 422 bytes, and stores nothing.
func TestPayerToPayerFailedMatchesAreOne422(t *testing.T) {
	evidence.Proves(t, "PDEX-01")
	forgetP2PConsents(t)
	t.Cleanup(func() { forgetP2PConsents(t) })
	b := p2pConsent("Organization/payer-b", hrexRegular)
	bodies := map[string]string{
		"nobody":                          p2pMatchIn(p2pNobodyParts(b)),
		"twins":                           p2pMatchIn(p2pTwinParts(b)),
		"the other suite's twins":         p2pMatchIn(p2pParts("Rivera", "Alex", "1990-07-01", "male", "P2P-2002", b)),
		"wrong birth date":                p2pMatchIn(p2pParts("Thornbury", "Odalys", "1980-03-15", "female", p2pSelfMemberID, b)),
		"another member's number":         p2pMatchIn(p2pParts("Thornbury", "Odalys", "1980-03-14", "female", p2pNotOptedID, b)),
		"Consent naming payer-c":          p2pMatchIn(p2pNotOptedParts(p2pConsent("Organization/payer-c", hrexRegular))),
		"opted-in member naming payer-c":  p2pMatchIn(p2pSelfParts(p2pConsent("Organization/payer-c", hrexRegular))),
		"expired Consent":                 p2pMatchIn(p2pSelfParts(p2pConsentFor("Organization/payer-b", hrexRegular, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)))),
		"Consent under an unknown policy": p2pMatchIn(p2pSelfParts(p2pConsent("Organization/payer-b", "http://example.org/policy#everything"))),
		"a seed member":                   p2pMatchIn(p2pParts("Garcia", "Sofia", "1985-01-01", "female", "FWM0002", b)),
	}
	var first [2]answer
	firstName := ""
	for _, name := range mapKeys(bodies) {
		got := exchange(t, payerB, memberMatchCall(bodies[name]))
		for i, a := range got {
			if a.status != http.StatusUnprocessableEntity {
				t.Errorf("%s, %s: %s", name, a.mode, a)
			}
			if firstName == "" {
				continue
			}
			if a.status != first[i].status || !bytes.Equal(a.body, first[i].body) {
				t.Errorf("%s, %s: %d %.300s\n  %s: %d %.300s", name, a.mode, a.status, a.body, firstName, first[i].status, first[i].body)
			}
		}
		if firstName == "" {
			first, firstName = got, name
		}
	}
	if n := len(storedP2PConsents(t)); n != 0 {
		t.Errorf("failed matches stored %d Consents", n)
	}
}

// exchangeNoWait is exchange for a request whose 503 is itself the finding: a 429, or a 503 the in-flight
// bound or a restart gave, is retried three times at most, not for a minute and a half.
func exchangeNoWait(t *testing.T, p *principal, c call) [2]answer {
	t.Helper()
	p.prepare(t, groundTruth(t))
	var out [2]answer
	for i, m := range modes() {
		for attempt := 0; ; attempt++ {
			a, err := sendOnce(testContext(t), m, p.api, p.token(t), c)
			if err != nil && attempt < 3 {
				time.Sleep(time.Second)
				continue
			}
			if err != nil {
				t.Fatalf("%s %s as %s: %v", m.name, c, p.name, err)
			}
			if (a.status == http.StatusTooManyRequests || a.status == http.StatusServiceUnavailable) && attempt < 3 {
				time.Sleep(time.Second)
				continue
			}
			for _, problem := range check(p, a) {
				t.Errorf("%s as %s, %s: %s", c, p.name, m.name, problem)
			}
			out[i] = a
			break
		}
	}
	return out
}
