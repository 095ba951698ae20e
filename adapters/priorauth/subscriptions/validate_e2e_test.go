//go:build e2e

package subscriptions

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/fhirvalidator"
)

// pasExample reads one example of the PAS 2.0.1 package, narrative stripped (the examples' narratives do not
// validate: docs/dev/prior-auth-research.md §2).
func pasExample(t *testing.T, name string) []byte {
	t.Helper()
	f, err := os.Open(fhirvalidator.Packages(t, "hl7.fhir.us.davinci-pas-2.0.1.tgz")[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in the package: %v", name, err)
		}
		if h.Name == "package/example/"+name {
			b, _ := io.ReadAll(tr)
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			stripText(m)
			out, _ := json.Marshal(m)
			return out
		}
	}
}

func stripText(v any) {
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["resourceType"]; ok {
			delete(x, "text")
		}
		for _, c := range x {
			stripText(c)
		}
	case []any:
		for _, c := range x {
			stripText(c)
		}
	}
}

// TestNotificationsValidateAsR4 validates a handshake, a heartbeat and an event notification of each payload
// kind with HAPI's validator against base R4 and PAS 2.0.1 (the embedded response Bundle claims its
// profile): zero errors. The Subscriptions Backport package is not in test/fixtures (offline), so
// backport-subscription-status-r4 itself cannot be checked here; the shape is checked by hand in
// service_test.go (readNotification) against the backport 1.1.0 profile text.
func TestNotificationsValidateAsR4(t *testing.T) {
	evidence.Proves(t, "PAS-03")
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	resp := pasExample(t, "Bundle-ReferralAuthorizationResponseBundleExample.json")
	ev := &event{number: 1, time: now, claimResponseID: "cr-1", responseBundle: resp}
	dir := t.TempDir()
	var files []string
	for name, tc := range map[string]struct {
		content, typ, status string
		ev                   *event
	}{
		"handshake":     {ContentIDOnly, TypeHandshake, StatusRequested, nil},
		"heartbeat":     {ContentFullResource, TypeHeartbeat, StatusActive, nil},
		"id-only":       {ContentIDOnly, TypeEvent, StatusActive, ev},
		"full-resource": {ContentFullResource, TypeEvent, StatusActive, ev},
		"empty":         {ContentEmpty, TypeEvent, StatusActive, ev},
	} {
		b, err := notificationBody(testBase, Subscription{ID: "sub-1", Content: tc.content}, tc.typ, tc.status, 1, tc.ev, now)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "notification-"+name+".json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	// A control the validator must fail: a history Bundle entry without request and response (R4 bdl-3, bdl-4).
	broken := filepath.Join(dir, "control-broken.json")
	_ = os.WriteFile(broken, []byte(`{"resourceType":"Bundle","type":"history","entry":[{"fullUrl":"urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427","resource":{"resourceType":"Parameters","id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","parameter":[{"name":"type","valueCode":"handshake"}]}}]}`), 0o600)
	files = append(files, broken)
	errs := fhirvalidator.Validate(silentIsClean{t}, fhirvalidator.Packages(t, "hl7.fhir.us.core-3.1.1.tgz", "hl7.fhir.us.davinci-pas-2.0.1.tgz"), files)
	control := 0
	for _, e := range errs {
		if strings.Contains(e, "control-broken.json") {
			control++
			continue
		}
		t.Error(e)
	}
	if control == 0 {
		t.Error("the validator found nothing wrong with the broken control: it did not check the notifications either")
	}
}

// silentIsClean is t for fhirvalidator.Validate, which fails a file the validator names nowhere (a resource
// normally gets at least the narrative warning). A Bundle and a Parameters have no narrative: a clean
// notification gets no line at all, so that one complaint is logged instead.
type silentIsClean struct{ testing.TB }

func (s silentIsClean) Errorf(format string, args ...any) {
	if msg := fmt.Sprintf(format, args...); strings.HasPrefix(msg, "the validator said nothing about notification-") {
		s.TB.Log("clean (no message at all): " + msg)
		return
	}
	s.TB.Helper()
	s.TB.Errorf(format, args...)
}
