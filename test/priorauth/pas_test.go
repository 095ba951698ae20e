package priorauth

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/priorauth/um"
)

func TestRequestBundleCarriesTheCaseAndClaimFirst(t *testing.T) {
	r := Request{Template: "homecare", Identifier: "case-1", Items: []Code{HomeHealth, EnteralB4184, CABG}, LevelOfService: "U", Use: "claim"}
	raw, err := r.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Type  string
		Entry []struct {
			FullURL  string
			Resource map[string]any
		}
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	if b.Type != "collection" || len(b.Entry) == 0 || b.Entry[0].Resource["resourceType"] != "Claim" {
		t.Fatalf("not a collection with the Claim first: %s", raw)
	}
	claim := b.Entry[0].Resource
	if !Contains(claim["identifier"], `"value":"case-1"`) || claim["use"] != "claim" {
		t.Errorf("Claim identifier/use not the case's: %v %v", claim["identifier"], claim["use"])
	}
	items := claim["item"].([]any)
	if len(items) != 3 || !Contains(items[2], `"code":"33510"`) || !Contains(items[2], `"sequence":3`) {
		t.Errorf("items not the case's three: %v", items)
	}
	if !Contains(claim["extension"], LevelOfServiceURL) {
		t.Errorf("no levelOfServiceCode: %v", claim["extension"])
	}
	if !strings.Contains(string(raw), `"value":"FWM0005"`) || !strings.Contains(string(raw), `"value":"1234567893"`) ||
		!strings.Contains(string(raw), `"value":"FWPAYER-A"`) {
		t.Errorf("member, org-a or payer identifiers missing: %s", raw)
	}
	var whole map[string]any
	_ = json.Unmarshal(raw, &whole)
	if refs := UnresolvedReferences(whole); len(refs) > 0 {
		t.Errorf("unresolved references in a built request: %v", refs)
	}
}

func TestInquiryNamesTheSameClaimIdentifierAndProvider(t *testing.T) {
	r := NewRequest("case-2", MRIBrain)
	r.Provider = OrgB
	raw, err := r.Inquiry()
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	if !strings.Contains(s, `"value":"case-2"`) || !strings.Contains(s, `"value":"1345678902"`) || !strings.Contains(s, "profile-claim-inquiry") {
		t.Errorf("inquiry lacks the identifier, org-b's NPI or the inquiry profile: %s", s)
	}
}

func TestReadAnswerFindsReviewActionsNumbersAndReasons(t *testing.T) {
	body := `{"resourceType":"Bundle","type":"collection","entry":[
	 {"fullUrl":"urn:uuid:1","resource":{"resourceType":"ClaimResponse","id":"cr1","status":"active","use":"preauthorization",
	  "identifier":[{"system":"t","value":"v"},{"system":"` + RequestIDSystem + `","value":"req1"}],
	  "request":{"reference":"Claim/c1"},"patient":{"reference":"Patient/p"},
	  "item":[{"itemSequence":1,"adjudication":[{"extension":[{"url":"` + ReviewActionURL + `","extension":[
	    {"url":"` + ReviewActionCodeURL + `","valueCodeableConcept":{"coding":[{"system":"` + X12ReviewAction + `","code":"A3"}]}},
	    {"url":"number","valueString":"AUTH1"},
	    {"url":"reasonCode","valueCodeableConcept":{"coding":[{"system":"` + X12ReasonCode + `","code":"35"}]}}]}]}]}]}},
	 {"fullUrl":"http://x/fhir/Claim/c1","resource":{"resourceType":"Claim","id":"c1"}}]}`
	a, err := ReadAnswer([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	d, ok := a.First()
	if !ok || a.FirstType != "ClaimResponse" || d.ID != "cr1" || d.RequestID != "req1" || !d.All(Denied) || d.Items[0].Number != "AUTH1" ||
		!slices.Contains(d.Items[0].Reasons, X12ReasonCode+"|35") {
		t.Fatalf("read %+v", d)
	}
	if refs := UnresolvedReferences(a.Bundle); !slices.Equal(refs, []string{"Patient/p"}) {
		t.Errorf("unresolved %v, want [Patient/p]", refs)
	}
}

func TestReadNotificationOfAnIDOnlyEvent(t *testing.T) {
	body := `{"resourceType":"Bundle","type":"history","entry":[
	 {"fullUrl":"urn:uuid:s","resource":{"resourceType":"Parameters","parameter":[
	   {"name":"subscription","valueReference":{"reference":"http://x/fhir/Subscription/s1"}},
	   {"name":"status","valueCode":"active"},{"name":"type","valueCode":"event-notification"},
	   {"name":"notification-event","part":[{"name":"event-number","valueString":"1"},{"name":"focus","valueReference":{"reference":"http://x/fhir/ClaimResponse/cr1"}}]}]},
	  "request":{"method":"GET","url":"http://x/fhir/Subscription/s1/$status"},"response":{"status":"200"}},
	 {"fullUrl":"http://x/fhir/ClaimResponse/cr1","request":{"method":"PUT","url":"ClaimResponse/cr1"}}]}`
	n := ReadNotification([]byte(body))
	if n.Problem != "" || n.Type != NotificationEvent || !n.OfSubscription("s1") || !n.Names("cr1") || n.Names("cr2") {
		t.Errorf("read %+v", n)
	}
	if n.EntriesWithoutRequestResponse != 1 {
		t.Errorf("entries without request/response: %d, want 1", n.EntriesWithoutRequestResponse)
	}
}

func TestQueueItemsAreReadWhateverTheirFieldNames(t *testing.T) {
	for _, raw := range []string{
		`{"id":"r1","status":"pended","claim_identifier":"s|v","eob_id":"e1","expedited":true,"received":"2026-12-06T10:00:00Z","deadline":"2026-12-09T10:00:00Z"}`,
		`{"ID":"r1","Status":"pended","ClaimIdentifier":"s|v","EOBID":"e1","Expedited":true,"Received":"2026-12-06T10:00:00Z","Deadline":"2026-12-09T10:00:00Z"}`,
	} {
		var m map[string]any
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatal(err)
		}
		q := readItem(m)
		if q.ID != "r1" || q.Status != "pended" || q.EOBID != "e1" || !q.Expedited || q.Deadline.Sub(q.Received) != 72*time.Hour {
			t.Errorf("%s read as %+v", raw, q)
		}
	}
}

func TestSubscriptionAsksForThePASTopicAndPayload(t *testing.T) {
	s := string(Subscription{Endpoint: "http://127.0.0.1:1/n", PayloadContent: PayloadFullResource, OrgIdentifier: "1234567893", Headers: []string{"Authorization: Bearer x"}}.JSON())
	for _, want := range []string{PASTopic, "orgIdentifier=1234567893", `"valueCode":"full-resource"`, `"type":"rest-hook"`, `"status":"requested"`, `"header":["Authorization: Bearer x"]`} {
		if !strings.Contains(s, want) {
			t.Errorf("Subscription lacks %s: %s", want, s)
		}
	}
}

func TestListenerRecordsWhatArrives(t *testing.T) {
	l := NewListener()
	defer l.Close()
	body := `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Parameters","parameter":[{"name":"type","valueCode":"handshake"}]},"request":{"method":"GET","url":"x"},"response":{"status":"200"}}]}`
	resp, err := http.Post(l.URL()+"/p", "application/fhir+json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := l.Wait(ctx, func(ns []Notification) bool { return len(ns) == 1 })
	if err != nil || got[0].Path != "/p" || got[0].Type != NotificationHandshake || string(got[0].Raw) != body {
		t.Fatalf("%v %+v", err, got)
	}
}

func TestFakeUMAnswersItsVerdictForEveryItem(t *testing.T) {
	f, err := StartFakeUM("127.0.0.1:0", um.Approved)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if UMDown(f.Addr()) {
		t.Fatal("the fake UM does not listen")
	}
	req := um.Request{ID: "r", Items: []um.Item{{Sequence: 1, Codes: []um.Code{{System: CPT, Code: "81162"}}}, {Sequence: 2}}}
	b, _ := json.Marshal(req)
	resp, err := http.Post("http://"+f.Addr()+"/decide", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res um.Result
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || len(res.Items) != 2 || res.Items[1].Verdict != um.Approved || res.Items[1].Sequence != 2 {
		t.Fatalf("%v %+v", err, res)
	}
	if asked := f.Asked(); len(asked) != 1 || asked[0].Items[0].Codes[0].Code != "81162" {
		t.Errorf("asked %+v", asked)
	}
}
