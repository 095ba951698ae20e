//go:build e2e && faults

package faults

// The Prior Authorization API's review queue under a crash, on the real stack: pended requests and their CMS
// deadlines live in PostgreSQL, not in fhirwall-proxy, so a SIGKILL loses none of them; the decisions taken
// after the restart are notified once each (a redelivery, if the outbox makes one, is the same bytes).

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	pa "github.com/fhirwall/fhirwall/test/priorauth"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// paScopes are what a provider organisation's backend asks for: $submit (c on Claim) and its Subscriptions.
var paScopes = []string{"system/Claim.c", "system/Claim.r", "system/Subscription.crd"}

// paBase is the prior-auth API through the standalone proxy (the face that dies with fhirwall-proxy too).
func paBase() string { return stackenv.StandaloneURL + "/prior-auth/fhir" }

// paPost sends one request to the prior-auth API.
func paPost(t *testing.T, method, url, token string, body []byte) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	resp, err := httpClient(t).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: b, elapsed: time.Since(start)}
}

// TestPendedRequestsSurviveAProxyCrash: three pended requests (one expedited) and a full-resource
// Subscription; fhirwall-proxy is killed (SIGKILL) and restarted; the three are still pended with the same
// deadlines; each decision then reaches the listener as exactly one distinct body.
func TestPendedRequestsSurviveAProxyCrash(t *testing.T) {
	evidence.Proves(t, "CMS-PAU-04", "OPS-REPLICA-01")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if resp, err := httpClient(t).Get(paBase() + "/metadata"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the prior-auth API does not answer before the fault: %v", err)
	}
	tok, err := stackauth.Backend(ctx, "provider-org-a", paScopes...)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pa.NewAdmin()
	if err != nil {
		t.Fatal(err)
	}
	run := pa.NewRunID()

	// The subscriber: full-resource, so each decision's body is its own.
	l := pa.NewListener()
	defer l.Close()
	const path = "/notify/faults"
	sub := pa.Subscription{Endpoint: l.URL() + path, PayloadContent: pa.PayloadFullResource, OrgIdentifier: pa.OrgA.NPI}
	a := paPost(t, "POST", paBase()+"/Subscription", tok.AccessToken, sub.JSON())
	var created struct{ ID string }
	if a.status != http.StatusCreated || json.Unmarshal(a.body, &created) != nil || created.ID == "" {
		t.Fatalf("creating the Subscription: %s", a)
	}
	t.Cleanup(func() {
		// A fresh token: the test may outlive the first one.
		if tk, err := stackauth.Backend(context.Background(), "provider-org-a", paScopes...); err == nil {
			if d := paPost(t, "DELETE", paBase()+"/Subscription/"+created.ID, tk.AccessToken, nil); d.status >= 300 {
				t.Errorf("deleting Subscription/%s: %s", created.ID, d)
			}
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	if _, err := l.Wait(wctx, func(ns []pa.Notification) bool {
		return slices.ContainsFunc(ns, func(n pa.Notification) bool { return n.Type == pa.NotificationHandshake })
	}); err != nil {
		wcancel()
		t.Fatalf("no handshake: %v", err)
	}
	wcancel()

	// Three pended requests, one expedited.
	reqs := []pa.Request{
		pa.NewRequest("pa-fault-"+run+"-1", pa.CABG),
		pa.NewRequest("pa-fault-"+run+"-2", pa.EnteralB4184),
		{Template: "homecare", Identifier: "pa-fault-" + run + "-3", Member: pa.Member05, Provider: pa.OrgA,
			Items: []pa.Code{pa.HomeHealth, pa.EnteralB4184}, LevelOfService: "U"},
	}
	claimResponse := map[string]string{} // request identifier → ClaimResponse id
	before := map[string]pa.QueueItem{}
	for _, r := range reqs {
		body, err := r.Bundle()
		if err != nil {
			t.Fatal(err)
		}
		a := paPost(t, "POST", paBase()+"/Claim/$submit", tok.AccessToken, body)
		ans, err := pa.ReadAnswer(a.body)
		d, ok := ans.First()
		if a.status != http.StatusOK || err != nil || !ok || !slices.Contains(d.Codes(), pa.Pended) {
			t.Fatalf("$submit %s: %s; want 200 with A4", r.Identifier, a)
		}
		claimResponse[r.Identifier] = d.ID
		it, found, err := admin.Find(ctx, "pended", r.Identifier)
		if err != nil || !found || it.Deadline.IsZero() {
			t.Fatalf("%s not listed pended with a deadline: %v %v %v", r.Identifier, found, err, it.Raw)
		}
		before[r.Identifier] = it
		t.Logf("%s pended as %s, deadline %s", r.Identifier, it.ID, it.Deadline.Format(time.RFC3339))
	}

	// The crash.
	pid := pidOf(t, "proxy")
	if err := signal(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL proxy: %v", err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = stack(t, "fhirwall", "start-proxy")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if err := stack(t, "fhirwall", "start-proxy"); err != nil {
		t.Fatal(err)
	}
	restarted = true

	// Nothing lost, every deadline as it was.
	for _, r := range reqs {
		was := before[r.Identifier]
		it, found, err := admin.Find(ctx, "pended", r.Identifier)
		switch {
		case err != nil:
			t.Fatal(err)
		case !found:
			t.Errorf("after the restart %s (%s) is no longer listed pended", r.Identifier, was.ID)
		case it.ID != was.ID || !it.Deadline.Equal(was.Deadline):
			t.Errorf("after the restart %s: id %s deadline %v, before %s %v", r.Identifier, it.ID, it.Deadline, was.ID, was.Deadline)
		}
	}

	// Decide them; each decision is notified once (a redelivery carries the same bytes).
	for _, r := range reqs {
		st, b, err := admin.Decide(ctx, before[r.Identifier].ID, pa.Review{Reviewer: "faults-reviewer", Verdict: pa.ReviewApproved})
		if err != nil || st != http.StatusOK {
			t.Errorf("deciding %s after the restart: %d %v %.300s", before[r.Identifier].ID, st, err, b)
		}
	}
	of := func(ns []pa.Notification, crID string) []pa.Notification {
		return pa.Matching(ns, func(n pa.Notification) bool {
			return n.Path == path && n.Type == pa.NotificationEvent && n.Names(crID)
		})
	}
	wctx, wcancel = context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel()
	if _, err := l.Wait(wctx, func(ns []pa.Notification) bool {
		for _, crID := range claimResponse {
			if len(of(ns, crID)) == 0 {
				return false
			}
		}
		return true
	}); err != nil {
		t.Errorf("not every decision was notified: %v", err)
	}
	time.Sleep(5 * time.Second) // room for a redelivery to show
	got := l.Received()
	for ident, crID := range claimResponse {
		ns := of(got, crID)
		distinct := map[string]bool{}
		for _, n := range ns {
			distinct[string(n.Raw)] = true
		}
		if len(distinct) != 1 {
			t.Errorf("%s (ClaimResponse/%s): %d notifications with %d distinct bodies, want one body", ident, crID, len(ns), len(distinct))
		}
		if len(ns) > 1 {
			t.Logf("%s: %d deliveries of the same body (redelivered)", ident, len(ns))
		}
	}
	t.Logf("%d notifications in all", len(got))
}
