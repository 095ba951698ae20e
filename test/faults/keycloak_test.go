//go:build e2e && faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/test/stackadmin"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// registryAdmin calls the stack's app registry admin API (/admin/apps/ on proxy.admin) with its token.
func registryAdmin(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var out map[string]any
	status := stackadmin.Apps(context.Background(), t, http.DefaultClient, stackadmin.Token(t), method, path, body, &out)
	return status, out
}

// keycloakHasClient asks Keycloak, as the registry's own service account, whether the realm has clientID.
func keycloakHasClient(t *testing.T, clientID string) bool {
	t.Helper()
	secret, err := os.ReadFile(filepath.Join(stackenv.StateDir(), "keycloak", "secrets", "registry.secret"))
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"fhirwall-registry"}, "client_secret": {strings.TrimSpace(string(secret))}}
	resp, err := http.PostForm("http://127.0.0.1:8180/realms/fhirwall/protocol/openid-connect/token", form)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:8180/admin/realms/fhirwall/clients?clientId="+url.QueryEscape(clientID), nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var clients []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&clients); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("Keycloak clients?clientId=%s: %d %v", clientID, resp.StatusCode, err)
	}
	return len(clients) == 1
}

func syncState(t *testing.T, clientID string) map[string]any {
	t.Helper()
	status, app := registryAdmin(t, http.MethodGet, clientID, nil)
	if status != http.StatusOK {
		t.Fatalf("GET /admin/apps/%s: %d %v", clientID, status, app)
	}
	s, _ := app["idp_sync"].(map[string]any)
	return s
}

// TestRegistrationDuringAKeycloakOutageCompletesAfterItsReturn: with Keycloak stopped, an app registers
// (the registry commits it, audited) and the registry shows its Keycloak change pending with the reason;
// once Keycloak is back the change reaches it without anyone's help.
func TestRegistrationDuringAKeycloakOutageCompletesAfterItsReturn(t *testing.T) {
	if err := stack(t, "keycloak", "stop"); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = stack(t, "keycloak", "start")
		}
	})
	clientID := fmt.Sprintf("faults-kc-outage-%d", time.Now().UnixNano())
	status, app := registryAdmin(t, http.MethodPost, "", map[string]any{
		"client_id": clientID, "name": "Registered while Keycloak was down", "developer_org": "fhirwall faults",
		"contacts":      []map[string]string{{"email": "faults@fhirwall.test"}},
		"redirect_uris": []string{"http://127.0.0.1:9300/callback"}, "launch_types": []string{"standalone"},
		"token_endpoint_auth_method": "none", "requested_apis": []string{"patient-access"},
		"requested_scopes": []string{"openid", "launch/patient", "patient/*.rs"}, "environment": "sandbox", "tier": "standard",
		"reviewer": "faults", "reason": "registered during a Keycloak outage",
	})
	if status != http.StatusCreated || app["state"] != "active" {
		t.Fatalf("registration with Keycloak down: %d %v; want 201 and the sandbox app active", status, app)
	}
	t.Cleanup(func() {
		registryAdmin(t, http.MethodPost, clientID+"/deactivate", map[string]string{"reviewer": "faults", "reason": "end of the outage test"})
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := syncState(t, clientID)
		if s["pending"] == true && s["last_error"] != nil && s["last_error"] != "" {
			t.Logf("while Keycloak is down: %v", s)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registry never showed the Keycloak change pending with its error: %v", s)
		}
		time.Sleep(500 * time.Millisecond)
	}

	if err := stack(t, "keycloak", "start"); err != nil {
		t.Fatal(err)
	}
	restarted = true
	back := time.Now()
	deadline = back.Add(60 * time.Second) // the retry backoff is capped at 30 s
	for {
		if s := syncState(t, clientID); s["pending"] == false && keycloakHasClient(t, clientID) {
			t.Logf("in Keycloak %s after it came back", time.Since(back).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach Keycloak within a minute of its return: %v", clientID, syncState(t, clientID))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
