//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/smartclient"
)

// TestBackendJWKSRotationThroughTheRegistry: a backend service rotates its signing key the way the registry
// lets it — publish the new key beside the old one, then drop the old one — and Keycloak, kept in sync by the
// registry, accepts exactly the keys the registry lists at each step.
func TestBackendJWKSRotationThroughTheRegistry(t *testing.T) {
	evidence.Proves(t, "BACKEND-02")
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	oldKey, nextKey := newKey(), newKey()
	jwks := func(keys map[string]*ecdsa.PrivateKey) json.RawMessage {
		var set jose.JSONWebKeySet
		for kid, k := range keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "ES384", Use: "sig"})
		}
		b, err := json.Marshal(set)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	clientID := "e2e-jwks-rotation-" + hex.EncodeToString(suffix)
	scopes := []string{"system/*.rs"}
	registerSandboxApp(t, map[string]any{
		"client_id": clientID, "name": "JWKS rotation e2e backend", "developer_org": "fhirwall e2e",
		"contacts": []map[string]string{{"email": "e2e@fhirwall.test"}}, "launch_types": []string{"backend"},
		"token_endpoint_auth_method": "private_key_jwt", "jwks": jwks(map[string]*ecdsa.PrivateKey{"old": oldKey}),
		"requested_apis": []string{"provider-access"}, "requested_scopes": scopes,
		"environment": "sandbox", "tier": "backend", "org": "Organization/sandbox-org", "reviewer": "e2e",
	})
	// signs reports whether Keycloak gives a token for an assertion signed with key, waiting up to 15 s for
	// the registry's change to reach it when want says what it should come to.
	signs := func(key *ecdsa.PrivateKey, kid string, want bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, err := smartclient.BackendServiceToken(ctx(t), issuer, clientID, key, kid, scopes)
			if (err == nil) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("key %s: token %v, want accepted=%v", kid, err, want)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	update := func(keys map[string]*ecdsa.PrivateKey) {
		t.Helper()
		tok := adminToken(t)
		var app map[string]any
		if st := admin(t, tok, http.MethodGet, clientID, nil, &app); st != http.StatusOK {
			t.Fatalf("GET the app: %d", st)
		}
		for _, k := range []string{"idp_sync", "state", "approved_apis", "approved_scopes", "created_at", "updated_at"} {
			delete(app, k) // the lifecycle's fields, not the registrant's
		}
		app["jwks"], app["reviewer"] = jwks(keys), "e2e"
		if st := admin(t, tok, http.MethodPut, clientID, app, nil); st != http.StatusOK {
			t.Fatalf("PUT the app with the new key set: %d", st)
		}
	}

	signs(oldKey, "old", true)
	signs(nextKey, "next", false)
	// 1. Publish the next key beside the old one: both sign.
	update(map[string]*ecdsa.PrivateKey{"old": oldKey, "next": nextKey})
	signs(nextKey, "next", true)
	signs(oldKey, "old", true)
	// 2. Drop the old key: only the next one signs.
	update(map[string]*ecdsa.PrivateKey{"next": nextKey})
	signs(oldKey, "old", false)
	signs(nextKey, "next", true)
}
