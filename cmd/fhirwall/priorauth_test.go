package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/priorauth"
)

const cliTestToken = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

// fakeReviewer decides in the store as the adapter would, without the FHIR server and the notifications.
type fakeReviewer struct{ store *priorauth.MemoryStore }

func (f fakeReviewer) Review(ctx context.Context, id string, in priorauth.ReviewInput) (priorauth.Request, error) {
	r, err := f.store.Get(ctx, id)
	if err != nil {
		return r, err
	}
	next := r
	next.Items = append([]priorauth.ItemDecision(nil), r.Items...)
	for i := range next.Items {
		if next.Items[i].Verdict == priorauth.VerdictPended {
			next.Items[i].Verdict, next.Items[i].Reason, next.Items[i].Rule = in.Verdict, in.Reason, "review"
		}
	}
	next.Status = priorauth.StatusApproved
	if in.Verdict == priorauth.VerdictDenied {
		next.Status = priorauth.StatusDenied
	}
	next.Version, next.DecidedAt, next.DecidedBy = r.Version+1, time.Now(), in.Reviewer
	if err := f.store.Decide(ctx, next); err != nil {
		return priorauth.Request{}, err
	}
	return f.store.Get(ctx, id)
}

// adminServer is the real admin handler on a memory store with one overdue expedited request and one
// standard one, and the token file the CLI reads.
func adminServer(t *testing.T) (url, tokenFile string, store *priorauth.MemoryStore) {
	t.Helper()
	store = priorauth.NewMemoryStore()
	now := time.Now().UTC()
	for _, r := range []priorauth.Request{
		{ID: "pa-cabg", Provider: "Organization/org-a", Patient: "Patient/member-01", Status: priorauth.StatusPended, Version: 1,
			Received: now.Add(-80 * time.Hour), Deadline: now.Add(-8 * time.Hour), Expedited: true,
			Items: []priorauth.ItemDecision{{Sequence: 1, Product: priorauth.Code{Code: "33510"}, Verdict: priorauth.VerdictPended},
				{Sequence: 2, Product: priorauth.Code{Code: "70551"}, Verdict: priorauth.VerdictApproved}}},
		{ID: "pa-b4184", Provider: "Organization/org-b", Patient: "Patient/member-02", Status: priorauth.StatusPended, Version: 1,
			Received: now.Add(-time.Hour), Deadline: now.Add(167 * time.Hour),
			Items: []priorauth.ItemDecision{{Sequence: 1, Product: priorauth.Code{Code: "B4184"}, Verdict: priorauth.VerdictPended}}},
	} {
		if err := store.Insert(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	h, err := priorauth.NewAdmin(fakeReviewer{store}, store, []byte(cliTestToken), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tokenFile = filepath.Join(t.TempDir(), "prior-auth.token")
	if err := os.WriteFile(tokenFile, []byte(cliTestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv.URL, tokenFile, store
}

func TestPriorAuthQueueListsPendedRequestsNearestDeadlineFirst(t *testing.T) {
	url, tokenFile, _ := adminServer(t)
	t.Setenv(envAdminTokenFile, tokenFile) // the default the stack exports
	code, out, err := cli(t, "prior-auth", "queue", "-admin", url)
	if code != 0 || err != nil {
		t.Fatalf("exit %d, %v", code, err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("want a header and two rows:\n%s", out)
	}
	for i, want := range [][]string{
		{"pa-cabg", "yes", "Organization/org-a", "Patient/member-01", "1:33510 pended, 2:70551 approved"},
		{"pa-b4184", "Organization/org-b", "Patient/member-02", "1:B4184 pended"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("row %d lacks %q: %s", i+1, w, lines[i+1])
			}
		}
	}
	if f := strings.Fields(lines[2]); f[3] != "-" || f[4] != "-" {
		t.Errorf("the standard request in time shows overdue/expedited: %s", lines[2])
	}
}

func TestPriorAuthDecideApprovesThroughTheAdminAPI(t *testing.T) {
	url, tokenFile, store := adminServer(t)
	code, out, err := cli(t, "prior-auth", "decide", "-admin", url, "-token-file", tokenFile,
		"-id", "pa-cabg", "-verdict", "approved", "-reviewer", "Dr. Rivera", "-extended")
	if code != 0 || err != nil || !strings.Contains(out, "pa-cabg: approved by Dr. Rivera (version 2)") {
		t.Fatalf("exit %d, %v: %s", code, err, out)
	}
	if r, _ := store.Get(context.Background(), "pa-cabg"); r.Status != priorauth.StatusApproved || r.DecidedBy != "Dr. Rivera" {
		t.Fatalf("stored %s by %s", r.Status, r.DecidedBy)
	}
	code, _, err = cli(t, "prior-auth", "decide", "-admin", url, "-token-file", tokenFile,
		"-id", "pa-cabg", "-verdict", "denied", "-reason-code", "X", "-reviewer", "Dr. Chen")
	if code != 1 || err == nil || !strings.Contains(err.Error(), "409 prior-auth request already decided") {
		t.Fatalf("the second reviewer: exit %d, %v; want 1 and already decided", code, err)
	}
}

func TestPriorAuthDecideDeniesWithTheX12ReasonByDefault(t *testing.T) {
	url, tokenFile, store := adminServer(t)
	code, _, err := cli(t, "prior-auth", "decide", "-admin", url, "-token-file", tokenFile,
		"-id", "pa-b4184", "-verdict", "denied", "-reason-code", "N/A", "-reason-display", "not medically necessary", "-reviewer", "r1")
	if code != 0 || err != nil {
		t.Fatalf("exit %d, %v", code, err)
	}
	r, _ := store.Get(context.Background(), "pa-b4184")
	if got := r.Items[0].Reason; got == nil || *got != (priorauth.Code{System: defaultReasonSystem, Code: "N/A", Display: "not medically necessary"}) {
		t.Fatalf("stored reason %+v", got)
	}
}

func TestPriorAuthShowPrintsTheRequestOrSaysNotFound(t *testing.T) {
	url, tokenFile, _ := adminServer(t)
	code, out, err := cli(t, "prior-auth", "show", "-admin", url, "-token-file", tokenFile, "-id", "pa-cabg")
	var got priorauth.AdminRequest
	if code != 0 || err != nil || json.Unmarshal([]byte(out), &got) != nil || got.ID != "pa-cabg" || !got.Overdue {
		t.Fatalf("exit %d, %v: %s", code, err, out)
	}
	if code, _, err := cli(t, "prior-auth", "show", "-admin", url, "-token-file", tokenFile, "-id", "pa-nope"); code != 1 || err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown id: exit %d, %v", code, err)
	}
}

func TestPriorAuthWithTheWrongTokenSaysWhichFileToUse(t *testing.T) {
	url, _, _ := adminServer(t)
	wrong := filepath.Join(t.TempDir(), "token")
	_ = os.WriteFile(wrong, []byte(strings.Repeat("0", 64)), 0o600)
	code, _, err := cli(t, "prior-auth", "queue", "-admin", url, "-token-file", wrong)
	if code != 1 || err == nil || !strings.Contains(err.Error(), "prior_auth.admin_token_file") || strings.Contains(err.Error(), strings.Repeat("0", 64)) {
		t.Fatalf("exit %d, %v", code, err)
	}
}

func TestPriorAuthUnreachableAdminSaysWhatToCheck(t *testing.T) {
	_, tokenFile, _ := adminServer(t)
	srv := httptest.NewServer(nil)
	url := srv.URL
	srv.Close()
	code, _, err := cli(t, "prior-auth", "queue", "-admin", url, "-token-file", tokenFile)
	if code != 1 || err == nil || !strings.Contains(err.Error(), "is fhirwall-proxy running") {
		t.Fatalf("exit %d, %v", code, err)
	}
}

func TestPriorAuthBadUsageIsExitTwoWithTheFix(t *testing.T) {
	t.Setenv(envAdminTokenFile, "")
	t.Setenv(envJobsDSN, "")
	_, tokenFile, _ := adminServer(t)
	for _, tc := range []struct {
		args []string
		fix  string
	}{
		{[]string{"prior-auth"}, "usage"},
		{[]string{"prior-auth", "approve"}, "usage"},
		{[]string{"prior-auth", "queue"}, "-token-file FILE or $FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE"},
		{[]string{"prior-auth", "queue", "-token-file", "/nonexistent/token"}, "the admin token"},
		{[]string{"prior-auth", "queue", "-token-file", tokenFile, "-admin", "127.0.0.1:9190"}, "want the admin listener's URL"},
		{[]string{"prior-auth", "queue", "-token-file", tokenFile, "extra"}, "unexpected argument"},
		{[]string{"prior-auth", "show", "-token-file", tokenFile}, "-id ID is required"},
		{[]string{"prior-auth", "decide", "-token-file", tokenFile, "-verdict", "approved", "-reviewer", "r"}, "-id ID is required"},
		{[]string{"prior-auth", "decide", "-token-file", tokenFile, "-id", "x", "-verdict", "ok", "-reviewer", "r"}, "-verdict approved or -verdict denied"},
		{[]string{"prior-auth", "decide", "-token-file", tokenFile, "-id", "x", "-verdict", "approved"}, "-reviewer NAME is required"},
		{[]string{"prior-auth", "decide", "-token-file", tokenFile, "-id", "x", "-verdict", "denied", "-reviewer", "r"}, "a denial needs -reason-code"},
		{[]string{"prior-auth", "decide", "-token-file", tokenFile, "-id", "x", "-verdict", "approved", "-reviewer", "r", "-reason-display", "d"}, "need -reason-code"},
		{[]string{"prior-auth", "decide", "-nope"}, "flag provided but not defined"},
		{[]string{"report"}, "fhirwall report prior-auth -year YYYY"},
		{[]string{"report", "prior-auth", "-postgres", "postgres://x"}, "-year YYYY is required"},
		{[]string{"report", "prior-auth", "-year", "2027", "-postgres", "postgres://x", "-format", "csv"}, "want markdown or json"},
		{[]string{"report", "prior-auth", "-year", "2027"}, "-postgres DSN is required"},
		{[]string{"report", "prior-auth", "-year", "2027", "-postgres", "postgres://x", "-rules", "/nonexistent/rules.yaml"}, "-rules FILE names prior_auth.rules_file"},
	} {
		code, _, err := cli(t, tc.args...)
		if code != 2 || err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), tc.fix) {
			t.Errorf("%q: exit %d, %v; want 2 and a one-line message saying %q", tc.args, code, err, tc.fix)
		}
	}
}
