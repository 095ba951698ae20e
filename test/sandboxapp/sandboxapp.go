// Package sandboxapp registers sandbox apps on the stack's app registry for end-to-end tests of the sandbox
// APIs (docs/sandbox.md): as the developer portal and DCR do, through the registry's admin API
// (test/stackadmin), active at once, then waits for the registry's Keycloak sync to create the client.
package sandboxapp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/smartclient"
	"github.com/fhirwall/fhirwall/test/stackadmin"
	"github.com/fhirwall/fhirwall/test/stackauth"
)

// Backend is a sandbox backend service (SMART Backend Services, private_key_jwt with a P-384 key made here).
type Backend struct {
	ClientID string
	key      *ecdsa.PrivateKey
	kid      string
}

// syncWait is how long the registry's Keycloak sync may take to create a registered client.
const syncWait = 15 * time.Second

// RegisterBackend registers a sandbox backend service named prefix-<random> that asks for apis (it is
// approved for their sandboxes) and scopes, acting for org (Organization/<id>), and deactivates it when t
// ends. Without the registry's admin API t stops (require.Missing, naming what is missing).
func RegisterBackend(ctx context.Context, t testing.TB, client *http.Client, prefix string, apis []string, org string, scopes []string) *Backend {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	b := &Backend{ClientID: prefix + "-" + hex.EncodeToString(suffix), key: key, kid: prefix + "-1"}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: b.kid, Algorithm: "ES384", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	reg := map[string]any{
		"client_id": b.ClientID, "name": "Sandbox e2e backend " + prefix, "developer_org": "fhirwall e2e",
		"contacts": []map[string]string{{"email": "e2e@fhirwall.test"}}, "launch_types": []string{"backend"},
		"token_endpoint_auth_method": "private_key_jwt", "jwks": json.RawMessage(jwks),
		"requested_apis": apis, "requested_scopes": scopes,
		"environment": "sandbox", "tier": "backend", "org": org, "reviewer": "e2e",
	}
	token := stackadmin.Token(t)
	switch st := stackadmin.Apps(ctx, t, client, token, http.MethodPost, "", reg, nil); {
	case st == http.StatusNotFound || st == http.StatusUnauthorized || st == http.StatusServiceUnavailable:
		require.Missing(t, fmt.Sprintf("registry admin API answered %d: the stack's registry is not PostgreSQL with its admin API wired", st))
	case st >= 300:
		t.Fatalf("register sandbox backend %s: %d", b.ClientID, st)
	}
	t.Cleanup(func() {
		stackadmin.Apps(context.WithoutCancel(ctx), t, client, token, http.MethodPost, b.ClientID+"/deactivate",
			map[string]string{"reviewer": "e2e", "reason": "e2e test over"}, nil)
	})
	return b
}

// Token gets a token for scopes, waiting for the registry's Keycloak sync to have created the client (t
// stops with require.Missing when it has not after syncWait).
func (b *Backend) Token(ctx context.Context, t testing.TB, scopes []string) string {
	t.Helper()
	deadline := time.Now().Add(syncWait)
	for {
		tok, err := smartclient.BackendServiceToken(ctx, stackauth.Issuer, b.ClientID, b.key, b.kid, scopes)
		if err == nil {
			return tok.AccessToken
		}
		if time.Now().After(deadline) {
			require.Missing(t, fmt.Sprintf("Keycloak has no client %s %v after its registration (%v): registry.keycloak sync not wired", b.ClientID, syncWait, err))
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}
