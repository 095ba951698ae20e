package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
)

// The admin API (and fhirwall apps register/update, its client) applies the one registration policy that
// Dynamic Client Registration and the portal apply: what an anonymous registrant is refused, a reviewer
// registering or updating by hand is refused too, with the same reason.
func TestAdminRefusesWhatDCRAndThePortalRefuse(t *testing.T) {
	c := newServer(t)
	with := func(base map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(out, kv[i].(string))
			} else {
				out[kv[i].(string)] = kv[i+1]
			}
		}
		return out
	}
	p, b := patientApp("user-app", apps.Production), backendApp("svc-app", apps.Production)
	// Each case is valid but for the one rule it breaks: both APIs offer what is asked.
	both := []string{"patient-access", "provider-access"}
	for _, tc := range []struct {
		name string
		body map[string]any
		msg  string
	}{
		{"system scope on a user-facing public app", with(p, "requested_apis", both, "requested_scopes", []string{"openid", "system/*.rs"}), "backend service"},
		{"patient scope on a backend service", with(b, "requested_apis", both, "requested_scopes", []string{"system/*.rs", "patient/*.rs"}), "acts for no user"},
		{"jwks_uri on the cloud metadata address", with(b, "jwks", nil, "jwks_uri", "https://169.254.169.254/latest/meta-data"), "jwks_uri"},
		{"jwks_uri on loopback", with(b, "jwks", nil, "jwks_uri", "https://127.0.0.1:9443/keys"), "jwks_uri"},
		{"jwks_uri on localhost", with(b, "jwks", nil, "jwks_uri", "https://localhost/keys"), "jwks_uri"},
		{"jwks_uri on a private address", with(b, "jwks", nil, "jwks_uri", "https://10.0.0.7/keys"), "jwks_uri"},
		{"jwks_uri on a numeric host", with(b, "jwks", nil, "jwks_uri", "https://2130706433/keys"), "jwks_uri"},
		{"redirect with a Unicode IDN host", with(p, "redirect_uris", []string{"https://\u0435\u0445\u0430mple.com/cb"}), "A-label"},
		{"client_uri with a Unicode IDN host", with(p, "client_uri", "https://\u0435\u0445\u0430mple.com/"), "A-label"},
		{"name with a right-to-left override", with(p, "name", "Wallet \u202eppa lanruoJ"), "bidirectional"},
		{"organisation with a bidi isolate", with(p, "developer_org", "Labs \u2067x\u2069"), "bidirectional"},
	} {
		t.Run(tc.name, func(t *testing.T) { c.refused("POST", "/admin/apps/", tc.body, http.StatusUnprocessableEntity, tc.msg) })
	}
	if all, _ := c.store.List(context.Background()); len(all) != 0 {
		t.Errorf("refused registrations stored %d apps", len(all))
	}

	// An update is judged as a registration is: a registered backend cannot move its keys onto the servers'
	// own network, nor take a user's scopes, after the fact.
	a := c.app("POST", "/admin/apps/", backendApp("svc-app", apps.Sandbox), http.StatusCreated)
	body := func(a apps.App, kv ...any) map[string]any {
		raw, _ := json.Marshal(a)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		m["reviewer"] = "carol"
		return with(m, kv...)
	}
	c.refused("PUT", "/admin/apps/svc-app", body(a, "jwks", nil, "jwks_uri", "https://[::ffff:127.0.0.1]/keys"), http.StatusUnprocessableEntity, "jwks_uri")
	c.refused("PUT", "/admin/apps/svc-app", body(a, "redirect_uris", nil, "name", "Svc \u202e"), http.StatusUnprocessableEntity, "bidirectional")
	if got := c.app("GET", "/admin/apps/svc-app", nil, http.StatusOK); got.Version != a.Version || got.JWKSURI != "" {
		t.Errorf("a refused update changed the app: version %d, jwks_uri %q", got.Version, got.JWKSURI)
	}
	// The same app with a public key host updates.
	c.app("PUT", "/admin/apps/svc-app", body(a, "jwks", nil, "jwks_uri", "https://keys.org-a.example/jwks.json"), http.StatusOK)
}
