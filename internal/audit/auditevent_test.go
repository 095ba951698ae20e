package audit

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

var aeOptions = AuditEventOptions{Observer: "fhirwall-0", Site: "payer-prod", Server: "https://api.payer.example/fhir"}

// aeRecord is an allowed patient-access read of one Observation by a SMART app acting for a patient.
func aeRecord(edit func(*Record)) Record {
	r := Record{
		Schema: SchemaVersion, Kind: KindAccess, ID: "0af7651916cd43dd8448eb211c80319c",
		Time: time.Date(2026, 11, 27, 8, 10, 57, 123456789, time.UTC), API: "patient-access",
		DecisionID: "d-7", Allow: true, Reasons: []string{}, PolicyRevision: "rev-42",
		ClientID: "app-1", Subject: "user-9", FHIRUser: "Patient/p1", TokenJTI: "jti-5",
		Scopes: []string{"patient/Observation.rs"}, Patients: []string{"p1"},
		ResourceType: "Observation", Interaction: "read", Method: "GET", Path: "/Observation/obs-1",
		SourceIP: "203.0.113.7", RequestID: "req-3", Status: 200, DataCategories: []string{"lab-results", "clinical"},
	}
	if edit != nil {
		edit(&r)
	}
	return r
}

// aeCases are the records the unit tests check and the e2e test validates.
var aeCases = []struct {
	name  string
	rec   Record
	check func(t *testing.T, ev map[string]any)
}{
	{"ReadNamesTheResourceItsPatientClientUserAndToken", aeRecord(nil), func(t *testing.T, ev map[string]any) {
		want(t, ev, "id", "0af7651916cd43dd8448eb211c80319c")
		want(t, ev, "type.code", "rest")
		want(t, ev, "subtype.0.code", "read")
		want(t, ev, "action", "R")
		want(t, ev, "recorded", "2026-11-27T08:10:57.123Z")
		want(t, ev, "outcome", "0")
		// BALP Read: the client receives the data, so it is the Destination Role ID.
		client := agentByCode(t, ev, "110150")
		want(t, client, "type.coding.0.code", "110152")
		want(t, client, "who.identifier.value", "app-1")
		want(t, client, "network.address", "203.0.113.7")
		want(t, client, "network.type", "2")
		want(t, client, "requestor", false)
		user := agentByCode(t, ev, "UserOauthAgent")
		want(t, user, "type.coding.0.code", "IRCP")
		want(t, user, "who.identifier.value", "user-9")
		want(t, user, "who.reference", "Patient/p1")
		want(t, user, "policy.0", "urn:ietf:params:oauth:jti:jti-5")
		want(t, user, "requestor", true)
		server := agentByCode(t, ev, "110153")
		want(t, server, "network.address", "https://api.payer.example/fhir")
		want(t, server, "network.type", "5")
		want(t, ev, "source.observer.display", "fhirwall-0")
		want(t, ev, "source.site", "payer-prod")
		want(t, ev, "source.type.0.code", "4")
		data := entitiesByRole(ev, "4")
		if len(data) != 1 {
			t.Fatalf("want one data entity, got %v", data)
		}
		want(t, data[0], "what.reference", "Observation/obs-1")
		want(t, data[0], "type.code", "2")
		patients := entitiesByRole(ev, "1")
		if len(patients) != 1 {
			t.Fatalf("want one patient entity, got %v", patients)
		}
		want(t, patients[0], "what.reference", "Patient/p1")
		want(t, patients[0], "type.code", "1")
		if q := entitiesByRole(ev, "24"); len(q) != 0 {
			t.Errorf("a read has no query entity: %v", q)
		}
		want(t, entityByType(t, ev, "XrequestId"), "what.identifier.value", "req-3")
		dec := entitiesByRole(ev, "13")[0]
		want(t, dec, "what.identifier.value", "d-7")
		wantDetails(t, dec, map[string][]string{
			"decision": {"allow"}, "api": {"patient-access"}, "policy_revision": {"rev-42"},
			"scope": {"patient/Observation.rs"}, "data_category": {"lab-results", "clinical"}, "http_status": {"200"},
		})
	}},
	{"VReadReferencesTheVersionRead", aeRecord(func(r *Record) {
		r.Interaction, r.Path = "vread", "/Observation/obs-1/_history/3"
	}), func(t *testing.T, ev map[string]any) {
		want(t, ev, "subtype.0.code", "vread")
		want(t, entitiesByRole(ev, "4")[0], "what.reference", "Observation/obs-1/_history/3")
	}},
	{"SearchKeepsTheRequestBase64InAQueryEntity", aeRecord(func(r *Record) {
		r.Interaction, r.Path, r.Query = "search-type", "/Observation", "category=laboratory&_count=10"
	}), func(t *testing.T, ev map[string]any) {
		want(t, ev, "subtype.0.code", "search-type")
		want(t, ev, "action", "E")
		// BALP Query: the client sends the query, so it is the Source Role ID.
		want(t, agentByCode(t, ev, "110150"), "type.coding.0.code", "110153")
		q := entitiesByRole(ev, "24")
		if len(q) != 1 {
			t.Fatalf("want one query entity, got %v", q)
		}
		want(t, q[0], "type.code", "2")
		raw, err := base64.StdEncoding.DecodeString(q[0]["query"].(string))
		if err != nil || string(raw) != "GET /Observation?category=laboratory&_count=10" {
			t.Errorf("query = %q (%v), want base64 of the request", raw, err)
		}
		if d := entitiesByRole(ev, "4"); len(d) != 0 {
			t.Errorf("a search has no data entity: %v", d)
		}
	}},
	{"RefusedWithReasonsIsAMinorFailureThatSaysWhy", aeRecord(func(r *Record) {
		r.Allow, r.Status, r.Reasons, r.DataCategories = false, 403, []string{"scope does not cover Observation", "patient mismatch"}, []string{}
	}), func(t *testing.T, ev map[string]any) {
		want(t, ev, "outcome", "4")
		want(t, ev, "outcomeDesc", "scope does not cover Observation; patient mismatch")
		wantDetails(t, entitiesByRole(ev, "13")[0], map[string][]string{
			"decision": {"deny"}, "reason": {"scope does not cover Observation", "patient mismatch"}, "http_status": {"403"},
		})
	}},
	{"EveryPatientReturnedHasItsOwnEntity", aeRecord(func(r *Record) {
		r.Interaction, r.Path, r.API = "search-type", "/Observation", "provider-access"
		r.Patients = []string{"m-01", "m-02", "m-03"}
	}), func(t *testing.T, ev map[string]any) {
		var got []string
		for _, e := range entitiesByRole(ev, "1") {
			got = append(got, field(e, "what.reference").(string))
		}
		if !reflect.DeepEqual(got, []string{"Patient/m-01", "Patient/m-02", "Patient/m-03"}) {
			t.Errorf("patient entities = %v", got)
		}
	}},
	{"UpstreamFailureIsASeriousFailure", aeRecord(func(r *Record) {
		r.Status, r.DataCategories = 502, []string{}
	}), func(t *testing.T, ev map[string]any) {
		want(t, ev, "outcome", "8")
	}},
	{"NoResponseSeenIsASeriousFailure", aeRecord(func(r *Record) { r.Status = 0 }), func(t *testing.T, ev map[string]any) {
		want(t, ev, "outcome", "8")
		want(t, ev, "outcomeDesc", "no response reached the client")
	}},
	{"BackendTokenWithoutUserPutsTheJTIOnTheRequestingClient", aeRecord(func(r *Record) {
		r.Subject, r.FHIRUser, r.Patients, r.Interaction, r.Path = "", "", []string{}, "search-system", "/"
	}), func(t *testing.T, ev map[string]any) {
		if n := len(ev["agent"].([]any)); n != 2 {
			t.Fatalf("want client and server agents only, got %d", n)
		}
		client := agentByCode(t, ev, "110150")
		want(t, client, "requestor", true)
		want(t, client, "policy.0", "urn:ietf:params:oauth:jti:jti-5")
	}},
	{"DeleteFollowsBALPsApplicationAndCustodianAgents", aeRecord(func(r *Record) {
		r.Interaction, r.Method = "delete", "DELETE"
	}), func(t *testing.T, ev map[string]any) {
		want(t, ev, "action", "D")
		want(t, agentByCode(t, ev, "110150"), "who.identifier.value", "app-1")
		agentByCode(t, ev, "custodian")
		want(t, agentByCode(t, ev, "UserOauthAgent"), "type.coding.0.code", "AUT")
	}},
	{"CreateNamesOnlyTheTypeCreated", aeRecord(func(r *Record) {
		r.Interaction, r.Method, r.Path, r.FHIRUser = "create", "POST", "/Observation", "https://idp.example/Person/x"
	}), func(t *testing.T, ev map[string]any) {
		want(t, ev, "action", "C")
		want(t, entitiesByRole(ev, "4")[0], "what.type", "Observation")
		// R4 agent.who cannot reference a Person: the fhirUser is kept as text.
		want(t, agentByCode(t, ev, "UserOauthAgent"), "who.display", "https://idp.example/Person/x")
	}},
	{"SchemaOneRecordWithoutKindIsAnAccess", aeRecord(func(r *Record) { r.Schema, r.Kind = "1", "" }),
		func(t *testing.T, ev map[string]any) { want(t, ev, "id", "0af7651916cd43dd8448eb211c80319c") }},
	{"UnclassifiedRefusalKeepsTheRawRequest", aeRecord(func(r *Record) {
		r.Allow, r.Status, r.Interaction, r.ResourceType, r.Path = false, 400, "", "", "/Patient/A/%2e%2e/B"
		r.ClientID, r.Subject, r.FHIRUser, r.TokenJTI, r.Patients, r.Scopes = "", "", "", "", []string{}, []string{}
	}), func(t *testing.T, ev map[string]any) {
		if _, ok := ev["subtype"]; ok {
			t.Errorf("no interaction, no subtype: %v", ev["subtype"])
		}
		want(t, agentByCode(t, ev, "110150"), "who.display", "unauthenticated client")
		raw, _ := base64.StdEncoding.DecodeString(entitiesByRole(ev, "24")[0]["query"].(string))
		if string(raw) != "GET /Patient/A/%2e%2e/B" {
			t.Errorf("query = %q", raw)
		}
	}},
}

func TestAuditEvent(t *testing.T) {
	for _, c := range aeCases {
		t.Run(c.name, func(t *testing.T) {
			b, err := AuditEvent(c.rec, aeOptions)
			if err != nil {
				t.Fatal(err)
			}
			var ev map[string]any
			if err := json.Unmarshal(b, &ev); err != nil {
				t.Fatal(err)
			}
			want(t, ev, "resourceType", "AuditEvent")
			c.check(t, ev)
		})
	}
}

func TestAuditEventRefuses(t *testing.T) {
	cases := []struct {
		name    string
		rec     Record
		opt     AuditEventOptions
		skipped bool // errors.Is(err, ErrNotAccess): an exporter skips it rather than failing
	}{
		{"CheckpointIsSkippable", Record{Kind: KindCheckpoint, ID: "c1", Time: time.Now()}, aeOptions, true},
		{"EntryWithoutKindIsSkippable", aeRecord(func(r *Record) { r.Kind = "" }), aeOptions, true},
		{"RecordWithoutObserver", aeRecord(nil), AuditEventOptions{}, false},
		{"RecordIDThatIsNotAFHIRID", aeRecord(func(r *Record) { r.ID = "a/b" }), aeOptions, false},
		{"RecordWithoutTime", aeRecord(func(r *Record) { r.Time = time.Time{} }), aeOptions, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := AuditEvent(c.rec, c.opt)
			if err == nil {
				t.Fatalf("rendered %s", b)
			}
			if errors.Is(err, ErrNotAccess) != c.skipped {
				t.Errorf("errors.Is(%v, ErrNotAccess) = %v, want %v", err, !c.skipped, c.skipped)
			}
		})
	}
}

// field walks a dotted path through decoded JSON; numbers index arrays.
func field(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func want(t *testing.T, v any, path string, w any) {
	t.Helper()
	if got := field(v, path); !reflect.DeepEqual(got, w) {
		t.Errorf("%s = %#v, want %#v", path, got, w)
	}
}

// agentByCode is the one agent whose type has a coding with code.
func agentByCode(t *testing.T, ev map[string]any, code string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, a := range ev["agent"].([]any) {
		for _, c := range field(a, "type.coding").([]any) {
			if c.(map[string]any)["code"] == code {
				found = append(found, a.(map[string]any))
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one agent typed %s, got %v", code, found)
	}
	return found[0]
}

func entitiesByRole(ev map[string]any, role string) []map[string]any {
	var out []map[string]any
	for _, e := range ev["entity"].([]any) {
		if field(e, "role.code") == role {
			out = append(out, e.(map[string]any))
		}
	}
	return out
}

func entityByType(t *testing.T, ev map[string]any, code string) map[string]any {
	t.Helper()
	for _, e := range ev["entity"].([]any) {
		if field(e, "type.code") == code {
			return e.(map[string]any)
		}
	}
	t.Fatalf("no entity typed %s", code)
	return nil
}

// wantDetails: the entity's details of each type listed have exactly these values, in order.
func wantDetails(t *testing.T, e map[string]any, w map[string][]string) {
	t.Helper()
	got := map[string][]string{}
	for _, d := range e["detail"].([]any) {
		m := d.(map[string]any)
		got[m["type"].(string)] = append(got[m["type"].(string)], m["valueString"].(string))
	}
	for typ, vals := range w {
		if !reflect.DeepEqual(got[typ], vals) {
			t.Errorf("detail %s = %v, want %v", typ, got[typ], vals)
		}
	}
}
