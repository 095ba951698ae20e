package priorauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

const adminTestToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

var adminNow = time.Date(2027, 3, 10, 12, 0, 0, 0, time.UTC)

// fakeReviewer records the decisions it is given and answers with the request approved or with err (and the
// request approved, for ErrNotNotified: the adapter's decision stands).
type fakeReviewer struct {
	got   []ReviewInput
	ids   []string
	store Store
	err   error
}

func (f *fakeReviewer) Review(ctx context.Context, id string, in ReviewInput) (Request, error) {
	f.got, f.ids = append(f.got, in), append(f.ids, id)
	if f.err != nil && !errors.Is(f.err, ErrNotNotified) {
		return Request{}, f.err
	}
	r, err := f.store.Get(ctx, id)
	if err != nil {
		return Request{}, err
	}
	r.Status, r.Version, r.DecidedAt, r.DecidedBy = StatusApproved, r.Version+1, adminNow, in.Reviewer
	return r, f.err
}

type adminFixture struct {
	h     http.Handler
	rv    *fakeReviewer
	store *MemoryStore
	logs  *bytes.Buffer
}

// newAdminFixture serves a queue of two pended requests (one past its deadline) and one approved.
func newAdminFixture(t *testing.T) adminFixture {
	t.Helper()
	store := NewMemoryStore()
	for _, r := range []Request{
		{ID: "pa-overdue", Provider: "Organization/org-a", Patient: "Patient/member-01", ClientID: "provider-org-a",
			ClaimIdentifier: "urn:ietf:rfc:3986|urn:uuid:1", Received: adminNow.Add(-80 * time.Hour), Deadline: adminNow.Add(-8 * time.Hour),
			Expedited: true, DeadlineBasis: "levelOfServiceCode", Status: StatusPended, Version: 1,
			Items: []ItemDecision{{Sequence: 1, Product: Code{System: "http://www.ama-assn.org/go/cpt", Code: "33510"}, Verdict: VerdictPended, Rule: "cabg-review"}}},
		{ID: "pa-standard", Provider: "Organization/org-b", Patient: "Patient/member-02", ClientID: "provider-org-b",
			ClaimIdentifier: "urn:ietf:rfc:3986|urn:uuid:2", Received: adminNow.Add(-24 * time.Hour), Deadline: adminNow.Add(144 * time.Hour),
			DeadlineBasis: "standard", Status: StatusPended, Version: 1},
		{ID: "pa-approved", Provider: "Organization/org-a", Patient: "Patient/member-01", Received: adminNow.Add(-24 * time.Hour),
			Deadline: adminNow.Add(144 * time.Hour), Status: StatusApproved, Version: 1, DecidedAt: adminNow.Add(-23 * time.Hour),
			DecidedBy: "rules", ResponseBundle: []byte(`{"resourceType":"Bundle"}`)},
	} {
		if err := store.Insert(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	rv := &fakeReviewer{store: store}
	logs := &bytes.Buffer{}
	h, err := NewAdmin(rv, store, []byte(adminTestToken+"\n"), slog.New(slog.NewTextHandler(logs, nil)), func() time.Time { return adminNow })
	if err != nil {
		t.Fatal(err)
	}
	return adminFixture{h: h, rv: rv, store: store, logs: logs}
}

func (f adminFixture) do(method, path, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminTestToken)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

func adminErrorOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var e AdminError
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
		t.Fatalf("not a JSON error: %q (%v)", rec.Body.String(), err)
	}
	return e.Error
}

func TestAdminRefusesToStartWithAShortTokenOrMissingParts(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	store := NewMemoryStore()
	for _, tc := range []struct {
		name  string
		rv    Reviewer
		store Store
		token string
	}{
		{"31 bytes and a newline", &fakeReviewer{}, store, strings.Repeat("x", 31) + "\n"},
		{"empty token file", &fakeReviewer{}, store, ""},
		{"no reviewer", nil, store, adminTestToken},
		{"no store", &fakeReviewer{}, nil, adminTestToken},
	} {
		if h, err := NewAdmin(tc.rv, tc.store, []byte(tc.token), log, nil); err == nil || h != nil {
			t.Errorf("%s: built a handler", tc.name)
		}
	}
}

func TestAdminWithoutTheTokenIs401WithNoDetail(t *testing.T) {
	f := newAdminFixture(t)
	for _, tc := range []struct{ name, auth, method, path string }{
		{"no header", "", "GET", "/admin/prior-auth/requests"},
		{"wrong token", "Bearer " + strings.Repeat("f", 64), "GET", "/admin/prior-auth/requests"},
		{"the token with a byte missing", "Bearer " + adminTestToken[1:], "GET", "/admin/prior-auth/requests/pa-overdue"},
		{"basic scheme", "Basic " + adminTestToken, "POST", "/admin/prior-auth/requests/pa-overdue/decision"},
		{"an unknown path is not revealed", "", "GET", "/admin/prior-auth/nothing-here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := f.do(tc.method, tc.path, `{"reviewer":"x","verdict":"approved"}`, "Authorization", tc.auth)
			if rec.Code != http.StatusUnauthorized || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") || adminErrorOf(t, rec) != "unauthorized" {
				t.Fatalf("got %d %q %s", rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body)
			}
		})
	}
	if len(f.rv.got) != 0 {
		t.Fatal("a decision got through without the token")
	}
	if strings.Contains(f.logs.String(), strings.Repeat("f", 64)) || strings.Contains(f.logs.String(), adminTestToken[1:]) {
		t.Fatalf("a presented token was logged:\n%s", f.logs)
	}
}

func TestAdminQueueListsPendedRequestsNearestDeadlineFirstWithOverdue(t *testing.T) {
	f := newAdminFixture(t)
	for _, path := range []string{"/admin/prior-auth/requests?status=pended", "/admin/prior-auth/requests"} {
		rec := f.do("GET", path, "")
		var got []AdminRequest
		if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != 200 || err != nil {
			t.Fatalf("%s: %d %v %s", path, rec.Code, err, rec.Body)
		}
		if len(got) != 2 || got[0].ID != "pa-overdue" || !got[0].Overdue || got[1].ID != "pa-standard" || got[1].Overdue {
			t.Fatalf("%s: %+v", path, got)
		}
		if got[0].ClientID != "provider-org-a" || got[0].DeadlineBasis != "levelOfServiceCode" || !got[0].Expedited ||
			len(got[0].Items) != 1 || got[0].Items[0].Product.Code != "33510" || got[1].Items == nil {
			t.Fatalf("%s: the entry lacks fields: %+v", path, got)
		}
	}
	var raw []map[string]any
	_ = json.Unmarshal(f.do("GET", "/admin/prior-auth/requests", "").Body.Bytes(), &raw)
	for _, k := range []string{"id", "claim_identifier", "provider", "patient", "client_id", "received", "deadline",
		"expedited", "deadline_basis", "status", "version", "overdue", "items"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("queue entry has no %q: %v", k, raw[0])
		}
	}
	if rec := f.do("GET", "/admin/prior-auth/requests?status=approved", ""); rec.Code != http.StatusBadRequest {
		t.Fatalf("status=approved: %d", rec.Code)
	}
}

func TestAdminShowsOneRequestOr404(t *testing.T) {
	f := newAdminFixture(t)
	rec := f.do("GET", "/admin/prior-auth/requests/pa-approved", "")
	var got AdminRequest
	if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != 200 || err != nil {
		t.Fatalf("%d %v %s", rec.Code, err, rec.Body)
	}
	if got.Status != StatusApproved || got.DecidedBy != "rules" || got.DecidedAt == nil || got.Overdue || string(got.ResponseBundle) != `{"resourceType":"Bundle"}` {
		t.Fatalf("%+v", got)
	}
	for _, path := range []string{"/admin/prior-auth/requests/pa-unknown", "/admin/prior-auth/elsewhere"} {
		if rec := f.do("GET", path, ""); rec.Code != http.StatusNotFound || adminErrorOf(t, rec) == "" {
			t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
		}
	}
}

func TestAdminDecisionReachesTheReviewerAndIsLoggedWithoutTheToken(t *testing.T) {
	f := newAdminFixture(t)
	rec := f.do("POST", "/admin/prior-auth/requests/pa-overdue/decision",
		`{"reviewer":"Dr. Rivera","verdict":"approved","extended":true,"after_appeal":false}`)
	var got AdminRequest
	if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != 200 || err != nil {
		t.Fatalf("%d %v %s", rec.Code, err, rec.Body)
	}
	if got.ID != "pa-overdue" || got.Status != StatusApproved || got.Version != 2 || got.DecidedBy != "Dr. Rivera" || !got.Overdue {
		t.Fatalf("answer %+v", got)
	}
	want := ReviewInput{Reviewer: "Dr. Rivera", Verdict: VerdictApproved, Extended: true}
	if len(f.rv.got) != 1 || !reflect.DeepEqual(f.rv.got[0], want) || f.rv.ids[0] != "pa-overdue" {
		t.Fatalf("reviewer got %+v %v, want %+v", f.rv.got, f.rv.ids, want)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `reviewer="Dr. Rivera"`) || !strings.Contains(logs, "verdict=A1") || !strings.Contains(logs, "id=pa-overdue") {
		t.Fatalf("the decision is not logged with its reviewer:\n%s", logs)
	}
	if strings.Contains(logs, adminTestToken) {
		t.Fatalf("the token was logged:\n%s", logs)
	}
}

func TestAdminDecisionStoredButNotNotifiedIsAnsweredWithAWarning(t *testing.T) {
	f := newAdminFixture(t)
	f.rv.err = fmt.Errorf("%w: fake: outbox down", ErrNotNotified)
	rec := f.do("POST", "/admin/prior-auth/requests/pa-standard/decision", `{"reviewer":"r1","verdict":"approved"}`)
	var got AdminRequest
	if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != 200 || err != nil {
		t.Fatalf("%d %v %s", rec.Code, err, rec.Body)
	}
	if got.Status != StatusApproved || got.Version != 2 || !strings.Contains(got.Warning, "not notified") || strings.Contains(got.Warning, "outbox") {
		t.Fatalf("%+v", got)
	}
}

func TestAdminDecisionBodiesAndTheirAnswers(t *testing.T) {
	reason := &Code{System: "https://codesystem.x12.org/external/886", Code: "N/A", Display: "not medically necessary"}
	for _, tc := range []struct {
		name      string
		body      string
		reviewErr error
		status    int
		want      *ReviewInput // what the reviewer gets when the body passes
	}{
		{"a denial with its reason", `{"reviewer":"r1","verdict":"denied","reason":{"system":"https://codesystem.x12.org/external/886","code":"N/A","display":"not medically necessary"}}`,
			nil, 200, &ReviewInput{Reviewer: "r1", Verdict: VerdictDenied, Reason: reason}},
		{"items one by one, a denied one taking the decision's reason", `{"reviewer":"r1","reason":{"system":"https://codesystem.x12.org/external/886","code":"N/A","display":"not medically necessary"},"items":[{"sequence":1,"verdict":"approved"},{"sequence":2,"verdict":"A3"}]}`,
			nil, 200, &ReviewInput{Reviewer: "r1", Reason: reason, Items: []ItemDecision{
				{Sequence: 1, Verdict: VerdictApproved, Rule: "review"}, {Sequence: 2, Verdict: VerdictDenied, Reason: reason, Rule: "review"}}}},
		{"approved after appeal, X12 code as verdict", `{"reviewer":"r1","verdict":"A1","after_appeal":true}`,
			nil, 200, &ReviewInput{Reviewer: "r1", Verdict: VerdictApproved, AfterAppeal: true}},
		{"a denial without a reason", `{"reviewer":"r1","verdict":"denied"}`, nil, 422, nil},
		{"an item denied without any reason", `{"reviewer":"r1","items":[{"sequence":1,"verdict":"denied"}]}`, nil, 422, nil},
		{"an unknown verdict", `{"reviewer":"r1","verdict":"maybe"}`, nil, 400, nil},
		{"no verdict and no items", `{"reviewer":"r1"}`, nil, 400, nil},
		{"no reviewer", `{"verdict":"approved"}`, nil, 400, nil},
		{"a reviewer with a newline", `{"reviewer":"r1\nverdict=A3","verdict":"approved"}`, nil, 400, nil},
		{"an unknown field", `{"reviewer":"r1","verdict":"approved","urgent":true}`, nil, 400, nil},
		{"not JSON", `verdict=approved`, nil, 400, nil},
		{"two JSON values", `{"reviewer":"r1","verdict":"approved"}{"reviewer":"r2","verdict":"denied"}`, nil, 400, nil},
		{"a reason without a code", `{"reviewer":"r1","verdict":"denied","reason":{"system":"s"}}`, nil, 400, nil},
		{"an item twice", `{"reviewer":"r1","items":[{"sequence":1,"verdict":"approved"},{"sequence":1,"verdict":"approved"}]}`, nil, 400, nil},
		{"an item sequence 0", `{"reviewer":"r1","items":[{"sequence":0,"verdict":"approved"}]}`, nil, 400, nil},
		{"more than 64 KiB", `{"reviewer":"r1","verdict":"approved","reason":{"system":"s","code":"` + strings.Repeat("x", 65<<10) + `"}}`, nil, 400, nil},
		{"an unknown request", `{"reviewer":"r1","verdict":"approved"}`, ErrNotFound, 404, nil},
		{"a request already decided", `{"reviewer":"r1","verdict":"approved"}`, fmt.Errorf("decide: %w", ErrAlreadyDecided), 409, nil},
		{"a decision the request cannot take", `{"reviewer":"r1","items":[{"sequence":9,"verdict":"approved"}]}`, fmt.Errorf("%w: item 9 is not a pended item of the request", ErrInvalidReview), 422, nil},
		{"a denial the adapter finds without a reason", `{"reviewer":"r1","verdict":"denied","reason":{"system":"s","code":"c"}}`, ErrReasonRequired, 422, nil},
		{"the store failing", `{"reviewer":"r1","verdict":"approved"}`, errors.New("fake: connection refused to 10.0.0.7"), 500, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newAdminFixture(t)
			f.rv.err = tc.reviewErr
			rec := f.do("POST", "/admin/prior-auth/requests/pa-overdue/decision", tc.body)
			if rec.Code != tc.status {
				t.Fatalf("got %d %s, want %d", rec.Code, rec.Body, tc.status)
			}
			if rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("content type %q", rec.Header().Get("Content-Type"))
			}
			if tc.status != 200 {
				if msg := adminErrorOf(t, rec); strings.Contains(msg, "10.0.0.7") || len(msg) > 300 {
					t.Fatalf("the error says too much: %q", msg)
				}
			}
			switch {
			case tc.want != nil && (len(f.rv.got) != 1 || !reflect.DeepEqual(f.rv.got[0], *tc.want)):
				t.Fatalf("reviewer got %+v, want %+v", f.rv.got, *tc.want)
			case tc.want == nil && tc.reviewErr == nil && len(f.rv.got) != 0:
				t.Fatalf("a refused body reached the reviewer: %+v", f.rv.got)
			}
		})
	}
}
