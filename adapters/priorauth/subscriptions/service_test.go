package subscriptions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/decision/decisiontest"
	"github.com/fhirwall/fhirwall/internal/fhir"
)

const testBase = "https://127.0.0.1:10000/prior-auth/fhir"

var (
	orgA = Owner{ClientID: "provider-org-a", Provider: "Organization/org-a",
		OrgIdentifiers: []string{"http://hl7.org/fhir/sid/us-npi|1234567893"}, NotifyHosts: []string{"127.0.0.1"}}
	orgB = Owner{ClientID: "provider-org-b", Provider: "Organization/org-b",
		OrgIdentifiers: []string{"http://hl7.org/fhir/sid/us-npi|1093817465"}, NotifyHosts: []string{"127.0.0.1"}}
)

// received is one request the test subscriber got.
type received struct {
	body   []byte
	header http.Header
}

// subscriber is a real HTTP listener standing in for the provider's notification endpoint. fail answers
// 500 to that many requests first.
type subscriber struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []received
	fail atomic.Int32
	next chan received
}

func newSubscriber(t *testing.T) *subscriber {
	sb := &subscriber{next: make(chan received, 64)}
	sb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc := received{body: b, header: r.Header.Clone()}
		sb.mu.Lock()
		sb.got = append(sb.got, rc)
		sb.mu.Unlock()
		if sb.fail.Add(-1) >= 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		sb.next <- rc
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(sb.srv.Close)
	return sb
}

// wait returns the next request the subscriber accepted.
func (sb *subscriber) wait(t *testing.T) received {
	t.Helper()
	select {
	case r := <-sb.next:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no notification arrived")
	}
	return received{}
}

func (sb *subscriber) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case r := <-sb.next:
		t.Fatalf("unexpected notification: %s", r.body)
	case <-time.After(d):
	}
}

func (sb *subscriber) all() []received {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return append([]received(nil), sb.got...)
}

// clock is real time plus an offset the heartbeat test moves forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// fixture is a Service on a memory store, its worker running, with a recording audit.
type fixture struct {
	svc    *Service
	store  *MemoryStore
	clock  *clock
	mu     sync.Mutex
	audits []Delivery
	// auditFail fails that many audit calls first.
	auditFail atomic.Int32
	hosts     atomic.Pointer[[]string]
}

func newFixture(t *testing.T, maxAttempts int) *fixture {
	f := &fixture{store: NewMemoryStore(), clock: &clock{}}
	h := []string{"127.0.0.1"}
	f.hosts.Store(&h)
	svc, err := New(f.store, Options{Base: testBase, Now: f.clock.now, MaxAttempts: maxAttempts,
		InitialBackoff: 20 * time.Millisecond, MaxBackoff: 80 * time.Millisecond, Poll: 10 * time.Millisecond,
		HostsOf: func(string) []string { return *f.hosts.Load() },
		Audit: func(_ context.Context, d Delivery) error {
			if f.auditFail.Add(-1) >= 0 {
				return errors.New("fake audit sink down")
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			f.audits = append(f.audits, d)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func (f *fixture) audited() []Delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Delivery(nil), f.audits...)
}

func subscriptionJSON(endpoint, filter, content string, extra map[string]any) []byte {
	ch := map[string]any{"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
		"_payload": map[string]any{"extension": []any{map[string]any{"url": extPayloadContent, "valueCode": content}}},
		"header":   []string{"Authorization: Bearer inferno-token-123"}}
	s := map[string]any{"resourceType": "Subscription", "status": "requested", "reason": "PAS decisions",
		"criteria": Topic, "_criteria": map[string]any{"extension": []any{map[string]any{"url": extFilterCriteria, "valueString": filter}}},
		"channel": ch}
	for k, v := range extra {
		if strings.HasPrefix(k, "channel.") {
			ch[strings.TrimPrefix(k, "channel.")] = v
		} else {
			s[k] = v
		}
	}
	b, _ := json.Marshal(s)
	return b
}

func serve(t *testing.T, svc *Service, owner Owner, in fhir.Interaction, id string, body []byte) decision.Answer {
	t.Helper()
	d := &decision.Decision{Request: fhir.Request{Interaction: in, ResourceType: "Subscription", ID: id}, Input: decision.Input{Body: body}}
	a, err := svc.Serve(context.Background(), d, owner, testBase)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// create subscribes owner and returns the new id.
func create(t *testing.T, svc *Service, owner Owner, body []byte) string {
	t.Helper()
	a := serve(t, svc, owner, fhir.Create, "", body)
	if a.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", a.Status, a.Body)
	}
	var r struct{ ID, Status string }
	if err := json.Unmarshal(a.Body, &r); err != nil || r.ID == "" || r.Status != StatusRequested {
		t.Fatalf("create answered %s", a.Body)
	}
	if a.Header.Get("Location") != testBase+"/Subscription/"+r.ID {
		t.Fatalf("Location %q", a.Header.Get("Location"))
	}
	return r.ID
}

func statusOf(t *testing.T, svc *Service, owner Owner, id string) string {
	t.Helper()
	a := serve(t, svc, owner, fhir.Read, id, nil)
	var r struct{ Status string }
	_ = json.Unmarshal(a.Body, &r)
	return r.Status
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("never: %s", what)
}

// notif is a notification Bundle as the tests read it.
type notif struct {
	ResourceType, Type string
	Entry              []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  *struct{ Method, URL string }
		Response *struct{ Status string }
	}
}

type statusParams struct {
	ResourceType string
	Parameter    []struct {
		Name           string
		ValueReference *struct{ Reference string }
		ValueCanonical string
		ValueCode      string
		ValueString    string
		Part           []struct {
			Name           string
			ValueString    string
			ValueInstant   string
			ValueReference *struct{ Reference string }
		}
	}
}

func (p statusParams) value(name string) string {
	for _, x := range p.Parameter {
		if x.Name == name {
			switch {
			case x.ValueCode != "":
				return x.ValueCode
			case x.ValueString != "":
				return x.ValueString
			case x.ValueCanonical != "":
				return x.ValueCanonical
			case x.ValueReference != nil:
				return x.ValueReference.Reference
			}
		}
	}
	return ""
}

// event returns the notification-event parts: event-number and focus.
func (p statusParams) event() (number, focus string) {
	for _, x := range p.Parameter {
		if x.Name == "notification-event" {
			for _, part := range x.Part {
				switch part.Name {
				case "event-number":
					number = part.ValueString
				case "focus":
					focus = part.ValueReference.Reference
				}
			}
		}
	}
	return number, focus
}

// readNotification checks what every notification must be and returns it with its status Parameters. The
// backport package is not available offline, so this is its profile text checked by hand (Subscriptions
// Backport 1.1.0 backport-subscription-notification-r4: type history, entry[0] a Parameters;
// backport-subscription-status-r4: subscription Reference 1..1, topic canonical, status and type codes 1..1,
// events-since-subscription-start and notification-event.event-number as strings, focus a Reference), plus
// Inferno's history-Bundle checks (every entry has request and response; entry[0].request.url ends with
// Subscription/<id>/$status).
func readNotification(t *testing.T, body []byte, subID, wantType string) (notif, statusParams) {
	t.Helper()
	var n notif
	if err := json.Unmarshal(body, &n); err != nil {
		t.Fatalf("notification is not JSON: %v", err)
	}
	if n.ResourceType != "Bundle" || n.Type != "history" || len(n.Entry) == 0 {
		t.Fatalf("not a history Bundle: %s", body)
	}
	for i, e := range n.Entry {
		if e.FullURL == "" || e.Request == nil || e.Request.Method == "" || e.Request.URL == "" || e.Response == nil || e.Response.Status == "" {
			t.Fatalf("entry %d lacks fullUrl, request or response: %s", i, body)
		}
	}
	if want := testBase + "/Subscription/" + subID + "/$status"; n.Entry[0].Request.URL != want || n.Entry[0].Request.Method != "GET" ||
		n.Entry[0].Response.Status != "200" {
		t.Fatalf("status entry request %+v response %+v", n.Entry[0].Request, n.Entry[0].Response)
	}
	var p statusParams
	if err := json.Unmarshal(n.Entry[0].Resource, &p); err != nil || p.ResourceType != "Parameters" {
		t.Fatalf("entry 0 is not a backport SubscriptionStatus: %s", n.Entry[0].Resource)
	}
	if p.value("subscription") != testBase+"/Subscription/"+subID || p.value("type") != wantType || p.value("status") == "" {
		t.Fatalf("status parameters: %s", n.Entry[0].Resource)
	}
	return n, p
}

func TestCreatedSubscriptionIsRequestedThenActiveOnceTheHandshakeIsAccepted(t *testing.T) {
	f, sb := newFixture(t, 3), newSubscriber(t)
	id := create(t, f.svc, orgA, subscriptionJSON(sb.srv.URL+"/hook", "orgIdentifier=1234567893", ContentIDOnly, nil))
	hs := sb.wait(t)
	_, p := readNotification(t, hs.body, id, TypeHandshake)
	if p.value("status") != StatusRequested || p.value("events-since-subscription-start") != "0" || p.value("topic") != Topic {
		t.Errorf("handshake parameters: %+v", p)
	}
	if hs.header.Get("Authorization") != "Bearer inferno-token-123" || hs.header.Get("Content-Type") != "application/fhir+json" {
		t.Errorf("handshake headers: %v", hs.header)
	}
	eventually(t, "subscription active", func() bool { return statusOf(t, f.svc, orgA, id) == StatusActive })
}

func TestSubscriptionsTheRulesForbidAreRefusedAndNothingIsStored(t *testing.T) {
	f := newFixture(t, 3)
	ep := "http://127.0.0.1:9999/hook"
	good := "orgIdentifier=1234567893"
	for _, tc := range []struct {
		name   string
		body   []byte
		owner  Owner
		status int
	}{
		{"not a Subscription", []byte(`{"resourceType":"Patient"}`), orgA, 400},
		{"another topic", subscriptionJSON(ep, good, ContentIDOnly, map[string]any{"criteria": "Patient?name=x"}), orgA, 422},
		{"no filter", subscriptionJSON(ep, good, ContentIDOnly, map[string]any{"_criteria": map[string]any{}}), orgA, 422},
		{"two filters", subscriptionJSON(ep, good, ContentIDOnly, map[string]any{"_criteria": map[string]any{"extension": []any{
			map[string]any{"url": extFilterCriteria, "valueString": good}, map[string]any{"url": extFilterCriteria, "valueString": good}}}}), orgA, 422},
		{"a filter naming another organisation", subscriptionJSON(ep, "orgIdentifier=1093817465", ContentIDOnly, nil), orgA, 422},
		{"a filter naming ours and another", subscriptionJSON(ep, "orgIdentifier=1234567893,1093817465", ContentIDOnly, nil), orgA, 422},
		{"a filter on another key", subscriptionJSON(ep, "patient=1234567893", ContentIDOnly, nil), orgA, 422},
		{"an owner without identifiers", subscriptionJSON(ep, good, ContentIDOnly, nil), Owner{ClientID: "x", NotifyHosts: []string{"127.0.0.1"}}, 422},
		{"endpoint on an unregistered host", subscriptionJSON("https://attacker.example/hook", good, ContentIDOnly, nil), orgA, 422},
		{"endpoint on no registered host at all", subscriptionJSON(ep, good, ContentIDOnly, nil), Owner{ClientID: "provider-org-a", OrgIdentifiers: orgA.OrgIdentifiers}, 422},
		{"http to a non-loopback host", subscriptionJSON("http://hooks.org-a.example/hook", good, ContentIDOnly, nil),
			Owner{ClientID: "provider-org-a", OrgIdentifiers: orgA.OrgIdentifiers, NotifyHosts: []string{"hooks.org-a.example"}}, 422},
		{"endpoint port not the registered one", subscriptionJSON("http://127.0.0.1:9999/hook", good, ContentIDOnly, nil),
			Owner{ClientID: "provider-org-a", OrgIdentifiers: orgA.OrgIdentifiers, NotifyHosts: []string{"127.0.0.1:8443"}}, 422},
		{"endpoint with user info", subscriptionJSON("http://u:p@127.0.0.1:9999/hook", good, ContentIDOnly, nil), orgA, 422},
		{"websocket channel", subscriptionJSON(ep, good, ContentIDOnly, map[string]any{"channel.type": "websocket"}), orgA, 422},
		{"xml payload", subscriptionJSON(ep, good, ContentIDOnly, map[string]any{"channel.payload": "application/fhir+xml"}), orgA, 422},
		{"no payload content", subscriptionJSON(ep, good, ContentIDOnly, map[string]any{"channel._payload": map[string]any{}}), orgA, 422},
		{"unknown payload content", subscriptionJSON(ep, good, "everything", nil), orgA, 422},
		{"header with CR LF", subscriptionJSON(ep, good, ContentIDOnly, map[string]any{"channel.header": []string{"X-A: b\r\nHost: evil"}}), orgA, 422},
		{"Host header", subscriptionJSON(ep, good, ContentIDOnly, map[string]any{"channel.header": []string{"Host: evil.example"}}), orgA, 422},
		{"Content-Type header", subscriptionJSON(ep, good, ContentIDOnly, map[string]any{"channel.header": []string{"content-type: text/plain"}}), orgA, 422},
		{"header without a name", subscriptionJSON(ep, good, ContentIDOnly, map[string]any{"channel.header": []string{"just a value"}}), orgA, 422},
		{"heartbeat too often", subscriptionJSON(ep, good, ContentIDOnly, map[string]any{"channel.extension": []any{
			map[string]any{"url": extHeartbeat, "valueUnsignedInt": 1}}}), orgA, 422},
		{"timeout too long", subscriptionJSON(ep, good, ContentIDOnly, map[string]any{"channel.extension": []any{
			map[string]any{"url": extTimeout, "valueUnsignedInt": 3600}}}), orgA, 422},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := serve(t, f.svc, tc.owner, fhir.Create, "", tc.body)
			if a.Status != tc.status || !bytes.Contains(a.Body, []byte(`"OperationOutcome"`)) {
				t.Fatalf("got %d %s, want %d with an OperationOutcome", a.Status, a.Body, tc.status)
			}
		})
	}
	if n := len(f.store.subs); n != 0 {
		t.Fatalf("%d refused subscriptions were stored", n)
	}
}

func TestFilterNamesTheOrganisationByValueOrSystemValueUnderAnyPASKey(t *testing.T) {
	f := newFixture(t, 3)
	two := Owner{ClientID: "provider-org-a", OrgIdentifiers: []string{"http://hl7.org/fhir/sid/us-npi|1234567893", "urn:oid:2.16.840.1.113883.4.4|123456789"},
		NotifyHosts: []string{"127.0.0.1"}}
	for filter, want := range map[string][]string{
		"orgIdentifier=1234567893":                                 {"http://hl7.org/fhir/sid/us-npi|1234567893"},
		"org-identifier=http://hl7.org/fhir/sid/us-npi|1234567893": {"http://hl7.org/fhir/sid/us-npi|1234567893"},
		"identifier=1234567893,123456789":                          {"http://hl7.org/fhir/sid/us-npi|1234567893", "urn:oid:2.16.840.1.113883.4.4|123456789"},
	} {
		id := create(t, f.svc, two, subscriptionJSON("http://127.0.0.1:1/hook", filter, ContentIDOnly, nil))
		s, _ := f.store.Get(context.Background(), id)
		if strings.Join(s.Filter, " ") != strings.Join(want, " ") {
			t.Errorf("%s stored as %v, want %v", filter, s.Filter, want)
		}
	}
}

// decided is an event for org A's request n.
func decided(n string, version int) Event {
	return Event{RequestID: "req-" + n, Version: version, OrgIdentifiers: orgA.OrgIdentifiers, ClaimResponseID: "cr-" + n,
		ResponseBundle: []byte(`{"resourceType":"Bundle","id":"resp-` + n + `","type":"collection","entry":[{"fullUrl":"` + testBase +
			`/ClaimResponse/cr-` + n + `","resource":{"resourceType":"ClaimResponse","id":"cr-` + n + `"}}]}`),
		Time: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC), Patients: []string{"member-01"}}
}

func TestEventNotificationsCarryTheFocusAsAskedAndNumberEvents(t *testing.T) {
	f := newFixture(t, 3)
	subs := map[string]*subscriber{ContentIDOnly: newSubscriber(t), ContentFullResource: newSubscriber(t)}
	ids := map[string]string{}
	for content, sb := range subs {
		ids[content] = create(t, f.svc, orgA, subscriptionJSON(sb.srv.URL+"/hook", "orgIdentifier=1234567893", content, nil))
		sb.wait(t) // handshake
	}
	for _, n := range []string{"1", "2"} {
		if err := f.svc.Decided(context.Background(), decided(n, 2)); err != nil {
			t.Fatal(err)
		}
	}
	for content, sb := range subs {
		for i, n := range []string{"1", "2"} {
			got := sb.wait(t)
			nb, p := readNotification(t, got.body, ids[content], TypeEvent)
			num, focus := p.event()
			if num != n || p.value("events-since-subscription-start") != n {
				t.Errorf("%s notification %d: event-number %q, events-since-start %q", content, i, num, p.value("events-since-subscription-start"))
			}
			if len(nb.Entry) != 2 {
				t.Fatalf("%s: %d entries, want 2", content, len(nb.Entry))
			}
			e := nb.Entry[1]
			switch content {
			case ContentIDOnly:
				if focus != testBase+"/ClaimResponse/cr-"+n || e.FullURL != focus || len(e.Resource) != 0 {
					t.Errorf("id-only: focus %q entry %+v", focus, e)
				}
			case ContentFullResource:
				var rb struct{ ResourceType, ID, Type string }
				_ = json.Unmarshal(e.Resource, &rb)
				if focus != testBase+"/Bundle/resp-"+n || e.FullURL != focus || rb.ResourceType != "Bundle" || rb.ID != "resp-"+n || rb.Type != "collection" {
					t.Errorf("full-resource: focus %q entry %s", focus, e.Resource)
				}
			}
		}
	}
}

func TestFullResourceGivesAResponseBundleWithoutIDOne(t *testing.T) {
	raw := []byte(` {"resourceType":"Bundle","type":"collection"} `)
	out, id, err := withBundleID(raw)
	var b struct{ ResourceType, ID, Type string }
	if err != nil || json.Unmarshal(out, &b) != nil || b.ID != id || id == "" || b.Type != "collection" {
		t.Fatalf("%s %q %v", out, id, err)
	}
	if _, _, err := withBundleID([]byte(`{"resourceType":"ClaimResponse"}`)); err == nil {
		t.Fatal("a ClaimResponse was taken for a Bundle")
	}
}

func TestDecidedTwiceForTheSameDecisionNotifiesOnce(t *testing.T) {
	f, sb := newFixture(t, 3), newSubscriber(t)
	id := create(t, f.svc, orgA, subscriptionJSON(sb.srv.URL+"/hook", "orgIdentifier=1234567893", ContentIDOnly, nil))
	sb.wait(t)
	for range 2 {
		if err := f.svc.Decided(context.Background(), decided("1", 2)); err != nil {
			t.Fatal(err)
		}
	}
	sb.wait(t)
	sb.quiet(t, 200*time.Millisecond)
	if notes, _ := f.store.Notifications(context.Background(), id); len(notes) != 1 {
		t.Fatalf("%d notifications queued, want 1", len(notes))
	}
}

func TestOtherOrganisationsDecisionsAreNotNotified(t *testing.T) {
	f, sb := newFixture(t, 3), newSubscriber(t)
	create(t, f.svc, orgA, subscriptionJSON(sb.srv.URL+"/hook", "orgIdentifier=1234567893", ContentFullResource, nil))
	sb.wait(t)
	ev := decided("1", 2)
	// Another organisation whose identifier has the same value in another system: a bare value never matches it.
	ev.OrgIdentifiers = []string{"urn:oid:2.16.840.1.113883.4.4|1234567893", orgB.OrgIdentifiers[0]}
	if err := f.svc.Decided(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	sb.quiet(t, 200*time.Millisecond)
}

func TestSubscriberFailingTwiceGetsTheSameBytesOnTheThirdAttempt(t *testing.T) {
	f, sb := newFixture(t, 5), newSubscriber(t)
	id := create(t, f.svc, orgA, subscriptionJSON(sb.srv.URL+"/hook", "orgIdentifier=1234567893", ContentIDOnly, nil))
	sb.wait(t)
	sb.fail.Store(2)
	if err := f.svc.Decided(context.Background(), decided("1", 2)); err != nil {
		t.Fatal(err)
	}
	got := sb.wait(t)
	all := sb.all()
	if len(all) != 4 { // handshake, two refused, one accepted
		t.Fatalf("%d requests, want 4", len(all))
	}
	if !bytes.Equal(all[1].body, all[2].body) || !bytes.Equal(all[2].body, got.body) {
		t.Fatal("a retry sent different bytes")
	}
	eventually(t, "delivered", func() bool {
		notes, _ := f.store.Notifications(context.Background(), id)
		return len(notes) == 1 && notes[0].State == NoteDelivered && notes[0].Attempts == 3
	})
	var attempts []int
	for _, d := range f.audited() {
		if d.Type == TypeEvent && d.Phase == PhaseResult {
			attempts = append(attempts, d.Attempt)
			if d.RequestID != "req-1" || d.EventNumber != 1 || d.MessageID != id+"/1" || d.Patients[0] != "member-01" {
				t.Errorf("audit %+v", d)
			}
		}
	}
	if len(attempts) != 3 || attempts[0] != 1 || attempts[2] != 3 {
		t.Errorf("audited attempts %v, want 1 2 3", attempts)
	}
}

func TestNotificationsWaitBehindAnEarlierUndeliveredOne(t *testing.T) {
	f, sb := newFixture(t, 8), newSubscriber(t)
	id := create(t, f.svc, orgA, subscriptionJSON(sb.srv.URL+"/hook", "orgIdentifier=1234567893", ContentIDOnly, nil))
	sb.wait(t)
	sb.fail.Store(3)
	_ = f.svc.Decided(context.Background(), decided("1", 2))
	_ = f.svc.Decided(context.Background(), decided("2", 2))
	for _, want := range []string{"1", "2"} {
		_, p := readNotification(t, sb.wait(t).body, id, TypeEvent)
		if n, _ := p.event(); n != want {
			t.Fatalf("event %s arrived, want %s", n, want)
		}
	}
}

func TestHandshakeNeverAcceptedPutsTheSubscriptionInError(t *testing.T) {
	f, sb := newFixture(t, 3), newSubscriber(t)
	sb.fail.Store(100)
	id := create(t, f.svc, orgA, subscriptionJSON(sb.srv.URL+"/hook", "orgIdentifier=1234567893", ContentIDOnly, nil))
	eventually(t, "error", func() bool { return statusOf(t, f.svc, orgA, id) == StatusError })
	if n := len(sb.all()); n != 3 {
		t.Fatalf("%d handshake attempts, want MaxAttempts 3", n)
	}
}

func TestHeartbeatWhenNothingWasSentWithinThePeriod(t *testing.T) {
	f, sb := newFixture(t, 3), newSubscriber(t)
	id := create(t, f.svc, orgA, subscriptionJSON(sb.srv.URL+"/hook", "orgIdentifier=1234567893", ContentIDOnly,
		map[string]any{"channel.extension": []any{map[string]any{"url": extHeartbeat, "valueUnsignedInt": 60}}}))
	sb.wait(t)
	eventually(t, "active", func() bool { return statusOf(t, f.svc, orgA, id) == StatusActive })
	sb.quiet(t, 100*time.Millisecond)
	f.clock.advance(61 * time.Second)
	_, p := readNotification(t, sb.wait(t).body, id, TypeHeartbeat)
	if p.value("status") != StatusActive || p.value("events-since-subscription-start") != "0" {
		t.Errorf("heartbeat parameters %+v", p)
	}
	sb.quiet(t, 100*time.Millisecond) // not again within the period
}

func TestAnotherClientsSubscriptionAnswersLikeAMissingOne(t *testing.T) {
	f := newFixture(t, 3)
	id := create(t, f.svc, orgA, subscriptionJSON("http://127.0.0.1:1/hook", "orgIdentifier=1234567893", ContentIDOnly, nil))
	missing := serve(t, f.svc, orgB, fhir.Read, "no-such-id", nil)
	for _, in := range []fhir.Interaction{fhir.Read, fhir.Delete} {
		a := serve(t, f.svc, orgB, in, id, nil)
		if a.Status != http.StatusNotFound || !bytes.Equal(a.Body, missing.Body) {
			t.Errorf("%s by another client: %d %s", in, a.Status, a.Body)
		}
	}
	if got := statusOf(t, f.svc, orgA, id); got == StatusOff || got == "" {
		t.Fatalf("another client's delete reached it: status %q", got)
	}
}

func TestDeletedSubscriptionIsOffAndGetsNothingMore(t *testing.T) {
	f, sb := newFixture(t, 3), newSubscriber(t)
	id := create(t, f.svc, orgA, subscriptionJSON(sb.srv.URL+"/hook", "orgIdentifier=1234567893", ContentIDOnly, nil))
	sb.wait(t)
	if a := serve(t, f.svc, orgA, fhir.Delete, id, nil); a.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", a.Status, a.Body)
	}
	if got, _ := f.store.Get(context.Background(), id); got.Status != StatusOff {
		t.Fatalf("status %q after delete", got.Status)
	}
	missing := serve(t, f.svc, orgA, fhir.Read, "no-such-subscription", nil)
	if a := serve(t, f.svc, orgA, fhir.Read, id, nil); a.Status != http.StatusNotFound || !bytes.Equal(a.Body, missing.Body) {
		t.Errorf("read after delete: %d %s, want the 404 of a missing one", a.Status, a.Body)
	}
	_ = f.svc.Decided(context.Background(), decided("1", 2))
	sb.quiet(t, 200*time.Millisecond)
}

func TestEveryAttemptIsAuditedAndAFailedAuditHoldsTheDelivery(t *testing.T) {
	f, sb := newFixture(t, 8), newSubscriber(t)
	f.auditFail.Store(2)
	id := create(t, f.svc, orgA, subscriptionJSON(sb.srv.URL+"/hook", "orgIdentifier=1234567893", ContentIDOnly, nil))
	sb.wait(t)
	if n := len(sb.all()); n != 1 {
		t.Fatalf("%d handshakes sent; the two whose audit failed must not have been", n)
	}
	eventually(t, "active", func() bool { return statusOf(t, f.svc, orgA, id) == StatusActive })
	var phases []string
	for _, d := range f.audited() {
		if d.SubscriptionID != id || d.ClientID != "provider-org-a" || d.Type != TypeHandshake || d.Endpoint != sb.srv.URL+"/hook" {
			t.Errorf("audit %+v", d)
		}
		phases = append(phases, d.Phase)
		if d.Phase == PhaseResult && d.Status != http.StatusOK {
			t.Errorf("result audited with status %d", d.Status)
		}
	}
	if strings.Join(phases, ",") != "attempt,result" {
		t.Fatalf("audited phases %v, want attempt,result for the one attempt that was sent", phases)
	}
	for _, d := range f.audited() {
		if strings.Contains(d.Endpoint+d.Error, "inferno-token-123") {
			t.Fatal("a channel header value reached the audit")
		}
	}
}

func TestNothingGoesToAHostTheClientNoLongerRegisters(t *testing.T) {
	f, sb := newFixture(t, 3), newSubscriber(t)
	id := create(t, f.svc, orgA, subscriptionJSON(sb.srv.URL+"/hook", "orgIdentifier=1234567893", ContentIDOnly, nil))
	sb.wait(t)
	eventually(t, "active", func() bool { return statusOf(t, f.svc, orgA, id) == StatusActive })
	none := []string{"hooks.org-a.example"}
	f.hosts.Store(&none)
	_ = f.svc.Decided(context.Background(), decided("1", 2))
	eventually(t, "error", func() bool { return statusOf(t, f.svc, orgA, id) == StatusError })
	if n := len(sb.all()); n != 1 {
		t.Fatalf("%d requests reached the unregistered host, want only the handshake", n)
	}
	refused := 0
	for _, d := range f.audited() {
		if d.Type == TypeEvent {
			if d.Phase != PhaseResult || !strings.HasPrefix(d.Error, "refused") {
				t.Errorf("audit %+v", d)
			}
			refused++
		}
	}
	if refused != 3 {
		t.Errorf("%d refusals audited, want 3", refused)
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	other := newSubscriber(t)
	f := newFixture(t, 2)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.srv.URL+"/stolen", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	id := create(t, f.svc, orgA, subscriptionJSON(redirector.URL+"/hook", "orgIdentifier=1234567893", ContentIDOnly, nil))
	eventually(t, "error", func() bool { return statusOf(t, f.svc, orgA, id) == StatusError })
	if n := len(other.all()); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

func TestReadAnswersTheSubscriptionAsSentWithIDAndStatus(t *testing.T) {
	f := newFixture(t, 3)
	body := subscriptionJSON("http://127.0.0.1:1/hook", "orgIdentifier=1234567893", ContentIDOnly, map[string]any{"status": "active", "id": "client-chosen"})
	id := create(t, f.svc, orgA, body)
	a := serve(t, f.svc, orgA, fhir.Read, id, nil)
	var got map[string]any
	if err := json.Unmarshal(a.Body, &got); err != nil || a.Status != 200 {
		t.Fatalf("%d %s", a.Status, a.Body)
	}
	if got["id"] != id || got["reason"] != "PAS decisions" || got["criteria"] != Topic || !strings.HasPrefix(string(a.Body), `{"resourceType":"Subscription","id":`) {
		t.Fatalf("read %s", a.Body)
	}
	if !strings.HasPrefix(a.Header.Get("Content-Type"), "application/fhir+json") {
		t.Fatalf("content type %q", a.Header.Get("Content-Type"))
	}
}

func TestAClientHasAtMostMaxPerClientLiveSubscriptions(t *testing.T) {
	f := newFixture(t, 3)
	f.svc.opts.MaxPerClient = 2
	body := subscriptionJSON("http://127.0.0.1:1/hook", "orgIdentifier=1234567893", ContentIDOnly, nil)
	first := create(t, f.svc, orgA, body)
	create(t, f.svc, orgA, body)
	if a := serve(t, f.svc, orgA, fhir.Create, "", body); a.Status != http.StatusUnprocessableEntity {
		t.Fatalf("third subscription: %d %s", a.Status, a.Body)
	}
	serve(t, f.svc, orgA, fhir.Delete, first, nil)
	create(t, f.svc, orgA, body)
}

func TestConditionalCreateIsRefused(t *testing.T) {
	f := newFixture(t, 3)
	d := &decision.Decision{Request: fhir.Request{Interaction: fhir.Create, ResourceType: "Subscription", Conditional: true},
		Input: decision.Input{Body: subscriptionJSON("http://127.0.0.1:1/hook", "orgIdentifier=1234567893", ContentIDOnly, nil)}}
	a, err := f.svc.Serve(context.Background(), d, orgA, testBase)
	if err != nil || a.Status != http.StatusBadRequest || len(f.store.subs) != 0 {
		t.Fatalf("%d %s %v", a.Status, a.Body, err)
	}
}

func TestRegistryHostsAreNoneForAnInactiveOrUnknownClient(t *testing.T) {
	reg := decisiontest.FakeRegistry{"provider-org-a": {ID: "provider-org-a", Active: true, NotifyHosts: []string{"127.0.0.1"}},
		"retired": {ID: "retired", Active: false, NotifyHosts: []string{"127.0.0.1"}}}
	hosts := RegistryHosts(reg)
	if h := hosts("provider-org-a"); len(h) != 1 || h[0] != "127.0.0.1" {
		t.Errorf("active client: %v", h)
	}
	if h := hosts("retired"); h != nil {
		t.Errorf("inactive client: %v", h)
	}
	if h := hosts("nobody"); h != nil {
		t.Errorf("unknown client: %v", h)
	}
}
