// Package stackadmin calls the stack's app registry admin API (/admin/apps/ on fhirwall-proxy's admin
// listener) as its administrator, for end-to-end tests that register, suspend or deactivate their own apps.
package stackadmin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// TokenFileEnv names a token file other than the stack's.
const TokenFileEnv = "FHIRWALL_ADMIN_TOKEN_FILE"

// Token is the admin API's bearer token: from the file $FHIRWALL_ADMIN_TOKEN_FILE names, else the stack's
// (.fhirwall/admin/admin.token, written by test/stack/fhirwall.sh). Without one t stops (require.Missing).
func Token(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv(TokenFileEnv), filepath.Join(stackenv.StateDir(), "admin", "admin.token")} {
		if p == "" {
			continue
		}
		if b, err := os.ReadFile(p); err == nil && len(bytes.TrimSpace(b)) > 0 {
			return string(bytes.TrimSpace(b))
		}
	}
	require.Missing(t, "no registry admin token ("+TokenFileEnv+" or .fhirwall/admin/admin.token; make stack-up)")
	return ""
}

// Apps sends method /admin/apps/<path> with body as JSON (nil: no body) and token, decodes the answer into
// out (nil: not decoded; an error's body as far as it fits, for the test's message) and returns the status.
// A request that gets no answer, or a 2xx answer that does not decode, fails t.
func Apps(ctx context.Context, t testing.TB, client *http.Client, token, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, stackenv.ProxyAdminURL+"/admin/apps/"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s /admin/apps/%s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil && resp.StatusCode < 300 {
			t.Fatalf("%s /admin/apps/%s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}
