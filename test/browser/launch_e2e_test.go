//go:build e2e

package browser

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// The scopes a member's app asks for: its patient context, read/search of everything in it, and
// offline_access, without which fhirclient's refresh() refuses to try.
const scopes = "openid fhirUser launch/patient patient/*.rs offline_access"

type mode struct {
	name, base, member, patient string
	spki                        func(t *testing.T) []string
}

func modes() []mode {
	return []mode{
		{name: "standalone", base: stackenv.StandaloneURL + "/patient-access/fhir", member: "member01", patient: "member-01",
			spki: func(*testing.T) []string { return nil }},
		{name: "envoy", base: stackenv.EnvoyURL() + "/patient-access/fhir", member: "member02", patient: "member-02",
			spki: envoySPKI},
	}
}

func envoySPKI(t *testing.T) []string {
	t.Helper()
	if !stackenv.EnvoyTLS() {
		return nil
	}
	roots, err := stackenv.RootCAs()
	if err != nil {
		t.Fatal(err)
	}
	spki, err := LeafSPKI(stackenv.EnvoyHostPort, roots)
	if err != nil {
		t.Fatalf("Envoy's certificate against %s: %v (is the stack up? make stack-up)", stackenv.CAFile(), err)
	}
	return []string{spki}
}

// launch serves the app on its own origin and runs one standalone launch of member m in headless Chromium.
func launch(t *testing.T, m mode) *Result {
	t.Helper()
	tools, err := FindTools()
	if err != nil {
		require.Missing(t, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	app, stop, err := ServeApp(tools, map[string]string{"other": "Patient/member-03"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	q := url.Values{"iss": {m.base}, "client_id": {"patient-app"}, "scope": {scopes}}
	res, err := Run(ctx, tools, Launch{
		LaunchURL: app + "/launch.html?" + q.Encode(),
		Username:  m.member, Password: stackauth.Password, SPKI: m.spki(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Error != "" {
		t.Fatalf("the launch did not finish: %s\nbrowser log:\n%s", res.Error, strings.Join(res.Log, "\n"))
	}
	return res
}

// TestSMARTJSClientLaunchesThroughKeycloakAndReadsAcrossOrigins: fhirclient in Chromium, served from
// http://127.0.0.1:9300, discovers fhirwall's SMART configuration, sends the member through Keycloak's login
// page, exchanges the code with PKCE from the browser, and reads the member's Patient, every page of their
// claims and their coverage from fhirwall's origin; another member's Patient is refused with a status the
// app can read. Every call crosses an origin, so each passing read is CORS working in that mode.
func TestSMARTJSClientLaunchesThroughKeycloakAndReadsAcrossOrigins(t *testing.T) {
	evidence.Proves(t, "SMART-08", "CMS-PA-01")
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			res := launch(t, m)
			defer func() {
				if t.Failed() {
					t.Logf("browser log:\n%s", strings.Join(res.Log, "\n"))
				}
			}()
			for _, name := range []string{"ready", "patient.read", "eob.search", "coverage.search", "other.read"} {
				s, ok := res.Step(name)
				if !ok || !s.OK {
					t.Errorf("%s: reached %v, error %q", name, ok, s.Error)
				}
			}
			if res.Patient != m.patient {
				t.Errorf("patient context %q, want %q (scope %q)", res.Patient, m.patient, res.Scope)
			}
			if res.PatientResource != "Patient/"+m.patient {
				t.Errorf("patient.read() gave %q", res.PatientResource)
			}
			if len(res.EOBPatients) < 2 {
				t.Errorf("%d claims over all pages, want the seeded member's several (paged by 2)", len(res.EOBPatients))
			}
			for _, ref := range append(append([]string{}, res.EOBPatients...), res.CoverageBeneficiaries...) {
				if ref != "Patient/"+m.patient {
					t.Errorf("a resource of %q reached %s's app", ref, m.patient)
				}
			}
			if len(res.CoverageBeneficiaries) == 0 {
				t.Error("no Coverage for the member")
			}
			if s, _ := res.OtherStatus.(float64); s != 403 && s != 404 {
				t.Errorf("another member's Patient: %v, want 403 or 404 read by the app", res.OtherStatus)
			}
		})
	}
}
