package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/audit"
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
	srv := httptest.NewServer(newFakeGateway(spool, serveObservation(t, nil)))
	defer srv.Close()
	resp, err := getObservations(srv.URL)
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
