package outcome

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
)

func TestRefusalIsAnOperationOutcome(t *testing.T) {
	for _, r := range []Refusal{Unauthenticated, NotFound, Forbidden, NotSupported, Unavailable, Internal} {
		var oo struct {
			ResourceType string
			Issue        []struct{ Severity, Code string }
		}
		if err := json.Unmarshal(r.Body(), &oo); err != nil {
			t.Fatalf("%d: %v", r.Status, err)
		}
		if oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 || oo.Issue[0].Code != r.Code || oo.Issue[0].Severity != "error" {
			t.Errorf("%d: unexpected body %s", r.Status, r.Body())
		}
	}
}

func TestUnauthenticatedCarriesBearerChallenge(t *testing.T) {
	w := httptest.NewRecorder()
	Unauthenticated.Write(w)
	if w.Code != 401 || w.Header().Get("WWW-Authenticate") == "" || w.Header().Get("Content-Type") != ContentType {
		t.Fatalf("got %d %v", w.Code, w.Header())
	}
}
