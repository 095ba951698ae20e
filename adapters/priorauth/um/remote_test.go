package um_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/fhirwall/fhirwall/adapters/priorauth/um"
)

// Remote shows its breaker as internal/metrics.Breaker wants it (for WatchBreakers); the interface is
// repeated here so that these tests do not build the metrics package.
var _ interface {
	Name() string
	State() gobreaker.State
} = (*um.Remote)(nil)

// fakeUM is a UM system on httptest: answer writes its reply to each request it decodes.
type fakeUM struct {
	srv   *httptest.Server
	calls atomic.Int32
	last  atomic.Pointer[um.Request]
}

func newFakeUM(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, req um.Request)) *fakeUM {
	t.Helper()
	f := &fakeUM{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		var req um.Request
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, "want a POSTed JSON Request", http.StatusBadRequest)
			return
		}
		f.last.Store(&req)
		answer(w, r, req)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// answerAll decides every item asked about with v (a denial with a reason).
func answerAll(v um.Verdict) func(http.ResponseWriter, *http.Request, um.Request) {
	return func(w http.ResponseWriter, _ *http.Request, req um.Request) {
		var res um.Result
		for _, it := range req.Items {
			ir := um.ItemResult{Sequence: it.Sequence, Verdict: v}
			if v == um.Denied {
				ir.Reason = &um.Code{System: um.SystemDecisionReason, Code: "X1", Display: "Not medically necessary"}
			}
			res.Items = append(res.Items, ir)
		}
		_ = json.NewEncoder(w).Encode(res)
	}
}

func answerJSON(status int, body string) func(http.ResponseWriter, *http.Request, um.Request) {
	return func(w http.ResponseWriter, _ *http.Request, _ um.Request) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func newRemote(t *testing.T, url string, timeout time.Duration) *um.Remote {
	t.Helper()
	r, err := um.NewRemote(url, timeout, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func twoItems() um.Request {
	return um.Request{ID: "req-1", Patient: "Patient/member-01", Provider: "Organization/org-a", ClaimType: "professional",
		Expedited: true, Items: []um.Item{item(1, um.SystemCPT, "81162"), item(3, um.SystemCPT, "81163")}}
}

func TestRemotePostsTheRequestAndReturnsAGoodAnswer(t *testing.T) {
	f := newFakeUM(t, func(w http.ResponseWriter, r *http.Request, req um.Request) {
		_, _ = io.WriteString(w, `{"items":[{"sequence":3,"verdict":"denied","reason":{"system":"https://codesystem.x12.org/external/886","code":"X1"}},
			{"sequence":1,"verdict":"approved","drug":true,"note":"fields fhirwall does not know are ignored"}]}`)
	})
	r := newRemote(t, f.srv.URL, time.Second)
	res, err := r.Decide(context.Background(), twoItems())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 2 || res.Items[0].Verdict != um.Denied || res.Items[1].Verdict != um.Approved || !res.Items[1].Drug {
		t.Errorf("answer %+v", res.Items)
	}
	got := f.last.Load()
	if got == nil || got.ID != "req-1" || got.Patient != "Patient/member-01" || !got.Expedited || len(got.Items) != 2 || got.Items[1].Codes[0].Code != "81163" {
		t.Errorf("the UM system was sent %+v, want the whole request", got)
	}
	if r.Name() != um.BreakerName || r.State() != gobreaker.StateClosed {
		t.Errorf("breaker %s %v", r.Name(), r.State())
	}
}

func TestRemoteRefusesWhatItCannotActOn(t *testing.T) {
	reason := `"reason":{"system":"https://codesystem.x12.org/external/886","code":"X1"}`
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter, *http.Request, um.Request)
		kind   error
	}{
		{"server error", answerJSON(http.StatusInternalServerError, "boom"), um.ErrUnavailable},
		{"not found", answerJSON(http.StatusNotFound, ""), um.ErrUnavailable},
		{"created is not ok", answerJSON(http.StatusCreated, `{"items":[]}`), um.ErrUnavailable},
		{"not JSON", answerJSON(http.StatusOK, "<html>"), um.ErrBadAnswer},
		{"data after the JSON", answerJSON(http.StatusOK, `{"items":[{"sequence":1,"verdict":"approved"},{"sequence":3,"verdict":"approved"}]} {}`), um.ErrBadAnswer},
		{"item missing", answerJSON(http.StatusOK, `{"items":[{"sequence":1,"verdict":"approved"}]}`), um.ErrBadAnswer},
		{"no items", answerJSON(http.StatusOK, `{}`), um.ErrBadAnswer},
		{"item not asked", answerJSON(http.StatusOK, `{"items":[{"sequence":1,"verdict":"approved"},{"sequence":3,"verdict":"approved"},{"sequence":2,"verdict":"approved"}]}`), um.ErrBadAnswer},
		{"item twice", answerJSON(http.StatusOK, `{"items":[{"sequence":1,"verdict":"approved"},{"sequence":1,"verdict":"denied",`+reason+`}]}`), um.ErrBadAnswer},
		{"verdict unknown", answerJSON(http.StatusOK, `{"items":[{"sequence":1,"verdict":"approved"},{"sequence":3,"verdict":"A1"}]}`), um.ErrBadAnswer},
		{"verdict referred", answerJSON(http.StatusOK, `{"items":[{"sequence":1,"verdict":"approved"},{"sequence":3,"verdict":"referred"}]}`), um.ErrBadAnswer},
		{"verdict empty", answerJSON(http.StatusOK, `{"items":[{"sequence":1,"verdict":"approved"},{"sequence":3}]}`), um.ErrBadAnswer},
		{"denial without reason", answerJSON(http.StatusOK, `{"items":[{"sequence":1,"verdict":"approved"},{"sequence":3,"verdict":"denied"}]}`), um.ErrBadAnswer},
		{"denial with a reason of another system", answerJSON(http.StatusOK, `{"items":[{"sequence":1,"verdict":"approved"},{"sequence":3,"verdict":"denied","reason":{"system":"http://example.org","code":"X"}}]}`), um.ErrBadAnswer},
		{"larger than 1 MiB", answerJSON(http.StatusOK, `{"items":[{"sequence":1,"verdict":"approved"},{"sequence":3,"verdict":"approved"}],"pad":"`+strings.Repeat("x", 1<<20)+`"}`), um.ErrBadAnswer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeUM(t, tc.answer)
			_, err := newRemote(t, f.srv.URL, time.Second).Decide(context.Background(), twoItems())
			if !errors.Is(err, tc.kind) {
				t.Errorf("error %v, want %v", err, tc.kind)
			}
		})
	}
}

func TestRemoteStatusErrorCarriesTheStatus(t *testing.T) {
	f := newFakeUM(t, answerJSON(http.StatusBadGateway, ""))
	_, err := newRemote(t, f.srv.URL, time.Second).Decide(context.Background(), twoItems())
	var se *um.StatusError
	if !errors.As(err, &se) || se.StatusCode() != http.StatusBadGateway {
		t.Errorf("error %v, want a StatusError 502 (metrics.Kind reads StatusCode)", err)
	}
}

func TestRemoteUnreachableIsUnavailable(t *testing.T) {
	f := newFakeUM(t, answerAll(um.Approved))
	f.srv.Close()
	_, err := newRemote(t, f.srv.URL, time.Second).Decide(context.Background(), twoItems())
	if !errors.Is(err, um.ErrUnavailable) {
		t.Errorf("error %v, want ErrUnavailable", err)
	}
}

func TestRemoteNeverSendsARequestItCannotTellApartItemByItem(t *testing.T) {
	f := newFakeUM(t, answerAll(um.Approved))
	r := newRemote(t, f.srv.URL, time.Second)
	for name, req := range map[string]um.Request{
		"no items":         {ID: "r"},
		"a sequence twice": {ID: "r", Items: []um.Item{item(1, um.SystemCPT, "81162"), item(1, um.SystemCPT, "81163")}},
	} {
		if _, err := r.Decide(context.Background(), req); !errors.Is(err, um.ErrBadRequest) {
			t.Errorf("%s: error %v, want ErrBadRequest", name, err)
		}
	}
	if n := f.calls.Load(); n != 0 {
		t.Errorf("the UM system was called %d times", n)
	}
}

// blockUntilGone holds each call until its client hangs up, telling arrived when it starts waiting.
func blockUntilGone(arrived chan<- struct{}) func(http.ResponseWriter, *http.Request, um.Request) {
	return func(_ http.ResponseWriter, r *http.Request, _ um.Request) {
		if arrived != nil {
			arrived <- struct{}{}
		}
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}
}

func TestRemoteTimeoutIsTheUMSystemsFailure(t *testing.T) {
	f := newFakeUM(t, blockUntilGone(nil))
	r := newRemote(t, f.srv.URL, 50*time.Millisecond)
	for i := range 5 {
		start := time.Now()
		_, err := r.Decide(context.Background(), twoItems())
		if !errors.Is(err, um.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d: error %v, want ErrUnavailable from a deadline", i+1, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("call %d took %v with a 50ms timeout", i+1, d)
		}
	}
	if r.State() != gobreaker.StateOpen {
		t.Errorf("breaker %v after 5 timeouts, want open", r.State())
	}
}

func TestBreakerOpensAfterFiveFailuresAndStopsCalling(t *testing.T) {
	f := newFakeUM(t, answerJSON(http.StatusServiceUnavailable, ""))
	r := newRemote(t, f.srv.URL, time.Second)
	for range 5 {
		if _, err := r.Decide(context.Background(), twoItems()); !errors.Is(err, um.ErrUnavailable) {
			t.Fatalf("error %v, want ErrUnavailable", err)
		}
	}
	if r.State() != gobreaker.StateOpen {
		t.Fatalf("breaker %v after 5 failures, want open", r.State())
	}
	_, err := r.Decide(context.Background(), twoItems())
	if !errors.Is(err, um.ErrUnavailable) || !errors.Is(err, gobreaker.ErrOpenState) {
		t.Errorf("error %v, want ErrUnavailable from the open breaker", err)
	}
	if n := f.calls.Load(); n != 5 {
		t.Errorf("the UM system was called %d times, want 5: an open breaker calls nobody", n)
	}
}

func TestBadAnswersTripTheBreaker(t *testing.T) {
	f := newFakeUM(t, answerJSON(http.StatusOK, `{"items":[{"sequence":1,"verdict":"maybe"}]}`))
	r := newRemote(t, f.srv.URL, time.Second)
	for range 5 {
		_, _ = r.Decide(context.Background(), twoItems())
	}
	if r.State() != gobreaker.StateOpen {
		t.Errorf("breaker %v after 5 bad answers, want open", r.State())
	}
}

func TestCallerHangingUpDoesNotTripTheBreaker(t *testing.T) {
	arrived := make(chan struct{}, 16) // room for the calls no one waits on
	f := newFakeUM(t, func(w http.ResponseWriter, r *http.Request, req um.Request) {
		if req.ID == "good" {
			answerAll(um.Approved)(w, r, req)
			return
		}
		blockUntilGone(arrived)(w, r, req)
	})
	r := newRemote(t, f.srv.URL, 5*time.Second)
	for i := range 6 {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-arrived; cancel() }()
		if _, err := r.Decide(ctx, twoItems()); !errors.Is(err, context.Canceled) {
			t.Fatalf("hang-up %d: error %v, want context.Canceled", i+1, err)
		}
	}
	// A caller's own deadline, shorter than the UM timeout, is the caller's too.
	for range 6 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := r.Decide(ctx, twoItems())
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("caller deadline: error %v", err)
		}
	}
	if r.State() != gobreaker.StateClosed {
		t.Fatalf("breaker %v after 12 callers gone, want closed", r.State())
	}
	good := twoItems()
	good.ID = "good"
	if _, err := r.Decide(context.Background(), good); err != nil {
		t.Errorf("the next caller: %v", err)
	}
}

func TestNewRemoteRefusesBadSettings(t *testing.T) {
	for _, tc := range []struct {
		url     string
		timeout time.Duration
	}{
		{"", time.Second}, {"127.0.0.1:8096/decide", time.Second}, {"ftp://um/decide", time.Second},
		{"http:///decide", time.Second}, {"http://um/decide", -time.Second},
	} {
		if _, err := um.NewRemote(tc.url, tc.timeout, nil); err == nil {
			t.Errorf("NewRemote(%q, %v) accepted", tc.url, tc.timeout)
		}
	}
	if _, err := um.NewRemote("https://um.example/decide", 0, http.DefaultClient); err != nil {
		t.Errorf("NewRemote with the default timeout: %v", err)
	}
}
