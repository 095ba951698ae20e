package decision

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzEnforceBundle: whatever the upstream sends, enforcement never panics and never lets another
// patient's resource out (checked by walking the output again).
func FuzzEnforceBundle(f *testing.F) {
	f.Add([]byte(bundle("searchset", 2, nil, entry{eob("e1", me), "match"}, entry{eob("e2", other), "include"})))
	f.Add([]byte(bundle("batch-response", -1, nil, entry{bundle("searchset", 1, nil, entry{labObs("o", other), "match"}), ""})))
	f.Add([]byte(strings.Replace(eob("e3", me), `"status"`, `"contained":[{"resourceType":"Patient","id":"x"}],"status"`, 1)))
	f.Add([]byte(`{"resourceType":"Group","member":[{"entity":{"reference":"Patient/member-02"}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","entry":[{"response":{"status":"200","outcome":{"resourceType":"Patient","id":"member-02"}}}]}`))
	c := newEnforcingCore()
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := c.EnforceResponse(context.Background(), decisionFor(me), 200, fhirJSON, body)
		if err != nil || len(bytes.TrimSpace(got.Body)) == 0 { // refused, or an empty 200 passed as it came
			return
		}
		if !json.Valid(got.Body) {
			t.Fatalf("enforced body is not JSON: %q", got.Body)
		}
		assertOnlyPatient(t, got.Body, me)
	})
}
