package profilevalidator

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

const pasRequestBundle = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-request-bundle"

const (
	outcomeValid   = `{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational","diagnostics":"No issues detected during validation"}]}`
	outcomeInvalid = `{"resourceType":"OperationOutcome","issue":[` +
		`{"severity":"error","code":"processing","diagnostics":"Bundle.entry: minimum required = 1"},` +
		`{"severity":"fatal","code":"structure","diagnostics":"cannot parse"},` +
		`{"severity":"warning","code":"processing","diagnostics":"CodeSystem is unknown"}]}`
)

// fakeValidator stands in for the validator service: it answers every call with status and body, after
// delay, and records what it was asked.
type fakeValidator struct {
	status int
	body   string
	delay  time.Duration

	calls       atomic.Int32
	lastQuery   atomic.Value // the profile parameter
	lastType    atomic.Value
	lastPayload atomic.Value
}

func (f *fakeValidator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	b, _ := io.ReadAll(r.Body)
	f.lastQuery.Store(r.URL.Query().Get("profile"))
	f.lastType.Store(r.Header.Get("Content-Type"))
	f.lastPayload.Store(string(b))
	if r.Method != http.MethodPost || r.URL.Path != "/validate" {
		http.Error(w, "wrong route", http.StatusNotFound)
		return
	}
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(f.status)
	io.WriteString(w, f.body)
}

func newFake(t *testing.T, f *fakeValidator, timeout time.Duration) *Client {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := New(Settings{URL: srv.URL, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestValidResourceHasNoErrorsAndKeepsTheOutcome(t *testing.T) {
	f := &fakeValidator{status: 200, body: outcomeValid}
	c := newFake(t, f, time.Second)
	r, err := c.Validate(context.Background(), pasRequestBundle+"|2.0.1", []byte(`{"resourceType":"Bundle"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Valid || r.Errors != 0 || string(r.Outcome) != outcomeValid {
		t.Fatalf("got %+v", r)
	}
	if got := f.lastQuery.Load(); got != pasRequestBundle+"|2.0.1" {
		t.Errorf("profile sent %q", got)
	}
	if got := f.lastType.Load(); got != "application/fhir+json" {
		t.Errorf("content type %q", got)
	}
	if got := f.lastPayload.Load(); got != `{"resourceType":"Bundle"}` {
		t.Errorf("payload %q", got)
	}
}

func TestErrorAndFatalIssuesMakeTheResourceInvalid(t *testing.T) {
	c := newFake(t, &fakeValidator{status: 200, body: outcomeInvalid}, time.Second)
	r, err := c.Validate(context.Background(), pasRequestBundle, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Valid || r.Errors != 2 || string(r.Outcome) != outcomeInvalid {
		t.Fatalf("got %+v", r)
	}
}

func TestNoVerdictIsAnErrorNeverAcceptance(t *testing.T) {
	for _, c := range []struct {
		name   string
		status int
		body   string
	}{
		{"server error", 500, outcomeValid},
		{"warming up", 503, outcomeValid},
		{"profile not loaded", 422, `{"resourceType":"OperationOutcome","issue":[{"severity":"error"}]}`},
		{"not found", 404, outcomeValid},
		{"not JSON", 200, `<html>ok</html>`},
		{"not an OperationOutcome", 200, `{"resourceType":"Bundle","issue":[{"severity":"information"}]}`},
		{"no issues", 200, `{"resourceType":"OperationOutcome"}`},
		{"empty issues", 200, `{"resourceType":"OperationOutcome","issue":[]}`},
		{"unknown severity", 200, `{"resourceType":"OperationOutcome","issue":[{"severity":"fine"}]}`},
		{"answer too large", 200, `{"resourceType":"OperationOutcome","issue":[{"severity":"information","diagnostics":"` + strings.Repeat("x", maxAnswer) + `"}]}`},
		{"empty answer", 200, ``},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := newFake(t, &fakeValidator{status: c.status, body: c.body}, time.Second)
			r, err := cl.Validate(context.Background(), pasRequestBundle, []byte(`{}`))
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if r.Valid || r.Outcome != nil {
				t.Fatalf("a failed call returned a result: %+v", r)
			}
		})
	}
}

func TestServiceDownIsUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, err := New(Settings{URL: url, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Validate(context.Background(), pasRequestBundle, []byte(`{}`)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

func TestFiveServiceFailuresOpenTheBreaker(t *testing.T) {
	f := &fakeValidator{status: 500}
	c := newFake(t, f, time.Second)
	for range breakerTrips {
		c.Validate(context.Background(), pasRequestBundle, []byte(`{}`))
	}
	if c.State() != gobreaker.StateOpen {
		t.Fatalf("state %v after %d failures", c.State(), breakerTrips)
	}
	_, err := c.Validate(context.Background(), pasRequestBundle, []byte(`{}`))
	if !errors.Is(err, gobreaker.ErrOpenState) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want the open breaker's", err)
	}
	if n := f.calls.Load(); n != breakerTrips {
		t.Errorf("the service got %d calls, want %d: an open breaker must not call it", n, breakerTrips)
	}
	if c.Name() != "profile-validator" {
		t.Errorf("name %q", c.Name())
	}
}

func TestSlowServiceCountsAgainstIt(t *testing.T) {
	c := newFake(t, &fakeValidator{status: 200, body: outcomeValid, delay: time.Second}, 20*time.Millisecond)
	for range breakerTrips {
		_, err := c.Validate(context.Background(), pasRequestBundle, []byte(`{}`))
		if !errors.Is(err, errTimeout) {
			t.Fatalf("err = %v, want the timeout", err)
		}
	}
	if c.State() != gobreaker.StateOpen {
		t.Fatalf("state %v: timeouts of the service must count", c.State())
	}
}

func TestCallersThatStopWaitingDoNotOpenTheBreaker(t *testing.T) {
	f := &fakeValidator{status: 200, body: outcomeValid, delay: time.Second}
	c := newFake(t, f, 5*time.Second)
	for range 2 * breakerTrips {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		_, err := c.Validate(ctx, pasRequestBundle, []byte(`{}`))
		cancel()
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
	}
	if c.State() != gobreaker.StateClosed {
		t.Fatalf("state %v: callers hanging up opened the breaker for everybody", c.State())
	}
}

func TestRefusedInputIsAnErrorThatDoesNotOpenTheBreaker(t *testing.T) {
	for _, status := range []int{400, 413} {
		c := newFake(t, &fakeValidator{status: status, body: `{"resourceType":"OperationOutcome","issue":[{"severity":"error"}]}`}, time.Second)
		for range 2 * breakerTrips {
			_, err := c.Validate(context.Background(), pasRequestBundle, []byte(`not json`))
			if !errors.Is(err, ErrRefusedInput) || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("status %d: err = %v", status, err)
			}
		}
		if c.State() != gobreaker.StateClosed {
			t.Fatalf("status %d: state %v: one client's bad input opened the breaker", status, c.State())
		}
	}
}

func TestOversizeResourceIsRefusedWithoutACall(t *testing.T) {
	f := &fakeValidator{status: 200, body: outcomeValid}
	c := newFake(t, f, time.Second)
	_, err := c.Validate(context.Background(), pasRequestBundle, make([]byte, MaxResource+1))
	if !errors.Is(err, ErrRefusedInput) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if f.calls.Load() != 0 {
		t.Fatal("the service was called")
	}
}

func TestNoProfileIsRefused(t *testing.T) {
	f := &fakeValidator{status: 200, body: outcomeValid}
	c := newFake(t, f, time.Second)
	if _, err := c.Validate(context.Background(), "", []byte(`{}`)); !errors.Is(err, ErrNoProfile) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if f.calls.Load() != 0 {
		t.Fatal("the service was called")
	}
}

func TestRedirectIsNotAnAnswer(t *testing.T) {
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, outcomeValid) }))
	defer good.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, good.URL+"/validate", http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	c, err := New(Settings{URL: redirect.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Validate(context.Background(), pasRequestBundle, []byte(`{}`)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

func TestNewRefusesBadSettings(t *testing.T) {
	for _, s := range []Settings{
		{},
		{URL: "127.0.0.1:8095"},
		{URL: "ftp://127.0.0.1:8095"},
		{URL: "http://"},
		{URL: "http://127.0.0.1:8095?x=1"},
		{URL: "http://127.0.0.1:8095", Timeout: -time.Second},
	} {
		if _, err := New(s); err == nil {
			t.Errorf("New(%+v) accepted", s)
		}
	}
	c, err := New(Settings{URL: "http://127.0.0.1:8095/base/"})
	if err != nil {
		t.Fatal(err)
	}
	if c.endpoint != "http://127.0.0.1:8095/base/validate" || c.timeout != DefaultTimeout {
		t.Errorf("endpoint %q timeout %v", c.endpoint, c.timeout)
	}
}

func FuzzParseOutcome(f *testing.F) {
	for _, s := range []string{outcomeValid, outcomeInvalid, `{}`, `{"resourceType":"OperationOutcome","issue":[{}]}`, `[]`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := parseOutcome(body)
		if err != nil {
			return
		}
		if r.Errors < 0 || r.Valid != (r.Errors == 0) || string(r.Outcome) != string(body) {
			t.Fatalf("inconsistent result %+v", r)
		}
	})
}
