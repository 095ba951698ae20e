//go:build e2e

package profilevalidator_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/profilevalidator"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/fhirvalidator"
	"github.com/fhirwall/fhirwall/test/require"
)

const pasRequestBundle = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-request-bundle"

// validatorURL is the stack's validator service: test/stack/ports.env VALIDATOR_PORT, which the environment
// may override like the stack scripts do.
func validatorURL() string {
	port := os.Getenv("VALIDATOR_PORT")
	if port == "" {
		port = "8095"
	}
	return "http://127.0.0.1:" + port
}

func TestPASRequestBundlesAgainstTheRunningValidator(t *testing.T) {
	evidence.Proves(t, "PAS-02")
	base := validatorURL()
	resp, err := http.Get(base + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		if resp != nil {
			resp.Body.Close()
		}
		require.Missing(t, "profile validator not running or not healthy at "+base+": bash test/stack/validator.sh start")
	}
	resp.Body.Close()
	c, err := profilevalidator.New(profilevalidator.Settings{URL: base, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	bundle := pasExample(t, "package/example/Bundle-MedicalServicesAuthorizationBundleExample.json")
	emptied := clone(t, bundle)
	emptied["entry"] = []any{}
	wrongUse := clone(t, bundle)
	wrongUse["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["use"] = "claim"

	for _, tc := range []struct {
		name  string
		body  map[string]any
		valid bool
	}{
		{"MedicalServices example", bundle, true},
		{"no entries", emptied, false},
		{"Claim.use claim", wrongUse, false},
		{"MedicalServices example again (warm)", bundle, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := json.Marshal(tc.body)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			r, err := c.Validate(context.Background(), pasRequestBundle, body)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d errors in %v", tc.name, r.Errors, took)
			if r.Valid != tc.valid {
				t.Fatalf("valid = %v, want %v; outcome:\n%s", r.Valid, tc.valid, r.Outcome)
			}
		})
	}

	t.Run("a profile the service does not hold is no verdict", func(t *testing.T) {
		body, _ := json.Marshal(bundle)
		_, err := c.Validate(context.Background(), "http://example.org/StructureDefinition/nothing", body)
		if !errors.Is(err, profilevalidator.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	})
}

// pasExample reads one file of the PAS 2.0.1 package, narrative removed: the IG examples' narratives link to
// anchors that do not exist, real errors of the examples that fhirwall never emits.
func pasExample(t *testing.T, name string) map[string]any {
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
		if err == io.EOF {
			t.Fatalf("%s not in the PAS package", name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != name {
			continue
		}
		var res map[string]any
		if err := json.NewDecoder(tr).Decode(&res); err != nil {
			t.Fatal(err)
		}
		stripText(res)
		return res
	}
}

func stripText(v any) {
	switch v := v.(type) {
	case map[string]any:
		if _, ok := v["resourceType"]; ok {
			delete(v, "text")
		}
		for _, c := range v {
			stripText(c)
		}
	case []any:
		for _, c := range v {
			stripText(c)
		}
	}
}

func clone(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
