//go:build e2e

package adversarial

// An anonymous Dynamic Client Registration (POST /register on the portal listener) of a backend service:
// a sandbox app of no organisation. Whatever it asks Provider Access sandbox for (searches, reads of real
// members, another organisation's attribution Group's $export), nothing real leaves, and its token reaches
// no production API.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/smartclient"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

const (
	portalRegister         = "https://127.0.0.1:9443/register"
	providerAccessSandbox  = "/provider-access-sandbox/fhir"
	dcrBackendSyncDeadline = 20 * time.Second
)

// dcrBackend registers a backend service anonymously and returns its token; the registration is deleted
// (RFC 7592) when the test ends.
func dcrBackend(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "h8-1", Algorithm: "ES384", Use: "sig"}}}
	body, _ := json.Marshal(map[string]any{"client_name": "H8 anonymous backend", "token_endpoint_auth_method": "private_key_jwt",
		"grant_types": []string{"client_credentials"}, "scope": "system/*.rs", "contacts": []string{"h8@fhirwall.test"}, "jwks": set})
	hc, err := stackenv.Client(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		ClientID string `json:"client_id"`
		Token    string `json:"registration_access_token"`
	}
	for deadline := time.Now().Add(70 * time.Second); ; time.Sleep(2 * time.Second) {
		resp, err := hc.Post(portalRegister, "application/json", bytes.NewReader(body))
		if err != nil {
			require.Missing(t, fmt.Sprintf("the portal listener does not answer (%v): DCR is not wired in this stack", err))
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests && time.Now().Before(deadline) {
			continue // the per-address limit is shared with the other DCR tests
		}
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &info) != nil {
			t.Fatalf("register: %d %s", resp.StatusCode, b)
		}
		break
	}
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, portalRegister+"/"+info.ClientID, nil)
		req.Header.Set("Authorization", "Bearer "+info.Token)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	for deadline := time.Now().Add(dcrBackendSyncDeadline); ; time.Sleep(500 * time.Millisecond) {
		tok, err := smartclient.BackendServiceToken(testContext(t), escapeIssuer, info.ClientID, key, "h8-1", []string{"system/*.rs"})
		if err == nil {
			return tok.AccessToken
		}
		if time.Now().After(deadline) {
			require.Missing(t, fmt.Sprintf("Keycloak has no client %s %s after its registration (%v): registry.keycloak sync not wired", info.ClientID, dcrBackendSyncDeadline, err))
		}
	}
}

func TestAnonymousBackendSeesNoRealMemberAnywhere(t *testing.T) {
	evidence.Proves(t, "BACKEND-03", "SEC-05")
	if a, err := send(testContext(t), modes()[1], providerAccessSandbox, "", get("/.well-known/smart-configuration")); err != nil || a.status != http.StatusOK {
		require.Missing(t, fmt.Sprintf("the standalone proxy does not serve %s: restart the stack's fhirwall built from this tree", providerAccessSandbox))
	}
	tok := dcrBackend(t)
	sandboxCalls := []call{
		get("/Patient"), get("/Patient?_id=member-01"), get("/Patient/member-01"), get("/Patient/sandbox-01"),
		get("/ExplanationOfBenefit?patient=member-01"), get("/ExplanationOfBenefit?patient=sandbox-01"),
		get("/Group/attribution-org-a/$export", "Accept", "application/fhir+json", "Prefer", "respond-async"),
		get("/Group/attribution-sandbox-org/$export", "Accept", "application/fhir+json", "Prefer", "respond-async"),
		get("/Patient?_has:Group:member:_id=attribution-org-a"),
		get("/Organization?_revinclude=Group:managing-entity"),
	}
	for _, m := range modes() {
		for _, c := range sandboxCalls {
			t.Run(m.name+providerAccessSandbox+c.String(), func(t *testing.T) {
				a, err := send(testContext(t), m, providerAccessSandbox, tok, c)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%d", a.status)
				if a.status == http.StatusAccepted {
					t.Errorf("an organisation-less backend started an export: %s", a)
				}
				if a.status >= 200 && a.status < 300 {
					if bad := syntheticOnly(a, c); len(bad) > 0 {
						t.Errorf("real data left a sandbox: %v\n%s", bad, a)
					}
				}
			})
		}
		for _, api := range []string{patientAccess, providerAccess, payerToPayer, "/prior-auth/fhir"} {
			c := get("/Patient/member-01")
			t.Run(m.name+api+c.String(), func(t *testing.T) {
				a, err := send(testContext(t), m, api, tok, c)
				if err != nil {
					t.Fatal(err)
				}
				if a.status != http.StatusUnauthorized && a.status != http.StatusForbidden {
					t.Errorf("an anonymous backend's token on %s: %s, want 401 or 403", api, a)
				}
			})
		}
	}
}

// An anonymous registrant cannot trade a member's password for a token through the client it registered
// (Resource Owner Password Credentials: OAuth 2.0 Security BCP §2.4 MUST NOT): Keycloak refuses the grant
// for it. Keycloak answers invalid_client until the registry's sync has created the client.
func TestDCRClientCannotUseThePasswordGrant(t *testing.T) {
	body := `{"client_name":"H8 password grant probe","token_endpoint_auth_method":"none","redirect_uris":["http://127.0.0.1:7777/cb"],` +
		`"scope":"openid patient/*.rs","contacts":["h8@fhirwall.test"]}`
	hc, err := stackenv.Client(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		ClientID string `json:"client_id"`
		Token    string `json:"registration_access_token"`
	}
	for deadline := time.Now().Add(70 * time.Second); ; time.Sleep(2 * time.Second) {
		resp, err := hc.Post(portalRegister, "application/json", bytes.NewReader([]byte(body)))
		if err != nil {
			require.Missing(t, fmt.Sprintf("the portal listener does not answer (%v): DCR is not wired in this stack", err))
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests && time.Now().Before(deadline) {
			continue
		}
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &info) != nil {
			t.Fatalf("register: %d %s", resp.StatusCode, b)
		}
		break
	}
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, portalRegister+"/"+info.ClientID, nil)
		req.Header.Set("Authorization", "Bearer "+info.Token)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	form := "grant_type=password&client_id=" + info.ClientID + "&username=member01&password=fhirwall-demo&scope=openid"
	for deadline := time.Now().Add(dcrBackendSyncDeadline); ; time.Sleep(500 * time.Millisecond) {
		resp, err := http.Post(escapeIssuer+"/protocol/openid-connect/token", "application/x-www-form-urlencoded", bytes.NewReader([]byte(form)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		switch {
		case resp.StatusCode == http.StatusOK:
			t.Fatalf("an anonymous DCR client got member01's token with the password grant")
		case e.Error == "unauthorized_client":
			return // the client exists and may not use the grant
		case time.Now().After(deadline):
			require.Missing(t, fmt.Sprintf("Keycloak still answers %d %s for %s after %s: registry.keycloak sync not wired", resp.StatusCode, e.Error, info.ClientID, dcrBackendSyncDeadline))
		}
	}
}
