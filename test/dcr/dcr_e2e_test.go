//go:build e2e

package dcr

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/adapters/registry/dcr"
	"github.com/fhirwall/fhirwall/adapters/registry/postgres"
	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/audit/audittest"
	"github.com/fhirwall/fhirwall/test/browser"
	"github.com/fhirwall/fhirwall/test/pgtest"
	"github.com/fhirwall/fhirwall/test/require"
)

// libraryRun is what register.mjs prints.
type libraryRun struct {
	Registered map[string]map[string]any `json:"registered"`
	Read       map[string]map[string]any `json:"read"`
	Errors     map[string]struct {
		Name            string `json:"name"`
		Error           string `json:"error"`
		Description     string `json:"error_description"`
		Status          int    `json:"status"`
		WWWAuthenticate string `json:"www_authenticate"`
	} `json:"errors"`
}

func TestOpenIDClientRegistersReadsBackAndMeetsTheRFCErrors(t *testing.T) {
	tools, err := browser.FindTools()
	if err == nil {
		if _, err = os.Stat(filepath.Join(tools.NodeModules, "openid-client", "package.json")); err != nil {
			err = os.ErrNotExist
		}
	}
	if err != nil {
		require.Missing(t, "node and openid-client: run bash test/stack/chromium.sh install ("+err.Error()+")")
	}
	dsn := pgtest.Schema(t, "dcr")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	spool, spoolDir, pub := audittest.Spool(t)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := postgres.Open(ctx, dsn, apps.NewAuditor(spool), log)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg, err := config.Load("../../config/fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}

	var h http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	defer srv.Close()
	registrar, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	trusted, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: registrar.Public(), KeyID: "registrar", Use: "sig"}}})
	if h, err = dcr.New(store, cfg.OfferedScopes(), dcr.Options{PublicURL: srv.URL, PerMinute: 100,
		TrustedRegistrars: [][]byte{trusted}, Log: log}); err != nil {
		t.Fatal(err)
	}

	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	wallet := map[string]any{
		"client_name": "Member Wallet", "redirect_uris": []string{"https://wallet.example/cb"},
		"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"}, "scope": "openid fhirUser launch/patient offline_access patient/*.rs",
		"contacts": []string{"dev@wallet.example"}, "software_id": "wallet-e2e",
	}
	with := func(m map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	backend := map[string]any{"client_name": "Provider Sync", "token_endpoint_auth_method": "private_key_jwt",
		"grant_types": []string{"client_credentials"}, "response_types": []string{}, "scope": "system/*.rs",
		"contacts": []string{"ops@clinic.example"}}
	arg, _ := json.Marshal(map[string]any{
		"base": srv.URL,
		"clients": map[string]any{
			"wallet":       wallet,
			"confidential": with(wallet, "token_endpoint_auth_method", "client_secret_basic", "client_name", "Web Portal"),
			"backend":      backend,
		},
		"bad": map[string]any{
			InvalidRedirect:               with(wallet, "redirect_uris", []string{"http://wallet.example/cb"}),
			"scope no API offers":         with(wallet, "scope", "openid patient/*.cruds"),
			"public client with a secret": with(wallet, "client_secret", "chosen-by-me"),
			"backend without keys":        backend,
			"statement not a JWT":         with(wallet, "software_statement", "garbage"),
			"statement of a stranger":     with(wallet, "software_statement", signed(t, stranger, map[string]any{"iss": "https://stranger.example"})),
		},
	})
	run := runLibrary(ctx, t, tools, arg)

	wantErrors := map[string]struct {
		code   string
		status int
	}{
		InvalidRedirect:               {dcr.InvalidRedirectURI, 400},
		"scope no API offers":         {dcr.InvalidClientMetadata, 400},
		"public client with a secret": {dcr.InvalidClientMetadata, 400},
		"backend without keys":        {dcr.InvalidClientMetadata, 400},
		"statement not a JWT":         {dcr.InvalidSoftwareStatement, 400},
		"statement of a stranger":     {dcr.UnapprovedSoftwareStatement, 400},
		"wrong token":                 {dcr.InvalidToken, 401},
	}
	for name, want := range wantErrors {
		got, ok := run.Errors[name]
		if !ok || got.Name != "OPError" || got.Error != want.code || got.Status != want.status {
			t.Errorf("%s: the library saw %+v, want an OPError %s with status %d", name, got, want.code, want.status)
		}
	}
	if got := run.Errors["wrong token"].WWWAuthenticate; got != `Bearer error="invalid_token"` {
		t.Errorf("wrong token: WWW-Authenticate %q", got)
	}

	secrets := []string{}
	for name, reg := range run.Registered {
		id, _ := reg["client_id"].(string)
		if !strings.HasPrefix(id, "dcr-") {
			t.Fatalf("%s: client_id %q", name, id)
		}
		tok, _ := reg["registration_access_token"].(string)
		secrets = append(secrets, tok)
		secret, hasSecret := reg["client_secret"].(string)
		if hasSecret != (name == "confidential") {
			t.Errorf("%s: client_secret issued %v", name, hasSecret)
		}
		if hasSecret {
			secrets = append(secrets, secret)
		}
		read := run.Read[name]
		if read["client_id"] != id || read["client_name"] != reg["client_name"] || read["scope"] != reg["scope"] {
			t.Errorf("%s: read back %v, registered %v", name, read, reg)
		}
		if _, ok := read["client_secret"]; ok {
			t.Errorf("%s: the read shows the client secret again", name)
		}
		app, err := store.Get(ctx, id)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if app.Environment != apps.Sandbox || app.State != apps.StateActive || app.Owner != dcr.Actor ||
			len(app.ApprovedAPIs) == 0 || !slices.Equal(app.ApprovedAPIs, app.RequestedAPIs) ||
			!slices.Equal(app.ApprovedScopes, app.RequestedScopes) || slices.ContainsFunc(app.RequestedAPIs, func(a string) bool { return strings.HasSuffix(a, "-sandbox") }) {
			t.Errorf("%s: stored %+v", name, app)
		}
		if name == "backend" {
			var set struct{ Keys []map[string]any }
			if err := json.Unmarshal(app.JWKS, &set); err != nil || len(set.Keys) != 1 || set.Keys[0]["kty"] != "EC" || set.Keys[0]["d"] != nil {
				t.Errorf("backend: JWKS %s, want the library's public key only", app.JWKS)
			}
		}
		evs, err := store.History(ctx, id)
		if err != nil || len(evs) != 1 || evs[0].Actor != dcr.Actor || evs[0].Action != "register" || evs[0].Reason != dcr.ReasonRegister {
			t.Errorf("%s: history %+v %v, want one register event by dcr", name, evs, err)
		}
	}
	if len(run.Registered) != 3 {
		t.Fatalf("registered %d clients, want 3", len(run.Registered))
	}

	// RFC 7592 delete, then the token is dead.
	wallet0 := run.Registered["wallet"]
	del, _ := http.NewRequestWithContext(ctx, http.MethodDelete, wallet0["registration_client_uri"].(string), nil)
	del.Header.Set("Authorization", "Bearer "+wallet0["registration_access_token"].(string))
	resp, err := http.DefaultClient.Do(del)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %v %v", resp, err)
	}
	resp.Body.Close()
	if app, _ := store.Get(ctx, wallet0["client_id"].(string)); app.State != apps.StateDeactivated {
		t.Errorf("after delete: %s", app.State)
	}
	if all, _ := store.List(ctx); len(all) != 3 {
		t.Errorf("%d apps in the registry, want the 3 registered (refusals store nothing)", len(all))
	}

	// The audit: each registration and the deletion an admin entry in a chain that verifies, by dcr, with
	// no credential in it.
	if err := spool.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.VerifySpool(spoolDir, audit.Keys{pub})
	if err != nil || rep.Break != nil || rep.Admin != 4 {
		t.Fatalf("audit verify: %v %s, want 4 admin entries and no break", err, rep)
	}
	actors := map[string]int{}
	segs, _ := filepath.Glob(filepath.Join(spoolDir, "*.seg"))
	for _, seg := range segs {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		for sc := bufio.NewScanner(bytes.NewReader(b)); sc.Scan(); {
			for _, s := range secrets {
				if strings.Contains(sc.Text(), s) {
					t.Errorf("an audit line holds a credential: %s", sc.Text())
				}
			}
			var e struct{ Kind, Actor, Action, Target string }
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Kind == audit.KindAdmin {
				actors[e.Actor+" "+e.Action]++
			}
		}
	}
	if actors["dcr register"] != 3 || actors["dcr:"+wallet0["client_id"].(string)+" deactivate"] != 1 {
		t.Errorf("admin entries by actor and action: %v", actors)
	}
}

// InvalidRedirect names the bad case whose redirect URI is plain http off loopback.
const InvalidRedirect = "http redirect URI"

func signed(t *testing.T, key *ecdsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runLibrary(ctx context.Context, t *testing.T, tools browser.Tools, arg []byte) libraryRun {
	t.Helper()
	cmd := exec.CommandContext(ctx, tools.Node, "register.mjs", string(arg))
	cmd.Env = append(os.Environ(), "FHIRWALL_NODE_MODULES="+tools.NodeModules)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("register.mjs: %v\n%s", err, stderr.String())
	}
	var run libraryRun
	if err := json.Unmarshal(stdout.Bytes(), &run); err != nil {
		t.Fatalf("register.mjs printed %q: %v (stderr %s)", stdout.String(), err, stderr.String())
	}
	return run
}
