//go:build e2e

package adversarial

// The classes of "Known ways through a naive FHIR gateway" (FHIR-NOTES) beyond issue 12's findings: every
// search parameter the APIs accept with every modifier, chains, _has, OR lists, repeated and disguised
// parameters, POST _search forms, every interaction, and the headers that change what HAPI answers. Each
// probe goes through check (no leak in a 2xx, every refusal an OperationOutcome) in both modes.

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// TestEveryAcceptedParameterAndModifierKeepsToTheCaller: each search parameter of each type the API's
// CapabilityStatement lists (and the compartment and control parameters an attacker adds), with every
// modifier of its type, with values of the caller's patient and of another patient.
func TestEveryAcceptedParameterAndModifierKeepsToTheCaller(t *testing.T) {
	evidence.Proves(t, "CMS-PA-02", "SEC-02")
	tr := groundTruth(t)
	var probes []probe
	for _, who := range []struct {
		p           *principal
		self, other string
	}{{member01, "member-01", "member-02"}, {providerOrgA, "member-01", "member-12"}} {
		v := newVocabulary(tr, who.self, who.other)
		for typ := range tr.surface[who.p.api] {
			// Modifiers and unlisted parameters where there is patient data to reach; elsewhere each listed
			// parameter in its plain form (the stack has two cores, the suite three minutes).
			held := !publicTypes[typ] && slices.ContainsFunc(tr.all, func(h *held) bool { return h.typ == typ })
			listed := tr.surface[who.p.api][typ]
			params := listed
			if held {
				params = v.paramsOf(who.p.api, typ)
			}
			for _, sp := range params {
				mods := modifiers[sp.typ]
				if !held || !slices.Contains(listed, sp) {
					mods = []string{""} // nothing of the type to leak, or a parameter the API refuses anyway
				}
				for _, mod := range mods {
					// The plain form with the values of both patients (OR lists, absolute references); each
					// modifier with the sharpest value.
					vals := v.values(typ, sp, mod)
					switch {
					case mod != "" || !held || !slices.Contains(listed, sp):
						vals = vals[:1]
					case sp.typ != "reference":
						vals = vals[:min(2, len(vals))]
					}
					for _, val := range vals {
						probes = append(probes, probe{p: who.p, c: get("/" + typ + "?" + sp.name + mod + "=" + queryValue(val))})
					}
				}
			}
		}
	}
	t.Logf("%d requests", sweep(t, probes))
}

// TestChainsReverseChainsAndORListsNeverCrossPatients: the search shapes that have leaked elsewhere.
func TestChainsReverseChainsAndORListsNeverCrossPatients(t *testing.T) {
	evidence.Proves(t, "CMS-PA-02", "SEC-02")
	member := []string{
		"/Observation?subject:Patient.name=Garcia", "/Observation?patient.identifier=FWM0002", "/Observation?patient:Patient.family=Garcia",
		"/Observation?patient.name=Garcia&patient=member-01", "/ExplanationOfBenefit?patient.identifier=https://fhirwall.example/member-id|FWM0002",
		"/ExplanationOfBenefit?coverage.beneficiary=member-02", "/ExplanationOfBenefit?coverage.subscriber.name=Garcia",
		"/Patient?_has:Observation:patient:code=4548-4", "/Patient?_has:ExplanationOfBenefit:patient:identifier=FWC-02-1",
		"/Patient?_has:Observation:subject:_id=observation-member-02-bp", "/Patient?_has:Coverage:beneficiary:identifier=FWM0002",
		"/Observation?patient=member-01,member-02", "/Observation?patient=member-02,member-01", "/Observation?patient=member-01&patient=member-02",
		"/Observation?patient=member-01&subject=member-02", "/Observation?subject=Patient/member-01,Group/attribution-org-a",
		"/Observation?subject=Group/attribution-org-a", "/Observation?subject:Group=attribution-org-a", "/Observation?patient:missing=true",
		"/Observation?subject:missing=true", "/Observation?patient:not=member-01", "/Observation?_id=observation-member-02-bp",
		"/Observation?_id=observation-member-01-bp,observation-member-02-bp", "/Patient?_id=member-01,member-02", "/Patient?_id:not=member-01",
		"/Patient?identifier=FWM0002", "/Patient?identifier:not=FWM0001", "/Patient?name=Garcia", "/Patient?name:missing=false",
		"/Patient?family=Garcia", "/Patient?given=Liam", "/Patient?birthdate=ge1900", "/Patient?gender=male", "/Patient?_content=Garcia",
		"/Patient?link=member-02", "/Coverage?beneficiary=member-02", "/Coverage?subscriber=member-02", "/Coverage?policy-holder=member-02",
		"/Coverage?payor=Organization/payer-a", "/ExplanationOfBenefit?payee=member-02", "/ExplanationOfBenefit?provider=Organization/org-a",
		"/ExplanationOfBenefit?care-team=Practitioner/pract-02", "/ExplanationOfBenefit?coverage=coverage-member-02",
		"/Condition?asserter=member-02", "/Observation?performer=Practitioner/pract-02", "/Observation?performer=member-02",
		"/Group?member=member-02", "/Group/attribution-org-a", "/Consent?patient=member-05", "/Observation?_list=x",
		"/Observation?_filter=patient%20eq%20member-02", "/Observation?_query=x", "/Observation?_type=Patient",
		"/Practitioner?_id=pract-02&_revinclude=Observation:performer", "/Practitioner?_revinclude=ExplanationOfBenefit:care-team",
		"/Organization?_revinclude=Coverage:payor", "/Organization?_id=payer-a&_revinclude=ExplanationOfBenefit:insurer",
		"/Organization?_id=org-a&_revinclude=Group:managing-entity", "/PractitionerRole?_include=PractitionerRole:practitioner&_revinclude:iterate=Observation:performer",
		"/Observation?patient=member-01&_include=Observation:subject&_include:iterate=Patient:link",
		"/Observation?patient=member-01&_revinclude:iterate=Observation:derived-from", "/ExplanationOfBenefit?_include=*&_include:iterate=*&_revinclude=*&_revinclude:iterate=*",
		"/Patient?_revinclude=*&_revinclude:iterate=*", "/Patient?_revinclude:iterate=Coverage:payor",
		"/Observation?_sort=patient&_count=100", "/Observation?_count=100000", "/Observation?_count=-1", "/Observation?_offset=0&_count=100",
		"/Observation?_summary=count&patient=member-02", "/Observation?_total=accurate&patient:missing=true",
	}
	provider := []string{
		"/Patient?_id=member-02", "/Patient?_id=member-12", "/Patient?_id=member-01,member-12", "/Patient?_id:not=member-01",
		"/Patient?identifier=FWM0012", "/Patient?identifier:not=FWM0001", "/Patient?name=Young", "/Patient?name:contains=oun",
		"/Patient?name:missing=false", "/Patient?birthdate=ge1900&_count=100", "/Patient?_has:ExplanationOfBenefit:patient:status=active",
		"/Patient?_has:Consent:patient:status=active", "/ExplanationOfBenefit?patient=member-12", "/ExplanationOfBenefit?patient=member-01,member-12",
		"/ExplanationOfBenefit?patient=member-01&patient=member-02", "/ExplanationOfBenefit?patient:missing=true",
		"/ExplanationOfBenefit?patient.identifier=FWM0012", "/ExplanationOfBenefit?patient:Patient.name=Young",
		"/ExplanationOfBenefit?_id=eob-member-02-3", "/ExplanationOfBenefit?_id=eob-member-01-2,eob-member-02-3",
		"/ExplanationOfBenefit?identifier=FWC-12-3", "/ExplanationOfBenefit?type=pharmacy&_count=100",
		"/ExplanationOfBenefit?service-date=lt2016-01-01&_count=100", "/ExplanationOfBenefit?_count=100&_include=ExplanationOfBenefit:*",
		"/Coverage?patient=member-01,member-12", "/Coverage?beneficiary=member-12", "/Coverage?subscriber=member-02",
		"/Coverage?_count=100&_include=Coverage:beneficiary", "/Observation?subject=Group/attribution-org-b",
		"/Observation?subject:Group=attribution-org-a", "/Observation?patient=member-01&_include=Observation:subject",
		"/Practitioner?_revinclude=ExplanationOfBenefit:care-team", "/Organization?_id=org-a&_revinclude=ExplanationOfBenefit:provider",
		"/Organization?_revinclude=Coverage:payor", "/Group?member=member-01", "/Group/attribution-org-a", "/Group/attribution-org-b",
		"/Consent?patient=member-12", "/Patient?_revinclude=*&_count=100", "/ExplanationOfBenefit?_revinclude:iterate=*&_count=100",
	}
	var probes []probe
	for _, path := range member {
		probes = append(probes, probe{p: member01, c: get(path)})
	}
	for _, path := range provider {
		probes = append(probes, probe{p: providerOrgA, c: get(path)}, probe{p: drSmith, c: get(path)})
	}
	t.Logf("%d requests", sweep(t, probes))
}

// TestDisguisedParametersAreReadAsHAPIReadsThem: encoded names and values, case, whitespace, escaped
// commas and odd separators must be decided the way HAPI will read them.
func TestDisguisedParametersAreReadAsHAPIReadsThem(t *testing.T) {
	evidence.Proves(t, "SEC-02")
	var probes []probe
	for _, q := range []string{
		"pat%69ent=member-02", "%70atient=member-02", "patient%3Amissing=true", "pat%2569ent=member-02", "Patient=member-02", "PATIENT=member-02",
		"patient%20=member-02", "+patient=member-02", "patient%00=member-02", "patient=member-02%00", "patient=member%2D02",
		"patient=MEMBER-02", "patient=%20member-02", "patient=member-02%20", "patient=member-01%2Cmember-02", "patient=member-01%5C,member-02",
		"patient=member-01\\,member-02", "patient=member-01;patient=member-02", "patient=member-01&&patient=member-02", "patient[]=member-02",
		"patient=member-01#&patient=member-02", "patient=Patient%2Fmember-02", "patient=..%2Fmember-02", "patient=member-01/../member-02",
		"patient=member-01%26patient%3Dmember-02", "subject=Patient/member-02/_history/1", "patient=member-02|", "patient=|member-02",
		"patient:Patient=member-01&patient:Patient=member-02", "_id=observation-member-02-bp&patient=member-01",
		"patient=member-01&_id=observation-member-02-bp", "%5Fid=observation-member-02-bp", "_ID=observation-member-02-bp",
		"_has%3AObservation%3Apatient%3Acode=4548-4", "patient=member-01&patient:missing=true",
	} {
		probes = append(probes, probe{p: member01, c: get("/Observation?" + q)})
	}
	for _, q := range []string{"pat%69ent=member-12", "patient=member%2D12", "patient=MEMBER-12", "patient=member-01%2Cmember-12",
		"patient=member-01\\,member-12", "Patient=member-12", "%5Fid=member-12", "patient=member-12%20"} {
		probes = append(probes, probe{p: providerOrgA, c: get("/ExplanationOfBenefit?" + q)})
	}
	for _, q := range []string{"%5Fid=member-12", "_ID=member-12", "_id=member-12%20", "_id=MEMBER-12", "_id=member-01%2Cmember-12"} {
		probes = append(probes, probe{p: providerOrgA, c: get("/Patient?" + q)})
	}
	t.Logf("%d requests", sweep(t, probes))
}

// TestSearchByPOSTFormKeepsToTheCaller: `POST [type]/_search` with form bodies, alone and mixed with a
// query string, with the content types a server may still read as a form.
func TestSearchByPOSTFormKeepsToTheCaller(t *testing.T) {
	evidence.Proves(t, "SEC-02")
	form := func(p *principal, typ, query, body, contentType string) probe {
		return probe{p: p, c: call{method: http.MethodPost, path: "/" + typ + "/_search" + query, body: body,
			header: map[string]string{"Content-Type": contentType}}}
	}
	const f = "application/x-www-form-urlencoded"
	var probes []probe
	for _, b := range []string{"patient=member-02", "patient=member-01&patient=member-02", "patient=member-01,member-02",
		"subject:Patient.name=Garcia", "patient:missing=true", "_id=observation-member-02-bp", "pat%69ent=member-02",
		"patient=member-01&_revinclude=*", "patient=member-01&_elements=id", "_count=100", "category:not=vital-signs"} {
		probes = append(probes, form(member01, "Observation", "", b, f), form(member01VitalsOnly, "Observation", "", b, f))
	}
	probes = append(probes,
		form(member01, "Observation", "?patient=member-01", "patient=member-02", f),
		form(member01, "Observation", "?patient=member-02", "patient=member-01", f),
		form(member01, "Observation", "?_id=observation-member-02-bp", "", f),
		form(member01, "Observation", "", "patient=member-02", f+"; charset=ISO-8859-1"),
		form(member01, "Observation", "", "patient=member-02", "APPLICATION/X-WWW-FORM-URLENCODED"),
		form(member01, "Observation", "", "patient=member-02", "text/plain"),
		form(member01, "Observation", "", `{"patient":"member-02"}`, "application/json"),
		form(member01, "Observation", "", "--x\r\nContent-Disposition: form-data; name=\"patient\"\r\n\r\nmember-02\r\n--x--\r\n", "multipart/form-data; boundary=x"),
		form(member01, "Patient", "", "_id=member-02", f),
		form(member01, "Patient", "", "identifier=FWM0002", f),
		form(member01PatientOnly, "Patient", "", "_revinclude=ExplanationOfBenefit:patient", f),
		form(providerOrgA, "ExplanationOfBenefit", "", "patient=member-12", f),
		form(providerOrgA, "ExplanationOfBenefit", "", "patient=member-01&_elements=patient,item", f),
		form(providerOrgA, "ExplanationOfBenefit", "?patient=member-01", "patient=member-02", f),
		form(providerOrgA, "Patient", "", "_id=member-01,member-12", f),
	)
	for _, b := range []string{"patient=member-02", "patient=member-01&patient=member-02", "category:not=vital-signs"} {
		pr := form(member01VitalsOnly, "Observation", "", b, f)
		pr.c.chunked = true
		probes = append(probes, pr)
	}
	t.Logf("%d requests", sweep(t, probes))
}

// TestEveryInteractionKeepsToTheCaller: interactions and operations on another patient's data, and the
// ones the APIs do not serve at all: refused with an OperationOutcome or answered without leaking. HEAD
// of another member's resource answers like HEAD of a missing one.
func TestEveryInteractionKeepsToTheCaller(t *testing.T) {
	evidence.Proves(t, "CMS-PA-02", "SEC-02")
	fhirJSON := map[string]string{"Content-Type": "application/fhir+json"}
	obs := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/member-02"}}`
	batch := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Observation?patient=member-02"}},{"request":{"method":"GET","url":"Patient/member-02"}}]}`
	var probes []probe
	add := func(p *principal, method, path string, header map[string]string, body string) {
		probes = append(probes, probe{p: p, c: call{method: method, path: path, header: header, body: body}})
	}
	for _, p := range []*principal{member01, providerOrgA} {
		other := "member-02"
		if p == providerOrgA {
			other = "member-12"
		}
		for _, path := range []string{
			"/Patient/" + other, "/Patient/" + other + "/_history/1", "/Patient/" + other + "/_history", "/Patient/_history",
			"/Observation/_history", "/_history", "?_type=Observation", "/?_type=Patient", "/Patient/" + other + "/Observation",
			"/Patient/" + other + "/$everything", "/Patient/$everything", "/Patient/member-01/$everything", "/Observation/$lastn?patient=" + other,
			"/Observation/$lastn", "/Observation/$stats?subject=" + other, "/Patient/" + other + "/$meta", "/$meta", "/Patient/$validate",
			"/$export", "/Patient/$export", "/Group/attribution-org-a/$export", "/$graphql?query={PatientList{id}}",
			"/Patient/" + other + "/$graphql?query={id}", "/Patient/" + other + "/$diff", "/Patient/$match", "/ValueSet/$expand",
			"/Binary/" + binaryID(), "/Patient/" + other + "/$expunge", "/$reindex", "/Observation/$docref?patient=" + other,
			"/Patient/" + other + "/$summary", "/Patient/" + other + "/$purge-everything", "/Subscription", "/AuditEvent",
			"/Patient/" + other + "/_history/1/$meta", "/Patient/" + other + "/*", "/metadata?_elements=rest",
			"/Observation/_search?patient=" + other, "/observation?patient=" + other, "/Observation/?patient=" + other,
			"//Patient/" + other, "/Patient/" + other + "/", "/Patient/" + other + "?", "/Patient/" + other + "%3F",
			"/Patient/" + other + "%2F", "/Patient/" + other + "/_history/", "/ExplanationOfBenefit?_include=ExplanationOfBenefit:patient:Patient",
		} {
			add(p, http.MethodGet, path, nil, "")
		}
		add(p, "get", "/Patient/"+other, nil, "")
		add(p, "Get", "/Observation?patient="+other, nil, "")
		for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete, "TRACE", "PROPFIND"} {
			add(p, method, "/Patient/"+other, fhirJSON, `{"resourceType":"Patient","id":"`+other+`"}`)
		}
		add(p, http.MethodPost, "/Observation", fhirJSON, obs)
		add(p, http.MethodPost, "/Observation", map[string]string{"Content-Type": "application/fhir+json", "If-None-Exist": "patient=" + other}, obs)
		add(p, http.MethodPut, "/Patient?identifier=FWM0002", fhirJSON, `{"resourceType":"Patient"}`)
		add(p, http.MethodDelete, "/Observation?patient="+other, nil, "")
		add(p, http.MethodPatch, "/Observation/observation-member-01-bp", map[string]string{"Content-Type": "application/json-patch+json"},
			`[{"op":"replace","path":"/subject/reference","value":"Patient/`+other+`"}]`)
		add(p, http.MethodPost, "", fhirJSON, batch)
		add(p, http.MethodPost, "/", fhirJSON, batch)
		add(p, http.MethodPost, "/Patient/$member-match", fhirJSON, `{"resourceType":"Parameters"}`)
		add(p, http.MethodPost, "/$graphql", map[string]string{"Content-Type": "application/json"}, `{"query":"{PatientList{id name{family}}}"}`)
		add(p, http.MethodOptions, "/Patient/"+other, nil, "")
	}
	sweep(t, probes)

	// HEAD has no body to compare: the status and the validator headers must be those of a missing resource.
	for _, c := range []struct {
		p              *principal
		other, missing string
	}{
		{member01, "/Observation/observation-member-02-bp", "/Observation/observation-no-such-0000"},
		{member01, "/Observation/observation-member-02-bp/_history/1", "/Observation/observation-no-such-0000/_history/1"},
		{providerOrgA, "/Patient/member-12", "/Patient/no-such-member-0000"},
	} {
		n := exchange(t, c.p, call{method: http.MethodHead, path: c.other})
		m := exchange(t, c.p, call{method: http.MethodHead, path: c.missing})
		for i := range n {
			if n[i].status != m[i].status || n[i].header.Get("ETag") != "" || n[i].header.Get("Last-Modified") != "" {
				t.Errorf("%s HEAD %s: %d (ETag %q, Last-Modified %q); missing: %d", n[i].mode, c.other, n[i].status,
					n[i].header.Get("ETag"), n[i].header.Get("Last-Modified"), m[i].status)
			}
		}
	}
}

// binaryID is a Binary in HAPI (bulk export output holds whole NDJSON files of many members), or a made-up id.
func binaryID() string {
	var b struct {
		Entry []struct{ Resource struct{ ID string } } `json:"entry"`
	}
	if err := getJSON(stackenv.HAPIURL+"/Binary?_elements=id&_count=1", &b); err == nil && len(b.Entry) > 0 {
		return b.Entry[0].Resource.ID
	}
	return "no-such-binary"
}

// TestHeadersThatChangeWhatHAPIAnswersKeepToTheCaller: each header that changes HAPI's answer (or that a
// proxy might trust) on the caller's own read and search and on another patient's resource.
func TestHeadersThatChangeWhatHAPIAnswersKeepToTheCaller(t *testing.T) {
	evidence.Proves(t, "SEC-02")
	headers := [][]string{
		{"Prefer", "handling=lenient"}, {"Prefer", "handling=strict"}, {"Prefer", "return=representation"}, {"Prefer", "return=minimal"},
		{"Prefer", "return=OperationOutcome"}, {"Prefer", "respond-async"}, {"Accept-Encoding", "gzip"}, {"Accept-Encoding", "deflate"},
		{"Accept-Encoding", "br"}, {"Accept-Encoding", "gzip;q=1, identity;q=0"}, {"X-HTTP-Method-Override", "DELETE"},
		{"X-HTTP-Method-Override", "PUT"}, {"X-HTTP-Method-Override", "GET"}, {"X-Method-Override", "DELETE"}, {"X-HTTP-Method", "DELETE"},
		{"If-None-Exist", "patient=member-02"}, {"If-Match", `W/"1"`}, {"If-None-Match", "*"}, {"If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT"},
		{"X-Forwarded-For", "10.0.0.1"}, {"X-Forwarded-Prefix", "/"}, {"X-Forwarded-Proto", "gopher"}, {"X-Forwarded-Port", "1"},
		{"X-Fhirwall-Patient", "member-02"}, {"X-Fhirwall-Client", "provider-org-a"}, {"X-Fhirwall-Decision-Id", "forged"},
		{"X-Fhirwall-Scopes", "patient/*.rs"}, {"X-Fhirwall-Allow", "true"}, {"X-Envoy-Original-Path", patientAccess + "/Patient/member-02"},
		{"X-Original-URL", patientAccess + "/Patient/member-02"}, {"X-Rewrite-URL", patientAccess + "/Patient/member-02"},
		{"X-Envoy-Internal", "true"}, {"X-Request-Id", "forged-request"}, {"Accept", "text/html"}, {"Accept", "*/*"}, {"Accept", "application/json"},
		{"Accept", "application/fhir+json; fhirVersion=3.0"}, {"Accept", "application/fhir+ndjson"}, {"Accept-Charset", "ISO-8859-1"},
		{"Cache-Control", "no-cache"}, {"Cache-Control", "no-store"}, {"Range", "bytes=0-40"}, {"Content-Type", "application/x-www-form-urlencoded"},
		{"Accept-Language", "xx"}, {"X-Upstream", "http://127.0.0.1:8090/fhir"}, {"Cookie", "JSESSIONID=x"}, {"Authorization-Patient", "member-02"},
	}
	var probes []probe
	for _, h := range headers {
		// own read and search, another member's read, and a search whose answer fhirwall must filter
		for _, path := range []string{"/Patient/member-01", "/Observation?_count=2", "/Observation/observation-member-02-bp", "/Patient/member-02",
			"/Practitioner?_id=pract-02&_revinclude=Observation:performer"} {
			probes = append(probes, probe{p: member01, c: get(path, h...), expect: notPartial})
		}
		for _, path := range []string{"/Patient?_count=3", "/Patient/member-12", "/ExplanationOfBenefit?patient=member-01"} {
			probes = append(probes, probe{p: providerOrgA, c: get(path, h...), expect: notPartial})
		}
	}
	t.Logf("%d requests", sweep(t, probes))
}

// notPartial: a partial body (206) could hide what the gateway never saw whole.
func notPartial(a answer) string {
	if a.status == http.StatusPartialContent {
		return "206 Partial Content: a byte range of an answer"
	}
	return ""
}

// TestClientHeadersNeverRedirectLinks: Host and X-Forwarded-* sent by the client never make the answer's
// links (next, self, fullUrl, Location) point elsewhere, where a client would send its token next.
func TestClientHeadersNeverRedirectLinks(t *testing.T) {
	evidence.Proves(t, "SEC-02")
	var probes []probe
	for _, h := range [][]string{{"Host", "evil.example"}, {"X-Forwarded-Host", "evil.example"}, {"Forwarded", "host=evil.example;proto=https"},
		{"X-Forwarded-Host", "evil.example:443"}, {"X-Forwarded-Prefix", "//evil.example"}, {"X-Forwarded-Server", "evil.example"},
		{"X-Host", "evil.example"}, {"X-Original-Host", "evil.example"}} {
		for _, path := range []string{"/Observation?_count=1", "/Patient/member-01", "/ExplanationOfBenefit?_count=1"} {
			probes = append(probes, probe{p: member01, c: get(path, h...), expect: notElsewhere})
		}
		probes = append(probes, probe{p: providerOrgA, c: get("/Patient?_count=1", h...), expect: notElsewhere})
	}
	t.Logf("%d requests", sweep(t, probes))
}

func notElsewhere(a answer) string {
	var hdr bytes.Buffer
	_ = a.header.Write(&hdr)
	if bytes.Contains(a.body, []byte("evil.example")) || bytes.Contains(hdr.Bytes(), []byte("evil.example")) {
		return fmt.Sprintf("the answer points at the client's host: %.300s", a.body)
	}
	return ""
}

// TestProvidersCanPageThroughTheirSearches: a provider's next links work and together return what one
// large page returns; another provider organisation following them gets the 404 of a page never issued.
func TestProvidersCanPageThroughTheirSearches(t *testing.T) {
	evidence.Proves(t, "USCORE-02", "CMS-PROV-01")
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			// Provider Access searches name their members (a search naming nobody is refused, pointing at the
			// group export).
			const search = "/ExplanationOfBenefit?patient=member-01,member-04"
			all := sendAs(t, providerOrgA, m, get(search+"&_count=200"))
			want := ids(entries(t, all))
			first := sendAs(t, providerOrgA, m, get(search+"&_count=5"))
			next := link(first, "next")
			if next == "" {
				t.Fatalf("no next link: %.300s", first.body)
			}
			got := pageThrough(t, providerOrgA, m, search+"&_count=5")
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("pages hold %v; one page %v", got, want)
			}
			missing := sendAs(t, providerOrgB, m, get("?_getpages=00000000-0000-0000-0000-000000000000&_getpagesoffset=5&_count=5"))
			if a := sendAs(t, providerOrgB, m, get(relative(t, next, providerAccess))); a.status != http.StatusNotFound || !bytes.Equal(a.body, missing.body) {
				t.Errorf("provider-org-b follows org-a's next link: %d %.300s", a.status, a.body)
			}
		})
	}
}

// TestPagingLinksStayWithTheirClientAndAPI: a member's link on the Provider Access base, a tampered
// offset or page size, and another member's replay.
func TestPagingLinksStayWithTheirClientAndAPI(t *testing.T) {
	evidence.Proves(t, "USCORE-02")
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			first := sendAs(t, member01, m, get("/ExplanationOfBenefit?_count=1"))
			next := link(first, "next")
			if next == "" {
				t.Fatalf("no next link: %.300s", first.body)
			}
			path := relative(t, next, patientAccess)
			for _, c := range []ask{
				{providerOrgA, path}, {drSmith, path}, {member02, path},
				{member01, strings.Replace(path, "_getpagesoffset=1", "_getpagesoffset=0", 1) + "&_count=1000"},
				{member01, path + "&_bundletype=history"}, {member01, path + "&patient=member-02"}, {member01, path + "&_elements=id"},
			} {
				sendAs(t, c.p, m, get(c.path))
			}
		})
	}
}

// TestReencodedAnswersKeepResourceTypeFirst: answers fhirwall rewrote (entries removed, links rewritten)
// still start with resourceType, as FHIR JSON writers do and some clients require.
func TestReencodedAnswersKeepResourceTypeFirst(t *testing.T) {
	for _, c := range []ask{
		{member01, "/Observation?_count=1"}, {member01, "/Patient?_revinclude=Observation:patient"},
		{providerOrgA, "/ExplanationOfBenefit?patient=member-01"}, {providerOrgA, "/Patient?_count=3"},
	} {
		for _, a := range exchange(t, c.p, get(c.path)) {
			if a.status == http.StatusOK && !startsWithResourceType(a.body) {
				t.Errorf("%s %s: %.120s", a.mode, c.path, a.body)
			}
		}
	}
}

// queryValue escapes a search value for the query string but keeps the characters FHIR search gives a
// meaning (the OR comma, the system|code bar, the colon and slash of URLs) as a client writes them.
func queryValue(v string) string {
	return strings.NewReplacer("%2C", ",", "%7C", "|", "%3A", ":", "%2F", "/").Replace(url.QueryEscape(v))
}

// TestClientsOnAnotherAPISeeNobody: a token of a client that is not registered for the API (or holds no
// scope the API serves) gets no patient's data, whatever it asks.
func TestClientsOnAnotherAPISeeNobody(t *testing.T) {
	evidence.Proves(t, "BACKEND-03")
	var probes []probe
	for _, p := range []*principal{member01OnProviderAccess, providerOrgAOnPatientAccess, drSmithOnPatientAccess} {
		for _, path := range []string{"/Patient/member-01", "/Patient/member-04", "/Patient?_count=5", "/ExplanationOfBenefit?patient=member-04",
			"/Observation?patient=member-01", "/Coverage?_count=5", "/Practitioner?_id=pract-01&_revinclude=Observation:performer",
			"/Organization?_id=org-a&_revinclude=ExplanationOfBenefit:provider", "/Observation/observation-member-01-bp"} {
			probes = append(probes, probe{p: p, c: get(path), expect: refused})
		}
	}
	sweep(t, probes)
}

// refused: the answer is a 4xx (check has seen it is an OperationOutcome).
func refused(a answer) string {
	if a.status < 400 || a.status > 499 {
		return fmt.Sprintf("%d, want a 4xx refusal: %.200s", a.status, a.body)
	}
	return ""
}
