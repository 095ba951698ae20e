//go:build e2e

// Package selftest runs `fhirwall selftest --against` as a payer would, against the demo stack's two faces
// (Envoy's TLS listener and the standalone proxy) with test clients from the stack, checks the signed matrix
// it writes with `fhirwall evidence verify` (intact, and refused after one flipped byte), and shows the
// self-test failing against a deployment that leaks another member's data.
package selftest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/internal/selftest"
	"github.com/fhirwall/fhirwall/test/priorauth"
	"github.com/fhirwall/fhirwall/test/stackaudit"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// The stack's audit signing key (test/stack/fhirwall.sh: $FHIRWALL_STATE/audit/signing.key).
func auditKey() string { return filepath.Join(stackenv.StateDir(), "audit", "signing.key") }

// buildCLI builds cmd/fhirwall into a temporary directory.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fhirwall")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/fhirwall")
	cmd.Dir = stackenv.Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/fhirwall: %v\n%s", err, out)
	}
	return bin
}

// run runs the CLI and returns its exit status and output.
func run(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	if err != nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return 0, out.String()
}

// stackConfig writes selftest.yaml for the stack's test clients into a temporary directory: member01's
// tokens from Keycloak (all of Patient Access, and Patient only), provider-org-a and payer-c as backend
// clients with their test keys, and for -allow-writes a PAS request of org-a for the synthetic member-05
// (test/priorauth's suite member; an automatically approved MRI, its identifier unique to this run) and its
// inquiry.
func stackConfig(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full, err := stackauth.Member(ctx, "member01", "openid", "fhirUser", "launch/patient", "patient/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	limited, err := stackauth.Member(ctx, "member01", "openid", "fhirUser", "launch/patient", "patient/Patient.rs")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, tok := range map[string]string{"member.token": full.AccessToken, "member-patient-only.token": limited.AccessToken} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	req := priorauth.NewRequest("selftest-"+priorauth.NewRunID(), priorauth.MRIBrain)
	request, err := req.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	inquiry, err := req.Inquiry()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "pas-request.json"), request, 0o600)
	os.WriteFile(filepath.Join(dir, "pas-inquiry.json"), inquiry, 0o600)
	keys := filepath.Join(stackenv.Root(), "test", "fixtures", "keys")
	cfg := `apis:
  patient_access: /patient-access/fhir
  provider_access: /provider-access/fhir
  payer_to_payer: /payer-to-payer/fhir
  prior_auth: /prior-auth/fhir
member:
  token_file: member.token
  limited_token_file: member-patient-only.token
  patient: member-01
  other_patient: member-02
provider:
  client_id: provider-org-a
  key_file: ` + filepath.Join(keys, "provider-org-a.TEST-ONLY.key.pem") + `
  kid: provider-org-a-test-1
  attributed_patient: member-01
  unattributed_patient: member-02
payer:
  client_id: payer-c
  key_file: ` + filepath.Join(keys, "payer-c.TEST-ONLY.key.pem") + `
  kid: payer-c-test-1
  not_opted_in_patient: member-03
rate_limit: {api: payer_to_payer, path: /metadata}
prior_auth_writes:
  request_bundle_file: pas-request.json
  inquiry_bundle_file: pas-inquiry.json
  patient: ` + priorauth.Member05.ID + `
`
	f := filepath.Join(dir, "selftest.yaml")
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// selftestIDs are the requirement ids the self-test's checks prove, written out for evidence.Proves (the
// matrix builder reads the literal ids); TestSelftestPassesAgainstBothFaces keeps them equal to the checks'.
var selftestIDs = []string{"SMART-01", "SMART-02", "SMART-03", "SMART-04", "SMART-05", "BACKEND-01", "BACKEND-03", "CMS-PA-01",
	"CMS-PA-02", "CMS-PROV-01", "CMS-P2P-01", "CMS-P2P-04", "CMS-PAU-01", "CMS-PAU-06", "PAS-01", "PAS-04", "SEC-01", "SEC-02",
	"OPS-RATE-01", "AUD-01"}

// TestSelftestPassesAgainstBothFaces: every check passes against Envoy mode and standalone mode (only the
// base URL differs), the signed matrix has every covered requirement met, `fhirwall evidence verify`
// accepts it, and refuses it after any one byte is flipped.
func TestSelftestPassesAgainstBothFaces(t *testing.T) {
	evidence.Proves(t, "OPS-SELFTEST-01")
	var covered []string
	for _, c := range selftest.Checks() {
		for _, id := range c.Requirements {
			if !slices.Contains(covered, id) {
				covered = append(covered, id)
			}
		}
	}
	slices.Sort(covered)
	if want := slices.Sorted(slices.Values(selftestIDs)); !slices.Equal(covered, want) {
		t.Fatalf("the checks prove %v; selftestIDs lists %v", covered, want)
	}
	bin := buildCLI(t)
	faces := []struct{ name, url, ca string }{{"envoy", stackenv.EnvoyURL(), ""}, {"standalone", stackenv.StandaloneURL, ""}}
	if stackenv.EnvoyTLS() {
		faces[0].ca = stackenv.CAFile()
	}
	for _, f := range faces {
		t.Run(f.name, func(t *testing.T) {
			evidence.Proves(t, "SMART-01", "SMART-02", "SMART-03", "SMART-04", "SMART-05", "BACKEND-01", "BACKEND-03", "CMS-PA-01",
				"CMS-PA-02", "CMS-PROV-01", "CMS-P2P-01", "CMS-P2P-04", "CMS-PAU-01", "CMS-PAU-06", "PAS-01", "PAS-04", "SEC-01", "SEC-02",
				"OPS-RATE-01", "AUD-01", "OPS-SELFTEST-01")
			cfg := stackConfig(t) // a PAS request of its own per face
			out := selftestArtifacts(t, f.name)
			args := []string{"selftest", "--against", f.url, "-config", cfg, "-key", auditKey(), "-out", out,
				"-audit-kafka", stackaudit.Broker, "-rate-limit-burst", "300", "-allow-writes", "-strict"}
			if f.ca != "" {
				args = append(args, "-ca", f.ca)
			}
			code, text := run(t, bin, args...)
			t.Logf("fhirwall selftest --against %s:\n%s", f.url, text)
			if code != 0 {
				t.Fatalf("exit %d, want 0", code)
			}
			for _, c := range selftest.Checks() {
				if !strings.Contains(text, "pass "+c.Name+" ") {
					t.Errorf("%s did not pass", c.Name)
				}
			}
			for _, name := range []string{"matrix.md", "matrix.html"} {
				if b, err := os.ReadFile(filepath.Join(out, name)); err != nil || !bytes.Contains(b, []byte("AUD-01")) {
					t.Errorf("%s: %v, or without the requirement rows", name, err)
				}
			}
			signed := filepath.Join(out, "matrix.signed.json")
			m := verifySigned(t, signed)
			if len(m.Rows) != len(selftestIDs) {
				t.Errorf("the matrix has %d rows, want %d", len(m.Rows), len(selftestIDs))
			}
			for _, r := range m.Rows {
				if r.Status != evidence.Met {
					t.Errorf("%s: %s", r.ID, r.Status)
				}
			}
			pub := auditKey() + ".pub"
			if code, text := run(t, bin, "evidence", "verify", "-key", pub, signed); code != 0 || !strings.HasPrefix(text, fmt.Sprintf("intact: %d requirements, %d met", len(selftestIDs), len(selftestIDs))) {
				t.Errorf("evidence verify of the untouched matrix: exit %d %s", code, text)
			}
			raw, err := os.ReadFile(signed)
			if err != nil {
				t.Fatal(err)
			}
			for _, at := range []int{0, len(raw) / 3, len(raw) / 2, len(raw) - 2} {
				tampered := slices.Clone(raw)
				tampered[at] ^= 0x01
				f := filepath.Join(t.TempDir(), "tampered.json")
				os.WriteFile(f, tampered, 0o644)
				if code, text := run(t, bin, "evidence", "verify", "-key", pub, f); code != 1 || !strings.HasPrefix(text, "REFUSED") {
					t.Errorf("byte %d flipped: exit %d %s, want 1 REFUSED", at, code, text)
				}
			}
		})
	}
}

// selftestArtifacts is where a face's signed matrix goes: $FHIRWALL_ARTIFACTS/selftest/FACE (make test keeps
// it beside the compliance matrix), or the test's temp dir.
func selftestArtifacts(t *testing.T, face string) string {
	t.Helper()
	dir := t.TempDir()
	if a := os.Getenv("FHIRWALL_ARTIFACTS"); a != "" {
		dir = filepath.Join(a, "selftest", face)
		if err := os.RemoveAll(dir); err != nil { // never a previous run's matrix
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("signed matrix: %s", dir)
	return dir
}

// verifySigned checks the envelope with the stack's audit key and returns its matrix.
func verifySigned(t *testing.T, path string) evidence.Matrix {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := audit.LoadVerifyKey(auditKey() + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	m, err := evidence.Verify(b, []ed25519.PublicKey{pub})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// leakyDeployment is the standalone face with one fault put in front of it: Patient Access serves
// member-02's Patient (straight from the FHIR server) to whoever asks. It stands for a misconfigured
// deployment; the self-test must catch it.
func leakyDeployment(t *testing.T) *httptest.Server {
	t.Helper()
	face, _ := url.Parse(stackenv.StandaloneURL)
	proxy := httputil.NewSingleHostReverseProxy(face)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/patient-access/fhir/Patient/member-02" {
			resp, err := http.Get(stackenv.HAPIURL + "/Patient/member-02")
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			w.Header().Set("Content-Type", "application/fhir+json")
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestSelftestFailsAgainstADeploymentThatLeaksAnotherMember: in front of a deployment that serves another
// member's Patient, the other-patient and refusal checks fail, the member's own read still passes, the CLI
// exits 1, and the signed matrix says the requirement failed.
func TestSelftestFailsAgainstADeploymentThatLeaksAnotherMember(t *testing.T) {
	evidence.Proves(t, "OPS-SELFTEST-01")
	bin := buildCLI(t)
	cfg := stackConfig(t)
	leaky := leakyDeployment(t)
	out := t.TempDir()
	code, text := run(t, bin, "selftest", "--against", leaky.URL, "-config", cfg, "-key", auditKey(), "-out", out,
		"-only", "scopes/member-reads-own-data,scopes/other-patient-refused,refusal/not-yours-answers-like-not-found")
	t.Logf("fhirwall selftest against the leaky deployment:\n%s", text)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"pass scopes/member-reads-own-data", "fail scopes/other-patient-refused", "fail refusal/not-yours-answers-like-not-found"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	m := verifySigned(t, filepath.Join(out, "matrix.signed.json"))
	for _, r := range m.Rows {
		want := map[string]evidence.Status{"CMS-PA-01": evidence.Met, "CMS-PA-02": evidence.Failed, "SEC-01": evidence.Failed}[r.ID]
		if r.Status != want {
			t.Errorf("%s: %s, want %s", r.ID, r.Status, want)
		}
	}
}
