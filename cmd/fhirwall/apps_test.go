package main

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/adapters/registry/admin"
	"github.com/fhirwall/fhirwall/adapters/registry/admin/admintest"
	"github.com/fhirwall/fhirwall/adapters/registry/apps"
)

var appsOffered = map[string][]string{
	"patient-access":  {"openid", "launch/patient", "patient/*.rs"},
	"provider-access": {"system/*.rs"},
}

// appsServer is the real admin API on a fake store, and the token file the CLI reads (exported as the stack
// does).
func appsServer(t *testing.T) (url string, store *admintest.FakeStore) {
	t.Helper()
	store = admintest.NewFakeStore()
	h, err := admin.New(store, appsOffered, []byte(cliTestToken), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokenFile, []byte(cliTestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envAppsAdminTokenFile, tokenFile)
	return srv.URL, store
}

const memberAppJSON = `{"client_id":"member-app","name":"Member app","developer_org":"Acme",
  "contacts":[{"email":"dev@example.org"}],"redirect_uris":["https://app.example.org/cb"],"launch_types":["standalone"],
  "token_endpoint_auth_method":"none","requested_apis":["patient-access"],"requested_scopes":["openid","patient/*.rs"],
  "environment":"%s","tier":"standard"}`

func appFile(t *testing.T, env apps.Environment) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app.json")
	if err := os.WriteFile(p, []byte(strings.Replace(memberAppJSON, "%s", string(env), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAppsRegisterApproveActivateThroughTheAdminAPI(t *testing.T) {
	url, store := appsServer(t)
	code, out, err := cli(t, "apps", "register", "-admin", url, "-file", appFile(t, apps.Production), "-reviewer", "alice")
	if code != 0 || err != nil || !strings.Contains(out, "member-app: registered production, pending") || !strings.Contains(out, "fhirwall apps approve -id member-app") {
		t.Fatalf("register: %d %v %q", code, err, out)
	}
	code, out, err = cli(t, "apps", "approve", "-admin", url, "-id", "member-app", "-reviewer", "bob", "-reason", "reviewed", "-scopes", "openid, patient/Observation.rs")
	if code != 0 || err != nil || !strings.Contains(out, "approved by admin:bob") || !strings.Contains(out, "scopes openid patient/Observation.rs") {
		t.Fatalf("approve: %d %v %q", code, err, out)
	}
	if code, out, err = cli(t, "apps", "activate", "-admin", url, "-id", "member-app", "-reviewer", "bob"); code != 0 || err != nil || !strings.Contains(out, "active by admin:bob") {
		t.Fatalf("activate: %d %v %q", code, err, out)
	}
	a, _ := store.Get(context.Background(), "member-app")
	if a.State != apps.StateActive {
		t.Fatalf("stored state %s", a.State)
	}
	code, out, err = cli(t, "apps", "history", "-admin", url, "-id", "member-app")
	if code != 0 || err != nil || !strings.Contains(out, "approve") || !strings.Contains(out, "admin:alice") || !strings.Contains(out, "reviewed") {
		t.Fatalf("history: %d %v %q", code, err, out)
	}
	if code, out, err = cli(t, "apps", "list", "-admin", url); code != 0 || err != nil || !strings.Contains(out, "member-app") || !strings.Contains(out, "active") {
		t.Fatalf("list: %d %v %q", code, err, out)
	}
	if code, out, err = cli(t, "apps", "show", "-admin", url, "-id", "member-app"); code != 0 || err != nil || !strings.Contains(out, `"state": "active"`) {
		t.Fatalf("show: %d %v %q", code, err, out)
	}
}

func TestAppsSandboxRegistrationIsActiveAtOnce(t *testing.T) {
	url, _ := appsServer(t)
	code, out, err := cli(t, "apps", "register", "-admin", url, "-file", appFile(t, apps.Sandbox), "-reviewer", "alice")
	if code != 0 || err != nil || !strings.Contains(out, "sandbox, active") {
		t.Fatalf("register: %d %v %q", code, err, out)
	}
}

func TestAppsSuspendAndDeactivateNeedAReasonBeforeAnythingIsSent(t *testing.T) {
	url, store := appsServer(t)
	if code, _, err := cli(t, "apps", "register", "-admin", url, "-file", appFile(t, apps.Sandbox), "-reviewer", "alice"); code != 0 {
		t.Fatal(err)
	}
	for _, cmd := range []string{"suspend", "deactivate"} {
		if code, _, err := cli(t, "apps", cmd, "-admin", url, "-id", "member-app", "-reviewer", "bob"); code != 2 || err == nil || !strings.Contains(err.Error(), "-reason TEXT is required") {
			t.Errorf("%s without -reason: %d %v; want exit 2 naming -reason", cmd, code, err)
		}
	}
	if a, _ := store.Get(context.Background(), "member-app"); a.State != apps.StateActive {
		t.Fatalf("state %s after refused commands", a.State)
	}
	if code, out, err := cli(t, "apps", "suspend", "-admin", url, "-id", "member-app", "-reviewer", "bob", "-reason", "key leaked"); code != 0 || !strings.Contains(out, "suspended") {
		t.Fatalf("suspend: %d %v %q", code, err, out)
	}
}

func TestAppsRefusalsAreOneLineWithTheFix(t *testing.T) {
	url, _ := appsServer(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no token", []string{"apps", "list", "-admin", url, "-token-file", ""}, 2, "-token-file FILE or $FHIRWALL_ADMIN_TOKEN_FILE"},
		{"a wrong token", []string{"apps", "list", "-admin", url, "-token-file", writeTemp(t, strings.Repeat("x", 64))}, 1, "admin.token_file"},
		{"no such app", []string{"apps", "show", "-admin", url, "-id", "nobody"}, 1, "404 app not found"},
		{"no -id", []string{"apps", "history", "-admin", url}, 2, "-id CLIENT_ID is required"},
		{"no reviewer", []string{"apps", "register", "-admin", url, "-file", appFile(t, apps.Sandbox)}, 2, "-reviewer NAME is required"},
		{"no file", []string{"apps", "register", "-admin", url, "-reviewer", "a"}, 2, "-file app.json is required"},
		{"a bad admin URL", []string{"apps", "list", "-admin", "127.0.0.1:9190"}, 2, "want the admin listener's URL"},
		{"nobody listening", []string{"apps", "list", "-admin", "http://127.0.0.1:1"}, 1, "is fhirwall-proxy running"},
		{"an unknown command", []string{"apps", "approve-all"}, 2, "usage: fhirwall apps"},
		{"import without a DSN", []string{"apps", "import", "-postgres", "", "-spool", "d", "-key", "k"}, 2, "-postgres DSN is required"},
		{"import without a spool", []string{"apps", "import", "-postgres", "postgres://x", "-spool", "", "-key", ""}, 2, "every registration is audited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, err := cli(t, tc.args...)
			if code != tc.code || err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("%v: %d %v; want exit %d, one line with %q", tc.args, code, err, tc.code, tc.want)
			}
		})
	}
	// A refused registration names the policy's problems.
	p := appFile(t, apps.Production)
	b, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(b), "https://app.example.org/cb", "http://app.example.org/cb", 1)), 0o600)
	if code, _, err := cli(t, "apps", "register", "-admin", url, "-file", p, "-reviewer", "a"); code != 1 || err == nil || !strings.Contains(err.Error(), "422") || !strings.Contains(err.Error(), "redirect_uris") {
		t.Fatalf("refused registration: %d %v", code, err)
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
