//go:build e2e

package priorauth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/priorauth/um"
	"github.com/fhirwall/fhirwall/internal/evidence"
	pa "github.com/fhirwall/fhirwall/test/priorauth"
)

// TestApprovalIsA1WithAnAuthorizationNumber: an MRI of the brain (CPT 70551) is approved at once: a PAS
// response Bundle whose ClaimResponse (first) says A1 with a certification number on its item; the Claim is
// on the FHIR server; the audit record says approved.
func TestApprovalIsA1WithAnAuthorizationNumber(t *testing.T) {
	evidence.Proves(t, "CMS-PAU-01", "CMS-PAU-02", "PAS-01", "AUD-01")
	stackReady(t)
	var audit []expectation
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			tok := provider(t, "provider-org-a")
			s := mustSubmit(t, m, tok, pa.NewRequest(id(m, "approve"), pa.MRIBrain), pa.Approved)
			audit = append(audit, expectation{m.name, s.a, "approved", "provider-org-a"})
			for _, it := range s.decision.Items {
				if it.Number == "" {
					t.Errorf("item %d approved without a certification number (reviewAction.number): %s", it.Sequence, s.a.body)
				}
			}
			if n := storedClaims(t, s.req); n != 1 {
				t.Errorf("HAPI holds %d Claims with identifier %s, want 1", n, s.req.ClaimIdentifier())
			}
		})
	}
	t.Run("audit", func(t *testing.T) { checkAudit(t, audit) })
}

// TestDenialCarriesASpecificReason: HCPCS B4185 is denied by the rules: A3 with an X12 886 reasonCode
// (CMS-0057-F: a specific reason for every denial); the audit record says denied.
func TestDenialCarriesASpecificReason(t *testing.T) {
	evidence.Proves(t, "CMS-PAU-03", "CMS-PAU-02", "PAS-01")
	stackReady(t)
	var audit []expectation
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			tok := provider(t, "provider-org-a")
			s := mustSubmit(t, m, tok, pa.NewRequest(id(m, "deny"), pa.EnteralB4185), pa.Denied)
			audit = append(audit, expectation{m.name, s.a, "denied", "provider-org-a"})
			for _, it := range s.decision.Items {
				if !slices.ContainsFunc(it.Reasons, func(r string) bool { return strings.HasPrefix(r, pa.X12ReasonCode+"|") }) {
					t.Errorf("item %d denied without an X12 886 reasonCode (got %v): %s", it.Sequence, it.Reasons, s.a.body)
				}
			}
		})
	}
	t.Run("audit", func(t *testing.T) { checkAudit(t, audit) })
}

// subscribe creates a rest-hook Subscription of org-a's decisions to the listener (path names it), checks the
// 201 (status requested), waits for the handshake and for GET to show it active; it is deleted when t ends.
func subscribe(t *testing.T, m mode, tok string, l *pa.Listener, path, payload, header string) string {
	t.Helper()
	sub := pa.Subscription{Endpoint: l.URL() + path, PayloadContent: payload, OrgIdentifier: pa.OrgA.NPI, Headers: []string{header}}
	a := send(t, "POST", m.base+"/Subscription", tok, nil, sub.JSON())
	var created struct {
		ResourceType, ID, Status string
	}
	if a.status != http.StatusCreated || json.Unmarshal(a.body, &created) != nil || created.ResourceType != "Subscription" || created.ID == "" {
		t.Fatalf("creating a %s Subscription: %s, want 201 and the Subscription", payload, a)
	}
	if created.Status != "requested" {
		t.Errorf("created Subscription status %q, want requested", created.Status)
	}
	sid := created.ID
	t.Cleanup(func() {
		tok := provider(t, "provider-org-a") // the case may have outlived its token
		d := send(t, "DELETE", m.base+"/Subscription/"+sid, tok, nil, nil)
		if d.status != http.StatusOK && d.status != http.StatusNoContent {
			t.Errorf("deleting Subscription/%s: %s", sid, d)
		}
		if g := send(t, "GET", m.base+"/Subscription/"+sid, tok, nil, nil); g.status != http.StatusNotFound && g.status != http.StatusGone {
			t.Errorf("Subscription/%s after DELETE: %s, want 404 or 410", sid, g)
		}
	})
	c, cancel := context.WithTimeout(ctx(t), 60*time.Second)
	defer cancel()
	got, err := l.Wait(c, func(ns []pa.Notification) bool {
		return len(pa.Matching(ns, func(n pa.Notification) bool { return n.Path == path && n.Type == pa.NotificationHandshake })) > 0
	})
	if err != nil {
		t.Fatalf("no handshake for Subscription/%s at %s: %v", sid, path, err)
	}
	for _, n := range pa.Matching(got, func(n pa.Notification) bool { return n.Path == path && n.Type == pa.NotificationHandshake }) {
		checkNotificationShape(t, "handshake", n, header)
		if !n.OfSubscription(sid) {
			t.Errorf("handshake names subscription %q, want Subscription/%s", n.Subscription, sid)
		}
		if n.Status != "requested" {
			t.Errorf("handshake status %q, want requested", n.Status)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		g := send(t, "GET", m.base+"/Subscription/"+sid, tok, nil, nil)
		var read struct{ Status string }
		if g.status == http.StatusOK && json.Unmarshal(g.body, &read) == nil && read.Status == "active" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Subscription/%s not active 30 s after its handshake: %s", sid, g)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return sid
}

// checkNotificationShape: a history Bundle, every entry with request and response (Backport R4, as Inferno
// checks it), and the channel header the Subscription asked for.
func checkNotificationShape(t *testing.T, what string, n pa.Notification, header string) {
	t.Helper()
	if n.Problem != "" {
		t.Errorf("%s: %s: %.500s", what, n.Problem, n.Raw)
	}
	if n.BundleType != "history" {
		t.Errorf("%s: Bundle type %q, want history", what, n.BundleType)
	}
	if n.EntriesWithoutRequestResponse > 0 {
		t.Errorf("%s: %d entries without request or response: %.500s", what, n.EntriesWithoutRequestResponse, n.Raw)
	}
	name, value, _ := strings.Cut(header, ":")
	if got := n.Header.Get(name); got != strings.TrimSpace(value) {
		t.Errorf("%s: header %s %q, want the Subscription's channel.header %q", what, name, got, strings.TrimSpace(value))
	}
}

// events waits for the event notifications at path that name the ClaimResponse, until there is one, then
// a moment longer so a second one would show; it returns them all.
func events(t *testing.T, l *pa.Listener, path, claimResponseID string) []pa.Notification {
	t.Helper()
	of := func(ns []pa.Notification) []pa.Notification {
		return pa.Matching(ns, func(n pa.Notification) bool {
			return n.Path == path && n.Type == pa.NotificationEvent && n.Names(claimResponseID)
		})
	}
	c, cancel := context.WithTimeout(ctx(t), 90*time.Second)
	defer cancel()
	if _, err := l.Wait(c, func(ns []pa.Notification) bool { return len(of(ns)) > 0 }); err != nil {
		t.Fatalf("no event notification at %s naming ClaimResponse/%s: %v", path, claimResponseID, err)
	}
	// A duplicate (a redelivery) would come within the first retry's backoff (1 s in the stack's config).
	time.Sleep(3 * time.Second)
	return of(l.Received())
}

// checkPended checks the admin API's view of a pended request: listed, expedited or not, with the CMS
// deadline (72 h or 7 days) from its receipt, which happened between sent and answered.
func checkPended(t *testing.T, r pa.Request, expedited bool, sent, answered time.Time) pa.QueueItem {
	t.Helper()
	it := queued(t, "pended", r)
	want := 7 * 24 * time.Hour
	if expedited {
		want = 72 * time.Hour
	}
	if it.Deadline.IsZero() {
		t.Errorf("%s is listed without a deadline: %v", r.Identifier, it.Raw)
		return it
	}
	if !it.Received.IsZero() {
		if got := it.Deadline.Sub(it.Received); got != want {
			t.Errorf("%s: deadline %v after receipt, want %v (expedited %v)", r.Identifier, got, want, expedited)
		}
	}
	if it.Deadline.Before(sent.Add(want).Add(-time.Second)) || it.Deadline.After(answered.Add(want).Add(time.Second)) {
		t.Errorf("%s: deadline %v, want %v after the submission (%v .. %v)", r.Identifier, it.Deadline, want, sent, answered)
	}
	if _, listed := it.Raw["expedited"]; listed && it.Expedited != expedited {
		t.Errorf("%s: expedited %v, want %v", r.Identifier, it.Expedited, expedited)
	}
	return it
}

func randomHex() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestPendedRequestDecidedByAReviewerNotifiesTheSubscriber: org-a subscribes (id-only and full-resource,
// each with its handshake), submits a CABG (CPT 33510, standard) and an expedited home-care request
// (levelOfServiceCode U, HCPCS B4184 pended) → A4 both; the admin API lists them with their deadlines (7 days,
// 72 h); a reviewer approves the first through the admin API and the second through the CLI (standalone) or
// the admin API (envoy); each subscription gets exactly one event notification per decision, id-only naming
// the ClaimResponse, full-resource carrying the PAS response Bundle with A1; deciding again is a 409;
// $inquire now answers A1.
func TestPendedRequestDecidedByAReviewerNotifiesTheSubscriber(t *testing.T) {
	evidence.Proves(t, "CMS-PAU-02", "CMS-PAU-04", "PAS-03")
	stackReady(t)
	var audit []expectation
	var subscriptions []string
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			tok := provider(t, "provider-org-a")
			l := pa.NewListener()
			t.Cleanup(l.Close)
			header := "Authorization: Bearer e2e-" + randomHex()
			idOnlyPath, fullPath := "/notify/"+m.name+"/id-only", "/notify/"+m.name+"/full-resource"
			subscriptions = append(subscriptions,
				subscribe(t, m, tok, l, idOnlyPath, pa.PayloadIDOnly, header),
				subscribe(t, m, tok, l, fullPath, pa.PayloadFullResource, header))

			standard := pa.NewRequest(id(m, "pended-standard"), pa.CABG)
			expedited := pa.Request{Template: "homecare", Identifier: id(m, "pended-expedited"), Member: pa.Member05, Provider: pa.OrgA,
				Items: []pa.Code{pa.HomeHealth, pa.EnteralB4184}, LevelOfService: "U"}
			decideLeftovers(t, &standard, &expedited)

			sent := time.Now()
			s1 := submit(t, m, tok, standard)
			answered := time.Now()
			if s1.a.status != http.StatusOK || !slices.Contains(s1.decision.Codes(), pa.Pended) {
				t.Fatalf("$submit of a CABG: %s; want 200 with A4", s1.a)
			}
			audit = append(audit, expectation{m.name, s1.a, "pended", "provider-org-a"})
			it1 := checkPended(t, standard, false, sent, answered)
			if it1.ID != s1.decision.RequestID {
				t.Errorf("the queue lists %s as %s, its ClaimResponse names request %s", standard.Identifier, it1.ID, s1.decision.RequestID)
			}

			sent = time.Now()
			s2 := submit(t, m, tok, expedited)
			answered = time.Now()
			if s2.a.status != http.StatusOK || !slices.Contains(s2.decision.Codes(), pa.Pended) {
				t.Fatalf("$submit of an expedited home-care request: %s; want 200 with A4 on B4184", s2.a)
			}
			audit = append(audit, expectation{m.name, s2.a, "pended", "provider-org-a"})
			it2 := checkPended(t, expedited, true, sent, answered)

			// The reviewer approves the standard one through the admin API.
			st, b, err := admin(t).Decide(ctx(t), it1.ID, pa.Review{Reviewer: "e2e-reviewer", Verdict: pa.ReviewApproved})
			if err != nil || st != http.StatusOK {
				t.Fatalf("deciding %s through the admin API: %d %v %.300s", it1.ID, st, err, b)
			}
			// ... and the expedited one through the CLI once, the admin API in the other mode.
			if m.name == "standalone" {
				out, err := pa.CLIDecide(ctx(t), it2.ID, "e2e-reviewer", pa.ReviewApproved)
				if err != nil {
					t.Fatalf("fhirwall prior-auth decide %s: %v\n%s", it2.ID, err, out)
				}
				t.Logf("fhirwall prior-auth decide: %s", bytes.TrimSpace(out))
			} else if st, b, err := admin(t).Decide(ctx(t), it2.ID, pa.Review{Reviewer: "e2e-reviewer", Verdict: pa.ReviewApproved}); err != nil || st != http.StatusOK {
				t.Fatalf("deciding %s through the admin API: %d %v %.300s", it2.ID, st, err, b)
			}
			// Deciding again: one decision per request.
			if st, b, err := admin(t).Decide(ctx(t), it1.ID, pa.Review{Reviewer: "e2e-second-reviewer", Verdict: pa.ReviewApproved}); err != nil || st != http.StatusConflict {
				t.Errorf("deciding %s again: %d %v %.300s, want 409", it1.ID, st, err, b)
			}
			for _, it := range []pa.QueueItem{it1, it2} {
				got, st, err := admin(t).Get(ctx(t), it.ID)
				if err != nil || st != http.StatusOK || got.Status != "approved" {
					t.Errorf("request %s after the review: %d %v status %q, want approved", it.ID, st, err, got.Status)
				}
			}

			// The notifications: one per decision and subscription.
			for _, s := range []submission{s1, s2} {
				crID := s.decision.ID
				if crID == "" {
					t.Fatalf("the $submit answer's ClaimResponse of %s has no id: %s", s.req.Identifier, s.a.body)
				}
				idOnly := events(t, l, idOnlyPath, crID)
				if len(idOnly) != 1 {
					t.Errorf("%s: %d id-only event notifications naming ClaimResponse/%s, want 1", s.req.Identifier, len(idOnly), crID)
				}
				for _, n := range idOnly {
					checkNotificationShape(t, "id-only event notification", n, header)
					if !slices.ContainsFunc(n.Focus, func(f string) bool { return strings.HasSuffix(f, "ClaimResponse/"+crID) }) {
						t.Errorf("id-only notification focus %v, want ClaimResponse/%s", n.Focus, crID)
					}
					if len(n.Resources) > 0 {
						t.Errorf("an id-only notification carries %d resources: %.500s", len(n.Resources), n.Raw)
					}
				}
				full := events(t, l, fullPath, crID)
				if len(full) != 1 {
					t.Errorf("%s: %d full-resource event notifications naming ClaimResponse/%s, want 1", s.req.Identifier, len(full), crID)
				}
				for _, n := range full {
					checkNotificationShape(t, "full-resource event notification", n, header)
					bundles := n.ResponseBundles()
					if len(bundles) != 1 {
						t.Errorf("a full-resource notification carries %d PAS response Bundles, want 1: %.500s", len(bundles), n.Raw)
						continue
					}
					d := checkResponse(t, "full-resource notification's response Bundle", pa.ProfileResponseBundle, mustJSON(bundles[0]), true)
					if d.ID != crID || !d.All(pa.Approved) {
						t.Errorf("the notified response Bundle: ClaimResponse/%s %v, want ClaimResponse/%s all A1", d.ID, d.Codes(), crID)
					}
				}
			}

			// $inquire by the submitter: the current decision, A1 after the review.
			for _, r := range []pa.Request{standard, expedited} {
				a := inquire(t, m, tok, r)
				if a.status != http.StatusOK {
					t.Errorf("$inquire of %s by its submitter: %s", r.Identifier, a)
					continue
				}
				d := checkResponse(t, "$inquire answer "+r.Identifier, pa.ProfileInquiryResponseBundle, a.body, false)
				if !d.All(pa.Approved) {
					t.Errorf("$inquire of %s after the review: %v, want A1 on every item", r.Identifier, d.Codes())
				}
			}
		})
	}
	t.Run("audit", func(t *testing.T) {
		checkAudit(t, audit)
		checkDeliveriesAudited(t, subscriptions)
	})
}

// TestInquireIsTheSubmittersAlone: org-a's approved request answers org-a's $inquire with A1; org-b asking
// for the same Claim identifier gets the 404 of a Claim that does not exist, byte for byte.
func TestInquireIsTheSubmittersAlone(t *testing.T) {
	evidence.Proves(t, "PAS-04", "CMS-PAU-06")
	stackReady(t)
	var audit []expectation
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			a, b := provider(t, "provider-org-a"), provider(t, "provider-org-b")
			s := mustSubmit(t, m, a, pa.NewRequest(id(m, "inquire"), pa.MRIBrain), pa.Approved)
			got := inquire(t, m, a, s.req)
			audit = append(audit, expectation{m.name, got, "approved", "provider-org-a"})
			if got.status != http.StatusOK {
				t.Fatalf("$inquire by the submitter: %s", got)
			}
			d := checkResponse(t, "$inquire answer", pa.ProfileInquiryResponseBundle, got.body, false)
			if !d.All(pa.Approved) {
				t.Errorf("$inquire: %v, want A1", d.Codes())
			}

			asB := s.req
			asB.Provider = pa.OrgB
			other := inquire(t, m, b, asB)
			audit = append(audit, expectation{m.name, other, outcomeNotFound, "provider-org-b"})
			unknown := pa.NewRequest(id(m, "inquire-never-submitted"), pa.MRIBrain)
			unknown.Provider = pa.OrgB
			missing := inquire(t, m, b, unknown)
			if missing.status != http.StatusNotFound || !pa.IsOperationOutcome(missing.body) {
				t.Errorf("$inquire of a Claim never submitted: %s, want 404 OperationOutcome", missing)
			}
			if other.status != http.StatusNotFound || !bytes.Equal(other.body, missing.body) {
				t.Errorf("org-b's $inquire of org-a's Claim: %s; want the 404 of an unknown Claim: %s", other, missing)
			}
			if bytes.Contains(other.body, []byte(s.req.Identifier)) || bytes.Contains(other.body, []byte(pa.Member05.Number)) {
				t.Errorf("org-b's refusal names the request or the member: %s", other.body)
			}
		})
	}
	t.Run("audit", func(t *testing.T) { checkAudit(t, audit) })
}

// TestMalformedBundleIsRefusedAndNothingStored: Inferno's nonconformant Bundle ("entry": []) and a Claim with
// use=claim are refused with 400 and an OperationOutcome; neither the FHIR server nor the review queue holds
// anything of them.
func TestMalformedBundleIsRefusedAndNothingStored(t *testing.T) {
	evidence.Proves(t, "PAS-02")
	stackReady(t)
	var audit []expectation
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			tok := provider(t, "provider-org-a")
			empty, err := pa.Nonconformant(id(m, "empty"))
			if err != nil {
				t.Fatal(err)
			}
			useClaim := pa.NewRequest(id(m, "use-claim"), pa.MRIBrain)
			useClaim.Use = "claim"
			wrongUse, err := useClaim.Bundle()
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name string
				body []byte
			}{{`"entry": []`, empty}, {"use=claim", wrongUse}} {
				invalid(t, c.name, pa.ProfileRequestBundle, c.body)
				a := send(t, "POST", m.base+"/Claim/$submit", tok, nil, c.body)
				audit = append(audit, expectation{m.name, a, outcomeInvalid, "provider-org-a"})
				if a.status != http.StatusBadRequest || !pa.IsOperationOutcome(a.body) {
					t.Errorf("$submit of a Bundle with %s: %s, want 400 OperationOutcome", c.name, a)
				}
				if bytes.Contains(a.body, []byte(`"ClaimResponse"`)) {
					t.Errorf("$submit of a Bundle with %s answered a ClaimResponse: %s", c.name, a.body)
				}
			}
			if a := send(t, "POST", m.base+"/Claim/$inquire", tok, nil, empty); a.status < 400 || !pa.IsOperationOutcome(a.body) {
				t.Errorf("$inquire of a Bundle with \"entry\": []: %s, want 4xx OperationOutcome", a)
			}
			if n := storedClaims(t, useClaim); n != 0 {
				t.Errorf("HAPI holds %d Claims of the refused use=claim Bundle", n)
			}
			items, err := admin(t).List(ctx(t), "")
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range items {
				if pa.Contains(it.Raw, useClaim.Identifier) || pa.Contains(it.Raw, id(m, "empty")) {
					t.Errorf("the review queue holds a refused request: %v", it.Raw)
				}
			}
		})
	}
	t.Run("audit", func(t *testing.T) { checkAudit(t, audit) })
}

// TestUMDownPendsAndUMUpDecides: a genetic test (CPT 81162) is referred to the payer's UM system. With
// nothing listening on its address it is pended (A4, in the queue), never approved; with the fake UM
// answering approved it is approved (A1), once the breaker lets calls through again.
func TestUMDownPendsAndUMUpDecides(t *testing.T) {
	evidence.Proves(t, "PAS-05")
	stackReady(t)
	var audit []expectation
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			tok := provider(t, "provider-org-a")
			if !pa.UMDown(pa.UMAddr) {
				t.Fatalf("something listens on %s, the UM address of the stack's config: the case needs the UM down", pa.UMAddr)
			}
			down := pa.NewRequest(id(m, "um-down"), pa.GeneticTest)
			decideLeftovers(t, &down)
			s := mustSubmit(t, m, tok, down, pa.Pended)
			audit = append(audit, expectation{m.name, s.a, "pended", "provider-org-a"})
			queued(t, "pended", down)

			fake, err := pa.StartFakeUM(pa.UMAddr, um.Approved)
			if err != nil {
				t.Fatal(err) // pa.ErrUMPortBusy: another process took the UM's port meanwhile
			}
			defer fake.Close()
			// The UM client's breaker may still be open from the calls that failed: a new request every 2 s
			// until the UM is asked again (each pended attempt is approved by decideLeftovers when t ends).
			deadline := time.Now().Add(90 * time.Second)
			for attempt := 1; ; attempt++ {
				up := pa.NewRequest(id(m, "um-up-"+strconv.Itoa(attempt)), pa.GeneticTest)
				decideLeftovers(t, &up)
				s := submit(t, m, tok, up)
				if s.a.status != http.StatusOK {
					t.Fatalf("$submit with the UM up: %s", s.a)
				}
				if s.decision.All(pa.Approved) {
					audit = append(audit, expectation{m.name, s.a, "approved", "provider-org-a"})
					break
				}
				if !s.decision.All(pa.Pended) {
					t.Fatalf("$submit with the UM up answering approved: %v, want A1 (or A4 while the breaker is open)", s.decision.Codes())
				}
				if time.Now().After(deadline) {
					t.Fatalf("still pended %d attempts after the UM came up", attempt)
				}
				time.Sleep(2 * time.Second)
			}
			asked := fake.Asked()
			if !slices.ContainsFunc(asked, func(r um.Request) bool {
				return slices.ContainsFunc(r.Items, func(it um.Item) bool {
					return slices.ContainsFunc(it.Codes, func(c um.Code) bool { return c.Code == pa.GeneticTest.Code })
				})
			}) {
				t.Errorf("the fake UM was never asked about %s: %+v", pa.GeneticTest.Code, asked)
			}
		})
	}
	t.Run("audit", func(t *testing.T) { checkAudit(t, audit) })
}

// TestMembersAndOtherProvidersAreRefused: a member's token is refused (403): members see their prior auths
// through Patient Access. org-b submitting a Claim that names org-a as the requesting provider is refused
// (403), and nothing of it is stored.
func TestMembersAndOtherProvidersAreRefused(t *testing.T) {
	evidence.Proves(t, "CMS-PAU-06")
	stackReady(t)
	var audit []expectation
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			mt, b := member(t), provider(t, "provider-org-b")
			r := pa.NewRequest(id(m, "member"), pa.MRIBrain)
			body, err := r.Bundle()
			if err != nil {
				t.Fatal(err)
			}
			a := send(t, "POST", m.base+"/Claim/$submit", mt, nil, body)
			audit = append(audit, expectation{m.name, a, "", "patient-app"})
			if a.status != http.StatusForbidden || !pa.IsOperationOutcome(a.body) {
				t.Errorf("a member's $submit: %s, want 403 OperationOutcome", a)
			}
			sub := pa.Subscription{Endpoint: "http://127.0.0.1:9/never", PayloadContent: pa.PayloadIDOnly, OrgIdentifier: pa.OrgA.NPI}
			if a := send(t, "POST", m.base+"/Subscription", mt, nil, sub.JSON()); a.status != http.StatusForbidden {
				t.Errorf("a member's Subscription: %s, want 403", a)
			}

			forA := pa.NewRequest(id(m, "org-b-for-org-a"), pa.MRIBrain)
			body, err = forA.Bundle()
			if err != nil {
				t.Fatal(err)
			}
			validate(t, "org-b's request naming org-a", pa.ProfileRequestBundle, body)
			a = send(t, "POST", m.base+"/Claim/$submit", b, nil, body)
			audit = append(audit, expectation{m.name, a, outcomeNotSubmitter, "provider-org-b"})
			if a.status != http.StatusForbidden || !pa.IsOperationOutcome(a.body) {
				t.Errorf("org-b submitting a Claim naming org-a: %s, want 403 OperationOutcome", a)
			}
			for _, x := range []pa.Request{r, forA} {
				if n := storedClaims(t, x); n != 0 {
					t.Errorf("HAPI holds %d Claims of the refused %s", n, x.Identifier)
				}
			}
		})
	}
	t.Run("audit", func(t *testing.T) { checkAudit(t, audit) })
}

// TestClinicianSubmitsForHisOrganisation: dr-smith (Practitioner/pract-01 at org-a) in the provider app,
// with user/ scopes, submits a request naming org-a: approved like a backend's.
func TestClinicianSubmitsForHisOrganisation(t *testing.T) {
	evidence.Proves(t, "CMS-PAU-01", "CMS-PAU-06")
	stackReady(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			tok := clinician(t)
			mustSubmit(t, m, tok, pa.NewRequest(id(m, "clinician"), pa.MRIBrain), pa.Approved)
		})
	}
}
