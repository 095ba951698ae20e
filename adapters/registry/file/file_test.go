package file

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/decision"
)

func write(t *testing.T, path, body string) {
	t.Helper()
	// Write then rename, as editors and ConfigMaps do: the watcher never sees a half-written file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const oneClient = "clients:\n  - {id: patient-app, active: true, apis: [patient-access], scopes: [patient/*.rs]}\n"

func TestShippedRegistryRegistersTheRealmClients(t *testing.T) {
	r, err := Load(filepath.Join("..", "..", "..", "config", "clients.yaml"), config.KnownAPIs)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for id, wantPatientAccess := range map[string]bool{"patient-app": true, "provider-app": true,
		"provider-org-a": false, "provider-org-b": false, "payer-b": false} {
		c, err := r.Lookup(ctx, id)
		if err != nil || !c.Active {
			t.Fatalf("%s: %+v %v", id, c, err)
		}
		if got := contains(c.APIs, "patient-access"); got != wantPatientAccess {
			t.Errorf("%s enabled for patient-access: %v, want %v", id, got, wantPatientAccess)
		}
	}
	if c, _ := r.Lookup(ctx, "provider-org-a"); c.Org != "Organization/org-a" || c.Tier != "backend" {
		t.Errorf("provider-org-a: %+v", c)
	}
	if c, err := r.Lookup(ctx, "retired-app"); err != nil || c.Active {
		t.Errorf("retired-app must be registered and inactive: %+v %v", c, err)
	}
	if _, err := r.Lookup(ctx, "nobody"); !errors.Is(err, decision.ErrUnknownClient) {
		t.Errorf("unknown client: %v", err)
	}
}

func TestInvalidFileNamesEveryBadEntry(t *testing.T) {
	body := `clients:
  - {id: ok-app, active: true, apis: [patient-access], scopes: [patient/*.rs]}
  - {id: no-active, apis: [patient-access]}
  - {id: bad-api, active: true, apis: [patient-acess]}
  - {id: bad-scope, active: true, apis: [patient-access], scopes: [patient/Observation.xyz]}
  - {id: bad-org, active: true, apis: [prior-auth], org: org-a}
  - {id: ok-app, active: false, apis: [patient-access]}
  - {active: true, apis: [patient-access]}
`
	_, err := Parse([]byte(body), config.KnownAPIs)
	if err == nil {
		t.Fatal("invalid file accepted")
	}
	for _, want := range []string{"clients[1] (no-active): active", "clients[2] (bad-api): apis", "clients[3] (bad-scope): scope",
		"clients[4] (bad-org): org", "clients[5] (ok-app): id registered twice", "clients[6] (): id"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
	for name, body := range map[string]string{"empty": "", "misspelt key": "clients:\n  - {id: a, active: true, scope: [x]}\n", "no clients": "clients: []\n"} {
		if _, err := Parse([]byte(body), config.KnownAPIs); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestInvalidReloadKeepsTheOldSnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.yaml")
	write(t, path, oneClient)
	r, err := Load(path, config.KnownAPIs)
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, "clients:\n  - {id: patient-app, active: nope}\n")
	if err := r.Reload(); err == nil {
		t.Fatal("invalid file reloaded")
	}
	if c, err := r.Lookup(context.Background(), "patient-app"); err != nil || !c.Active {
		t.Fatalf("old snapshot lost: %+v %v", c, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil || r.Len() != 1 {
		t.Fatalf("missing file: err %v, %d clients", err, r.Len())
	}
}

func TestFileChangeIsPickedUpAndBadChangeIgnored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.yaml")
	write(t, path, oneClient)
	r, err := Load(path, config.KnownAPIs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reloads := make(chan error, 10)
	if err := r.Watch(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), func(err error) { reloads <- err }); err != nil {
		t.Fatal(err)
	}
	wait := func() error {
		t.Helper()
		select {
		case err := <-reloads:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("no reload after the file changed")
			return nil
		}
	}

	write(t, path, strings.Replace(oneClient, "active: true", "active: false", 1)) // deactivate
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if c, _ := r.Lookup(ctx, "patient-app"); c.Active {
		t.Fatal("deactivation not picked up")
	}

	write(t, path, "clients: [{id: patient-app, active: true, apis: [nowhere]}]\n")
	if err := wait(); err == nil {
		t.Fatal("invalid file reported as reloaded")
	}
	if c, err := r.Lookup(ctx, "patient-app"); err != nil || c.Active || c.APIs[0] != "patient-access" {
		t.Fatalf("snapshot changed by an invalid file: %+v %v", c, err)
	}
}

func TestLookupHandsOutCopies(t *testing.T) {
	r, err := Load(writeTemp(t, oneClient), config.KnownAPIs)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := r.Lookup(context.Background(), "patient-app")
	c.APIs[0], c.Scopes[0] = "prior-auth", "patient/*.cruds"
	if c, _ := r.Lookup(context.Background(), "patient-app"); c.APIs[0] != "patient-access" || c.Scopes[0] != "patient/*.rs" {
		t.Fatalf("snapshot changed through a lookup: %+v", c)
	}
}

func writeTemp(t *testing.T, body string) string {
	path := filepath.Join(t.TempDir(), "clients.yaml")
	write(t, path, body)
	return path
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestNotifyHostsAreHostsOrIPsWithAnOptionalPortNothingMore(t *testing.T) {
	entry := func(h string) string {
		return "clients:\n  - {id: org-a, active: true, apis: [prior-auth], notify_hosts: [\"" + h + "\"]}\n"
	}
	for _, h := range []string{"127.0.0.1", "127.0.0.1:8443", "hooks.org-a.example", "hooks.org-a.example:443", "::1", "[::1]", "[::1]:9000", "localhost"} {
		clients, err := Parse([]byte(entry(h)), config.KnownAPIs)
		if err != nil {
			t.Errorf("%q refused: %v", h, err)
			continue
		}
		if got := clients["org-a"].NotifyHosts; len(got) != 1 || got[0] != h {
			t.Errorf("%q read as %v", h, got)
		}
	}
	for _, h := range []string{"", "https://hooks.example", "hooks.example/path", "*.example", "user@hooks.example", "hooks.example:0",
		"hooks.example:99999", "hooks.example:http", "hooks..example", "-bad.example", "hooks.example?x=1", "hooks example"} {
		if _, err := Parse([]byte(entry(h)), config.KnownAPIs); err == nil || !strings.Contains(err.Error(), "notify_hosts") {
			t.Errorf("%q accepted (or refused without naming notify_hosts): %v", h, err)
		}
	}
}

func TestLookupHandsOutACopyOfNotifyHosts(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "clients.yaml")
	write(t, path, "clients:\n  - {id: org-a, active: true, apis: [prior-auth], notify_hosts: [127.0.0.1]}\n")
	r, err := Load(path, config.KnownAPIs)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := r.Lookup(context.Background(), "org-a")
	c.NotifyHosts[0] = "evil.example"
	if c2, _ := r.Lookup(context.Background(), "org-a"); c2.NotifyHosts[0] != "127.0.0.1" {
		t.Fatalf("a caller changed the shared snapshot: %v", c2.NotifyHosts)
	}
}

// Only the registry file (or a Kubernetes ..data swap) reloads it: logs and other files written beside it do
// not, so a busy directory does not reload the registry several times a second.
func TestWatchReloadsOnItsOwnFileOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "clients.yaml")
	write(t, path, oneClient)
	r, err := Load(path, config.KnownAPIs)
	if err != nil {
		t.Fatal(err)
	}
	reloads := make(chan error, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.Watch(ctx, slog.New(slog.DiscardHandler), func(err error) { reloads <- err }); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := os.WriteFile(filepath.Join(dir, "proxy.log"), []byte(strings.Repeat("x", i+1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-reloads:
		t.Fatal("a file beside the registry reloaded it")
	case <-time.After(400 * time.Millisecond):
	}
	write(t, path, oneClient)
	select {
	case err := <-reloads:
		if err != nil || r.Len() != 1 {
			t.Fatalf("reload: %v, %d clients", err, r.Len())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the registry file changed and was not reloaded")
	}
}
