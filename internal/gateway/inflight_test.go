package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
)

// TestOverCapacityIsRefusedAtOnceAndAudited: with one request in flight and room for one, the next is not
// queued: 503, Retry-After, an OperationOutcome, and its audit record says why.
func TestOverCapacityIsRefusedAtOnceAndAudited(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	upstream := serveObservation(t, func() {
		entered <- struct{}{}
		<-release
	})
	sink := &fakeSink{records: make(chan audit.Record, 4)}
	g := newFakeGateway(sink, upstream)
	g.LimitInFlight(1, 4)
	srv := httptest.NewServer(g)
	defer srv.Close()
	defer close(release) // before the servers close: they wait for the held request
	get := func() *http.Response {
		resp, err := getObservations(srv.URL)
		if err != nil {
			t.Error(err)
			return nil
		}
		return resp
	}
	go func() {
		if resp := get(); resp != nil {
			resp.Body.Close()
		}
	}()
	<-entered // the first request holds the only slot
	start := time.Now()
	resp := get()
	if resp == nil {
		t.FailNow()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(b), "OperationOutcome") {
		t.Fatalf("over capacity: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the refusal waited %v: it should not queue", took)
	}
	r := <-sink.records
	if r.Status != 503 || len(r.Reasons) == 0 || r.Reasons[0] != "overloaded" {
		t.Errorf("audit record: status %d reasons %v", r.Status, r.Reasons)
	}
}
