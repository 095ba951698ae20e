package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// TestFullAuditSpoolRefusesWith503 runs the gateway on a real spool whose disk budget is spent (Kafka behind):
// the FHIR server's answer is withheld and the client gets a 503 OperationOutcome, never unaudited data.
func TestFullAuditSpoolRefusesWith503(t *testing.T) {
	spool, err := audit.Open(t.TempDir(), audit.Options{Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32)), MaxBytes: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer spool.Close()
	for i := 0; ; i++ {
		err := spool.Write(context.Background(), audit.Record{ID: audit.NewID(), Path: strings.Repeat("x", 200)})
		if errors.Is(err, audit.ErrFull) {
			break
		}
		if err != nil || i > 1000 {
			t.Fatalf("filling the spool: %v after %d records", err, i)
		}
	}
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/member-01"}}`)
	}))
	defer fhir.Close()
	log := slog.New(slog.DiscardHandler)
	core := &decision.Core{Tokens: fakeTokens{}, Policy: fakePolicy{}, Registry: fakeRegistry{}, Audit: spool, Log: log, Now: time.Now}
	u, _ := url.Parse(fhir.URL + "/fhir")
	srv := httptest.NewServer(New(core, []decision.API{{Name: "patient-access", Prefix: "/patient-access/fhir"}}, u, http.DefaultTransport, log))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/patient-access/fhir/Observation?code=x", nil)
	req.Header.Set("Authorization", "Bearer member-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), `"OperationOutcome"`) || strings.Contains(string(b), "member-01") {
		t.Fatalf("full spool: %d %s", resp.StatusCode, b)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id on the refusal")
	}
}
