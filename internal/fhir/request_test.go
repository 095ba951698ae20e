package fhir

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// req is one request as a test sends it.
type req struct {
	method, path, query string
	header              http.Header
	body                string
}

func (q req) classify() (Request, error) {
	return Classify(q.method, q.path, q.query, q.header.Values, []byte(q.body))
}

func get(path, query string) req { return req{method: "GET", path: path, query: query} }

func withBody(method, path, contentType, body string) req {
	return req{method: method, path: path, header: http.Header{"Content-Type": {contentType}}, body: body}
}

const obsMember01 = `{"resourceType":"Observation","id":"obs-1","status":"final","code":{"text":"x"},
	"subject":{"reference":"Patient/member-01"},"performer":[{"reference":"https://other.example/fhir/Patient/p9"}]}`

func TestClassifyEveryInteraction(t *testing.T) {
	cases := []struct {
		name string
		req  req
		want Request // Interaction, ResourceType, ID, VersionID, Conditional, Operation, Compartment compared
	}{
		{"capabilities", get("/metadata", ""), Request{Interaction: Capabilities}},
		{"smart configuration", get("/.well-known/smart-configuration", ""), Request{Interaction: SmartConfiguration}},
		{"read", get("/Patient/member-01", ""), Request{Interaction: Read, ResourceType: "Patient", ID: "member-01"}},
		{"read with _summary", get("/Patient/member-01", "_summary=true"), Request{Interaction: Read, ResourceType: "Patient", ID: "member-01"}},
		{"vread", get("/Observation/obs-1/_history/2", ""), Request{Interaction: VRead, ResourceType: "Observation", ID: "obs-1", VersionID: "2"}},
		{"update", withBody("PUT", "/Observation/obs-1", "application/fhir+json", obsMember01), Request{Interaction: Update, ResourceType: "Observation", ID: "obs-1"}},
		{"conditional update", req{method: "PUT", path: "/Observation", query: "identifier=x|1", header: http.Header{"Content-Type": {"application/fhir+json"}}, body: obsMember01},
			Request{Interaction: Update, ResourceType: "Observation", Conditional: true}},
		{"patch", withBody("PATCH", "/Observation/obs-1", "application/json-patch+json", `[{"op":"replace","path":"/status","value":"amended"}]`),
			Request{Interaction: Patch, ResourceType: "Observation", ID: "obs-1"}},
		{"conditional patch", req{method: "PATCH", path: "/Observation", query: "identifier=x|1", header: http.Header{"Content-Type": {"application/json-patch+json"}}, body: `[{"op":"remove","path":"/note"}]`},
			Request{Interaction: Patch, ResourceType: "Observation", Conditional: true}},
		{"delete", req{method: "DELETE", path: "/Observation/obs-1"}, Request{Interaction: Delete, ResourceType: "Observation", ID: "obs-1"}},
		{"conditional delete", req{method: "DELETE", path: "/Observation", query: "identifier=x|1"}, Request{Interaction: Delete, ResourceType: "Observation", Conditional: true}},
		{"history instance", get("/Patient/member-01/_history", "_count=10"), Request{Interaction: HistoryInstance, ResourceType: "Patient", ID: "member-01"}},
		{"history type", get("/Patient/_history", ""), Request{Interaction: HistoryType, ResourceType: "Patient"}},
		{"history system", get("/_history", "_since=2020-01-01"), Request{Interaction: HistorySystem}},
		{"create", withBody("POST", "/Observation", "application/fhir+json; charset=utf-8", obsMember01), Request{Interaction: Create, ResourceType: "Observation"}},
		{"conditional create", req{method: "POST", path: "/Observation", header: http.Header{"Content-Type": {"application/json"}, "If-None-Exist": {"identifier=x|1"}}, body: obsMember01},
			Request{Interaction: Create, ResourceType: "Observation", Conditional: true}},
		{"search type", get("/ExplanationOfBenefit", "patient=member-01"), Request{Interaction: SearchType, ResourceType: "ExplanationOfBenefit"}},
		{"search type by POST", withBody("POST", "/Observation/_search", "application/x-www-form-urlencoded", "patient=member-01"), Request{Interaction: SearchType, ResourceType: "Observation"}},
		{"search system", get("", "_type=Observation"), Request{Interaction: SearchSystem}},
		{"search system by POST", withBody("POST", "/_search", "application/x-www-form-urlencoded", "_type=Observation"), Request{Interaction: SearchSystem}},
		{"search compartment", get("/Patient/member-01/Observation", "code=x"),
			Request{Interaction: SearchCompartment, ResourceType: "Observation", Compartment: &Compartment{"Patient", "member-01"}}},
		{"search compartment, every type", get("/Patient/member-01/*", ""),
			Request{Interaction: SearchCompartment, ResourceType: "*", Compartment: &Compartment{"Patient", "member-01"}}},
		{"operation, system", get("/$export", "_type=Patient"), Request{Interaction: Operation, Operation: &OperationName{"export", LevelSystem}}},
		{"operation, type", withBody("POST", "/Patient/$member-match", "application/fhir+json", `{"resourceType":"Parameters","parameter":[]}`),
			Request{Interaction: Operation, ResourceType: "Patient", Operation: &OperationName{"member-match", LevelType}}},
		{"operation, instance", get("/Patient/member-01/$everything", ""),
			Request{Interaction: Operation, ResourceType: "Patient", ID: "member-01", Operation: &OperationName{"everything", LevelInstance}}},
		{"operation, POST without body", req{method: "POST", path: "/Group/g1/$export"},
			Request{Interaction: Operation, ResourceType: "Group", ID: "g1", Operation: &OperationName{"export", LevelInstance}}},
		{"paging", get("", "_getpages=abc&_getpagesoffset=10&_count=10&_bundletype=searchset"), Request{Interaction: Paging}},
		{"batch", withBody("POST", "", "application/fhir+json", `{"resourceType":"Bundle","type":"batch","entry":[]}`), Request{Interaction: Batch}},
		{"transaction", withBody("POST", "/", "application/fhir+json", `{"resourceType":"Bundle","type":"transaction","entry":[]}`), Request{Interaction: Transaction}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := c.req.classify()
			if err != nil {
				t.Fatal(err)
			}
			got := Request{Interaction: r.Interaction, ResourceType: r.ResourceType, ID: r.ID, VersionID: r.VersionID,
				Conditional: r.Conditional, Operation: r.Operation, Compartment: r.Compartment}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
			if r.Params == nil || r.Query == nil {
				t.Error("nil params or query")
			}
		})
	}
}

// TestClassifyRefusesWhatItDoesNotUnderstand covers the HTTP shapes of FHIR-NOTES "Known ways through".
func TestClassifyRefusesWhatItDoesNotUnderstand(t *testing.T) {
	override := get("/Patient/member-01", "")
	override.header = http.Header{"X-Http-Method-Override": {"DELETE"}}
	cases := map[string]req{
		"dot segment":                      get("/Patient/a/../b", ""),
		"single dot segment":               get("/Patient/./a", ""),
		"encoded slash":                    get("/Patient/a%2Fb", ""),
		"encoded dot segment":              get("/Patient/%2e%2e/x", ""),
		"empty segment":                    get("/Patient//a", ""),
		"trailing slash":                   get("/Patient/", ""),
		"matrix parameter":                 get("/Patient/a;x=y", ""),
		"backslash":                        get(`/Patient/a\b`, ""),
		"not below the base":               get("Patient/a", ""),
		"not a type name":                  get("/patient/a", ""),
		"not an R4 type":                   get("/Foo/1", ""),
		"id too long":                      get("/Patient/"+strings.Repeat("a", 65), ""),
		"malformed query":                  get("/Patient", "name=%zz"),
		"semicolon in query":               get("/Patient", "name=a;b"),
		"HEAD":                             {method: "HEAD", path: "/Patient/a"},
		"OPTIONS":                          {method: "OPTIONS", path: "/metadata"},
		"method override":                  override,
		"DELETE on a type, no criteria":    {method: "DELETE", path: "/Patient"},
		"DELETE with only _format":         {method: "DELETE", path: "/Patient", query: "_format=json"},
		"POST to an id":                    withBody("POST", "/Patient/a", "application/fhir+json", `{"resourceType":"Patient"}`),
		"PUT to the base":                  withBody("PUT", "", "application/fhir+json", `{"resourceType":"Patient"}`),
		"GET _search":                      get("/Patient/_search", ""),
		"POST to metadata":                 {method: "POST", path: "/metadata"},
		"DELETE a history":                 {method: "DELETE", path: "/Patient/a/_history"},
		"version-level operation":          get("/Patient/a/_history/1/$meta", ""),
		"compartment of a non-compartment": get("/Observation/o1/Patient", ""),
		"compartment of an unknown type":   get("/Patient/p1/Foo", ""),
		"body on a GET":                    {method: "GET", path: "/Patient", header: http.Header{"Content-Type": {"application/fhir+json"}}, body: "{}"},
		"create without body":              {method: "POST", path: "/Patient"},
		"update id mismatch":               withBody("PUT", "/Observation/obs-2", "application/fhir+json", obsMember01),
		"update without id":                withBody("PUT", "/Patient/p1", "application/fhir+json", `{"resourceType":"Patient"}`),
		"create of another type":           withBody("POST", "/Patient", "application/fhir+json", obsMember01),
		"duplicate JSON member":            withBody("POST", "/Patient", "application/fhir+json", `{"resourceType":"Patient","resourceType":"Observation"}`),
		"trailing JSON":                    withBody("POST", "/Patient", "application/fhir+json", `{"resourceType":"Patient"}{}`),
		"unknown body type":                withBody("POST", "/Foo", "application/fhir+json", `{"resourceType":"Foo"}`),
		"JSON array as resource":           withBody("POST", "/Patient", "application/fhir+json", `[]`),
		"If-None-Exist on update":          {method: "PUT", path: "/Patient/p1", header: http.Header{"Content-Type": {"application/fhir+json"}, "If-None-Exist": {"x=1"}}, body: `{"resourceType":"Patient","id":"p1"}`},
		"unknown Prefer":                   {method: "GET", path: "/Patient", header: http.Header{"Prefer": {"return=everything"}}},
		"two Content-Types":                {method: "POST", path: "/Patient", header: http.Header{"Content-Type": {"application/fhir+json", "application/json"}}, body: `{"resourceType":"Patient"}`},
		"a Patient posted to the base":     withBody("POST", "", "application/fhir+json", `{"resourceType":"Patient"}`),
		"a document posted to the base":    withBody("POST", "", "application/fhir+json", `{"resourceType":"Bundle","type":"document"}`),
		"bad operation name":               get("/Patient/$every.thing", ""),
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := c.classify(); !errors.Is(err, ErrUnsupported) {
				t.Errorf("want ErrUnsupported, got %v", err)
			}
		})
	}
}

func TestClassifyRefusesMediaTypesItCannotRead(t *testing.T) {
	cases := map[string]req{
		"XML resource":           withBody("POST", "/Patient", "application/fhir+xml", `<Patient xmlns="http://hl7.org/fhir"/>`),
		"plain XML":              withBody("POST", "/Patient", "application/xml", `<Patient/>`),
		"no Content-Type":        {method: "POST", path: "/Patient", body: `{"resourceType":"Patient"}`},
		"other charset":          withBody("POST", "/Patient", "application/fhir+json; charset=latin1", `{"resourceType":"Patient"}`),
		"form body on a create":  withBody("POST", "/Patient", "application/x-www-form-urlencoded", "a=b"),
		"JSON body on a _search": withBody("POST", "/Patient/_search", "application/json", `{"patient":"x"}`),
		"XML patch":              withBody("PATCH", "/Patient/p1", "application/xml-patch+xml", "<diff/>"),
		"multipart":              withBody("POST", "/Patient", "multipart/form-data; boundary=x", "--x--"),
		"XML bundle":             withBody("POST", "", "application/fhir+xml", "<Bundle/>"),
		"malformed Content-Type": withBody("POST", "/Patient", "application/", `{}`),
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := c.classify(); !errors.Is(err, ErrUnsupportedMediaType) {
				t.Errorf("want ErrUnsupportedMediaType, got %v", err)
			}
		})
	}
}

func TestClassifyRefusesBodiesOverTheLimitWhole(t *testing.T) {
	big := `{"resourceType":"Patient","id":"p1","text":"` + strings.Repeat("a", MaxBodyBytes) + `"}`
	if _, err := Classify("PUT", "/Patient/p1", "", http.Header{"Content-Type": {"application/fhir+json"}}.Values, []byte(big)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
	entries := strings.Repeat(`{"request":{"method":"GET","url":"Patient/p1"}},`, MaxEntries+1)
	b := `{"resourceType":"Bundle","type":"batch","entry":[` + strings.TrimSuffix(entries, ",") + `]}`
	if _, err := Classify("POST", "", "", http.Header{"Content-Type": {"application/fhir+json"}}.Values, []byte(b)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("%d entries: want ErrTooLarge, got %v", MaxEntries+1, err)
	}
	q := strings.Repeat("a=1&", maxParams+1)
	if _, err := Classify("GET", "/Patient", q, nil, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("%d params: want ErrTooLarge, got %v", maxParams+1, err)
	}
}

func TestParamsKeepEveryOccurrenceAndOrList(t *testing.T) {
	r, err := Classify("GET", "/Observation", `subject=Patient/A,Group/G&subject=Patient/B&code=a\,b,c&date=ge2020-01-01&patient=`, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"Patient/A", "Group/G"}, {"Patient/B"}, {"a,b", "c"}, {"ge2020-01-01"}, {""}}
	if len(r.Params) != len(want) {
		t.Fatalf("got %d params", len(r.Params))
	}
	for i, w := range want {
		if !reflect.DeepEqual(r.Params[i].Values, w) {
			t.Errorf("param %d: got %q, want %q", i, r.Params[i].Values, w)
		}
	}
}

func TestParamNamesAreParsedIntoModifierTypeChainAndReverseChain(t *testing.T) {
	cases := map[string]Param{
		"patient":              {Name: "patient", Chain: []string{}},
		"patient:missing":      {Name: "patient", Modifier: "missing", Chain: []string{}},
		"subject:Patient":      {Name: "subject", TargetType: "Patient", Chain: []string{}},
		"subject.name":         {Name: "subject", Chain: []string{"name"}},
		"subject:Patient.name": {Name: "subject", TargetType: "Patient", Chain: []string{"name"}},
		"subject:Patient.organization:Organization.name": {Name: "subject", TargetType: "Patient", Chain: []string{"organization:Organization", "name"}},
		"subject:Patient.identifier":                     {Name: "subject", TargetType: "Patient", Chain: []string{"identifier"}},
		"_include:iterate":                               {Name: "_include", Modifier: "iterate", Chain: []string{}},
		"_revinclude":                                    {Name: "_revinclude", Chain: []string{}},
		"_has:Observation:patient:code":                  {Name: "_has", Chain: []string{}, Has: &Has{"Observation", "patient", "code"}},
		"_has:Observation:patient:_has:AuditEvent:entity:agent": {Name: "_has", Chain: []string{},
			Has: &Has{"Observation", "patient", "_has:AuditEvent:entity:agent"}},
		"_has:Observation:subject:performer.name": {Name: "_has", Chain: []string{}, Has: &Has{"Observation", "subject", "performer.name"}},
	}
	for key, want := range cases {
		t.Run(key, func(t *testing.T) {
			p, err := parseKey(key, 0)
			if err != nil {
				t.Fatal(err)
			}
			want.Key = key
			if !reflect.DeepEqual(p, want) {
				t.Errorf("got %+v, want %+v", p, want)
			}
		})
	}
}

func TestMalformedParamNamesAreRefused(t *testing.T) {
	for _, key := range []string{
		"", " patient", "patient name", "patient:", ":missing", "subject..name", "subject.", ".name", "subject:Foo",
		"subject:Patient:name", "_has:Observation:patient", "_has:Foo:patient:code", "_has:Observation::code",
		"_has:Observation:patient:", "patient[0]", "patient$", "1patient", "patient:Missing",
		"_has:A:b:_has:A:b:_has:A:b:_has:A:b:_has:A:b:c", strings.Repeat("a", maxKeyLen+1),
	} {
		if _, err := parseKey(key, 0); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%q: want ErrUnsupported, got %v", key, err)
		}
	}
	if _, err := ParseForm(`code=a\`); !errors.Is(err, ErrUnsupported) {
		t.Errorf("dangling escape: got %v", err)
	}
}

func TestSearchByPOSTKeepsQueryAndFormParameters(t *testing.T) {
	r, err := req{method: "POST", path: "/Observation/_search", query: "patient=member-01",
		header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, body: "patient=member-02&code=x"}.classify()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range r.Params {
		got = append(got, p.Key+"="+strings.Join(p.Values, ","))
	}
	if want := []string{"patient=member-01", "patient=member-02", "code=x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if q := r.Query.Encode(); q != "patient=member-01" {
		t.Errorf("the URL query is the query only, got %q", q)
	}
}

func TestConditionalCreateReadsIfNoneExist(t *testing.T) {
	r, err := req{method: "POST", path: "/Patient", header: http.Header{"Content-Type": {"application/fhir+json"},
		"If-None-Exist": {"identifier=http://payer|m1"}}, body: `{"resourceType":"Patient"}`}.classify()
	if err != nil {
		t.Fatal(err)
	}
	if !r.Conditional || len(r.Params) != 1 || r.Params[0].Values[0] != "http://payer|m1" {
		t.Errorf("got %+v", r)
	}
}

func TestBodiesExposeEveryPatientReference(t *testing.T) {
	body := `{"resourceType":"ExplanationOfBenefit","id":"e1","patient":{"reference":"Patient/member-01/_history/3"},
		"contained":[{"resourceType":"Coverage","id":"c","beneficiary":{"reference":"Patient/member-02"}}],
		"payee":{"party":{"reference":"https://other.example/fhir/Patient/member-01"}},
		"provider":{"reference":"Practitioner/pr1"},"referral":{"reference":"Patient?identifier=x|1"},
		"note":[{"text":"Patient/member-09"}]}`
	r, err := withBody("POST", "/ExplanationOfBenefit", "application/fhir+json", body).classify()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Patient/member-01", "Patient/member-02", "https://other.example/fhir/Patient/member-01", "Patient?identifier=x|1"}
	if r.Body == nil || r.Body.ResourceType != "ExplanationOfBenefit" || r.Body.ID != "e1" || !reflect.DeepEqual(r.Body.PatientRefs, want) {
		t.Errorf("got %+v", r.Body)
	}
}

func TestPatchesExposePathsAndPatientReferences(t *testing.T) {
	cases := []struct {
		name, contentType, body string
		want                    PatchBody
	}{
		{"JSON Patch moving subject", "application/json-patch+json",
			`[{"op":"replace","path":"/subject/reference","value":"Patient/member-02"},{"op":"move","from":"/performer/0","path":"/subject"}]`,
			PatchBody{JSONPatch, []string{"/subject/reference", "/subject", "/performer/0"}, []string{"Patient/member-02"}}},
		{"JSON Patch adding a reference object", "application/json-patch+json",
			`[{"op":"add","path":"/performer/-","value":{"reference":"Patient/member-03"}}]`,
			PatchBody{JSONPatch, []string{"/performer/-"}, []string{"Patient/member-03"}}},
		{"FHIRPath Patch", "application/fhir+json", `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[
			{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Observation.subject"},
			{"name":"value","valueReference":{"reference":"Patient/member-02"}}]},
			{"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"Observation"},
			{"name":"name","valueString":"performer"},{"name":"value","valueReference":{"reference":"Practitioner/x"}}]}]}`,
			PatchBody{FHIRPathPatch, []string{"Observation.subject", "Observation", "Observation.performer"}, []string{"Patient/member-02"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := withBody("PATCH", "/Observation/obs-1", c.contentType, c.body).classify()
			if err != nil {
				t.Fatal(err)
			}
			if r.Patch == nil || !reflect.DeepEqual(*r.Patch, c.want) {
				t.Errorf("got %+v, want %+v", r.Patch, c.want)
			}
		})
	}
	for _, bad := range []string{`[]`, `[{"op":"steal","path":"/x"}]`, `[{"op":"move","path":"/subject"}]`, `[{"op":"add","path":"subject"}]`, `{}`} {
		if _, err := withBody("PATCH", "/Observation/obs-1", "application/json-patch+json", bad).classify(); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: want ErrUnsupported, got %v", bad, err)
		}
	}
}

func TestBatchEntriesAreEachTheirOwnRequest(t *testing.T) {
	patch := base64.StdEncoding.EncodeToString([]byte(`[{"op":"replace","path":"/subject/reference","value":"Patient/member-02"}]`))
	body := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"request":{"method":"GET","url":"Observation?subject=Patient/member-02&_include=Observation:patient"}},
		{"resource":` + obsMember01 + `,"request":{"method":"POST","url":"Observation","ifNoneExist":"identifier=x|1"}},
		{"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + patch + `"},"request":{"method":"PATCH","url":"Observation/obs-1"}},
		{"request":{"method":"DELETE","url":"Observation/obs-9"}},
		{"request":{"method":"GET","url":"Patient/member-01/$everything"}}]}`
	r, err := withBody("POST", "", "application/fhir+json", body).classify()
	if err != nil {
		t.Fatal(err)
	}
	want := []Interaction{SearchType, Create, Patch, Delete, Operation}
	if len(r.Entries) != len(want) {
		t.Fatalf("got %d entries", len(r.Entries))
	}
	for i, w := range want {
		if r.Entries[i].Interaction != w {
			t.Errorf("entry %d: got %s, want %s", i, r.Entries[i].Interaction, w)
		}
	}
	if e := r.Entries[0]; e.Params[0].Values[0] != "Patient/member-02" {
		t.Errorf("entry query not parsed: %+v", e.Params)
	}
	if e := r.Entries[1]; !e.Conditional || e.Body == nil || e.Body.ResourceType != "Observation" {
		t.Errorf("entry create: %+v", e)
	}
	if e := r.Entries[2]; e.Patch == nil || !reflect.DeepEqual(e.Patch.PatientRefs, []string{"Patient/member-02"}) {
		t.Errorf("entry patch: %+v", e.Patch)
	}
}

func TestBatchEntriesOutsideTheBaseOrNestedAreRefused(t *testing.T) {
	entry := func(method, url, resource string) string {
		e := `{"request":{"method":"` + method + `","url":"` + url + `"}`
		if resource != "" {
			e += `,"resource":` + resource
		}
		return `{"resourceType":"Bundle","type":"batch","entry":[` + e + `}]}`
	}
	nested := `{"resourceType":"Bundle","type":"transaction","entry":[]}`
	cases := map[string]string{
		"absolute URL":       entry("GET", "https://other.example/fhir/Patient/p1", ""),
		"urn":                entry("GET", "urn:uuid:1234", ""),
		"absolute path":      entry("GET", "/Patient/p1", ""),
		"network path":       entry("GET", "//other.example/Patient/p1", ""),
		"dot segments":       entry("GET", "Patient/p1/../p2", ""),
		"encoded slash":      entry("GET", "Patient/p1%2Fp2", ""),
		"nested bundle":      entry("POST", "", nested),
		"HEAD":               entry("HEAD", "Patient/p1", ""),
		"unknown method":     entry("PURGE", "Patient/p1", ""),
		"no request":         `{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient"}}]}`,
		"update id mismatch": entry("PUT", "Observation/obs-2", obsMember01),
		"resource on a GET":  entry("GET", "Patient/p1", `{"resourceType":"Patient"}`),
		"unknown entry type": entry("GET", "Foo/1", ""),
		"fragment":           entry("GET", "Patient?name=x#y", ""),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := withBody("POST", "", "application/fhir+json", body).classify(); !errors.Is(err, ErrUnsupported) {
				t.Errorf("want ErrUnsupported, got %v", err)
			}
		})
	}
}

func TestPolicyInputFollowsTheContract(t *testing.T) {
	r, err := Classify("GET", "/Observation", "subject:Patient.name=a,b&_has:Observation:patient:code=x", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(r.PolicyInput())
	want := `{"conditional":false,"id":"","interaction":"search-type","method":"GET",` +
		`"params":[{"chain":["name"],"key":"subject:Patient.name","modifier":"","name":"subject","target_type":"Patient","values":["a","b"]},` +
		`{"chain":[],"has":{"param":"code","ref_param":"patient","target_type":"Observation"},"key":"_has:Observation:patient:code","modifier":"","name":"_has","target_type":"","values":["x"]}],` +
		`"patient_params":["subject","performer"],"resource_type":"Observation","version_id":""}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	r, err = withBody("POST", "", "application/fhir+json", `{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Patient/member-01/$everything"}},
		{"request":{"method":"GET","url":"Patient/member-01/Observation"}},
		{"request":{"method":"PATCH","url":"Observation/o1"},"resource":{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Observation.note"}]}]}}]}`).classify()
	if err != nil {
		t.Fatal(err)
	}
	got, _ = json.Marshal(r.PolicyInput())
	want = `{"body":{"id":"","patient_refs":[],"resource_type":"Bundle"},"conditional":false,` +
		`"entries":[{"conditional":false,"id":"member-01","interaction":"operation","method":"GET","operation":{"level":"instance","name":"everything"},"params":[],"patient_params":["link"],"resource_type":"Patient","version_id":""},` +
		`{"compartment":{"id":"member-01","type":"Patient"},"conditional":false,"id":"","interaction":"search-compartment","method":"GET","params":[],"patient_params":["subject","performer"],"resource_type":"Observation","version_id":""},` +
		`{"conditional":false,"id":"o1","interaction":"patch","method":"PATCH","params":[],"patch":{"format":"fhirpath-patch","paths":["Observation.note"],"patient_refs":[]},"patient_params":["subject","performer"],"resource_type":"Observation","version_id":""}],` +
		`"id":"","interaction":"batch","method":"POST","params":[],"patient_params":[],"resource_type":"","version_id":""}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func BenchmarkClassify(b *testing.B) {
	h := http.Header{"Content-Type": {"application/fhir+json"}}.Values
	body := []byte(obsMember01)
	b.Run("search", func(b *testing.B) {
		for b.Loop() {
			if _, err := Classify("GET", "/ExplanationOfBenefit", "patient=member-01&_include=ExplanationOfBenefit:*&_count=50&service-date=ge2020-01-01", nil, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("update", func(b *testing.B) {
		for b.Loop() {
			if _, err := Classify("PUT", "/Observation/obs-1", "", h, body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Bulk Data 2.0: DELETE on the export status URL cancels the job; DELETE on any other operation is refused.
func TestDeleteOnlyCancelsAnExport(t *testing.T) {
	r, err := Classify("DELETE", "/$export-poll-status", "_jobId=abc", nil, nil)
	if err != nil || r.Interaction != Operation || r.Operation.Name != "export-poll-status" || r.Operation.Level != "system" {
		t.Fatalf("got %+v %v", r, err)
	}
	for _, p := range []string{"/$export", "/Patient/$export-poll-status", "/Group/g/$export"} {
		if _, err := Classify("DELETE", p, "", nil, nil); !errors.Is(err, ErrUnsupported) {
			t.Errorf("DELETE %s: want ErrUnsupported, got %v", p, err)
		}
	}
}
