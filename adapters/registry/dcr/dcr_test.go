package dcr

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirwall/fhirwall/adapters/registry/admin/admintest"
	"github.com/fhirwall/fhirwall/adapters/registry/apps"
)

const publicURL = "https://portal.example"

// testOffered is what the APIs of the tests offer; the sandbox API beside patient-access must never be
// requested (a sandbox app carries its base API's name).
func testOffered() map[string][]string {
	pa := []string{"openid", "fhirUser", "launch", "launch/patient", "offline_access", "patient/*.rs"}
	return map[string][]string{
		"patient-access":         pa,
		"patient-access-sandbox": pa,
		"provider-access":        {"system/*.rs", "user/*.rs"},
	}
}

// clockFake is a settable clock.
type clockFake struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clockFake) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clockFake) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	h     http.Handler
	store *admintest.FakeStore
	clock *clockFake
	// registrar signs trusted software statements; stranger is a key nobody trusts.
	registrar, stranger *ecdsa.PrivateKey
}

func newFixture(t *testing.T, perMinute int) *fixture {
	t.Helper()
	f := &fixture{store: admintest.NewFakeStore(), clock: &clockFake{t: time.Unix(1_800_000_000, 0)},
		registrar: newKey(t), stranger: newKey(t)}
	h, err := New(f.store, testOffered(), Options{PublicURL: publicURL + "/", PerMinute: perMinute,
		TrustedRegistrars: [][]byte{jwks(t, f.registrar.Public(), "registrar-1")}, Now: f.clock.now,
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	return f
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func jwks(t *testing.T, key any, kid string) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key, KeyID: kid, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sign(t *testing.T, key any, kid string, alg jose.SignatureAlgorithm, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
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

// answer is a response as a client reads it.
type answer struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

func (a answer) str(name string) string { s, _ := a.body[name].(string); return s }

func (f *fixture) do(t *testing.T, method, path, body string, hdr map[string]string) answer {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	a := answer{status: w.Code, header: w.Header(), raw: w.Body.String()}
	if strings.TrimSpace(a.raw) != "" {
		if err := json.Unmarshal(w.Body.Bytes(), &a.body); err != nil {
			t.Fatalf("%s %s: answer is not a JSON object: %q", method, path, a.raw)
		}
	}
	return a
}

func (f *fixture) register(t *testing.T, body string) answer {
	t.Helper()
	a := f.do(t, http.MethodPost, "/register", body, nil)
	if a.status != http.StatusCreated {
		t.Fatalf("register: %d %s", a.status, a.raw)
	}
	return a
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// jsonOf marshals a test body.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// publicApp is a SMART standalone-launch patient app, a public client (PKCE).
func publicApp() map[string]any {
	return map[string]any{
		"client_name": "Member Wallet", "redirect_uris": []string{"https://wallet.example/cb", "http://127.0.0.1:7777/cb"},
		"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"}, "scope": "openid fhirUser launch/patient offline_access patient/*.rs",
		"contacts": []string{"dev@wallet.example"}, "client_uri": "https://wallet.example",
		"policy_uri": "https://wallet.example/privacy", "software_id": "wallet", "software_version": "1.2",
	}
}

func backendApp(t *testing.T) map[string]any {
	var set map[string]any
	if err := json.Unmarshal(jwks(t, newKey(t).Public(), "app-1"), &set); err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"client_name": "Provider Sync", "token_endpoint_auth_method": "private_key_jwt",
		"grant_types": []string{"client_credentials"}, "scope": "system/*.rs",
		"contacts": []string{"ops@clinic.example"}, "jwks": set,
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

var clientIDShape = regexp.MustCompile(`^dcr-[0-9a-f]{32}$`)

func TestAnonymousRegistrationIsAnActiveSandboxAppInOneAuditedEvent(t *testing.T) {
	f := newFixture(t, 1000)
	a := f.register(t, jsonOf(t, publicApp()))
	id := a.str("client_id")
	if !clientIDShape.MatchString(id) {
		t.Fatalf("client_id %q, want dcr- and 32 hex digits", id)
	}
	if _, ok := a.body["client_secret"]; ok {
		t.Errorf("a public client got a client_secret: %s", a.raw)
	}
	if _, ok := a.body["client_secret_expires_at"]; ok {
		t.Errorf("a public client got client_secret_expires_at: %s", a.raw)
	}
	if tok := a.str("registration_access_token"); len(tok) != 43 {
		t.Errorf("registration_access_token %q: want 32 random bytes, base64url", tok)
	}
	if got := a.str("registration_client_uri"); got != publicURL+"/register/"+id {
		t.Errorf("registration_client_uri %q", got)
	}
	if a.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q: the answer holds credentials", a.header.Get("Cache-Control"))
	}
	app, err := f.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if int64(a.body["client_id_issued_at"].(float64)) != app.CreatedAt.Unix() {
		t.Errorf("client_id_issued_at %v, app created %v", a.body["client_id_issued_at"], app.CreatedAt)
	}
	want := []string{"openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs"}
	if app.Environment != apps.Sandbox || app.State != apps.StateActive || app.Owner != Actor ||
		!slices.Equal(app.RequestedAPIs, []string{"patient-access"}) || !slices.Equal(app.ApprovedAPIs, app.RequestedAPIs) ||
		!slices.Equal(app.RequestedScopes, want) || !slices.Equal(app.ApprovedScopes, want) ||
		!slices.Equal(app.LaunchTypes, []string{apps.LaunchStandalone}) || app.SoftwareID != "wallet" {
		t.Errorf("stored app: %+v", app)
	}
	evs, _ := f.store.History(context.Background(), id)
	if len(evs) != 1 || evs[0].Actor != Actor || evs[0].Action != "register" || evs[0].Reason != ReasonRegister {
		t.Errorf("history %+v, want one register event by dcr with the sandbox reason", evs)
	}
}

func TestConfidentialClientSeesItsSecretOnlyInTheRegistrationAnswer(t *testing.T) {
	f := newFixture(t, 1000)
	a := f.register(t, jsonOf(t, with(publicApp(), "token_endpoint_auth_method", "client_secret_basic")))
	secret, tok := a.str("client_secret"), a.str("registration_access_token")
	if len(secret) != 43 || secret == tok {
		t.Fatalf("client_secret %q: want 32 random bytes, base64url, not the registration token", secret)
	}
	if exp, ok := a.body["client_secret_expires_at"].(float64); !ok || exp != 0 {
		t.Errorf("client_secret_expires_at %v: want 0 (never)", a.body["client_secret_expires_at"])
	}
	read := f.do(t, http.MethodGet, "/register/"+a.str("client_id"), "", bearer(tok))
	if read.status != http.StatusOK {
		t.Fatalf("read: %d %s", read.status, read.raw)
	}
	if strings.Contains(read.raw, secret) || read.body["client_secret"] != nil {
		t.Errorf("the read shows the secret again: %s", read.raw)
	}
	if read.str("token_endpoint_auth_method") != "client_secret_basic" || read.body["client_secret_expires_at"] != float64(0) {
		t.Errorf("read: %s", read.raw)
	}
	app, _ := f.store.Get(context.Background(), a.str("client_id"))
	if b, _ := json.Marshal(app); strings.Contains(string(b), secret) || strings.Contains(string(b), tok) {
		t.Errorf("the app record holds a credential: %s", b)
	}
}

func TestBackendServiceRegistersWithItsPublicKeys(t *testing.T) {
	f := newFixture(t, 1000)
	a := f.register(t, jsonOf(t, backendApp(t)))
	if _, ok := a.body["client_secret"]; ok {
		t.Errorf("private_key_jwt client got a secret: %s", a.raw)
	}
	if a.body["response_types"] != nil || !slices.Equal(toStrings(a.body["grant_types"]), []string{"client_credentials"}) {
		t.Errorf("grant/response types: %s", a.raw)
	}
	app, _ := f.store.Get(context.Background(), a.str("client_id"))
	if !slices.Equal(app.LaunchTypes, []string{apps.LaunchBackend}) || !slices.Equal(app.ApprovedAPIs, []string{"provider-access"}) ||
		app.TokenAuthMethod != apps.AuthPrivateKeyJWT || len(app.JWKS) == 0 {
		t.Errorf("stored app: %+v", app)
	}
}

func TestEHRLaunchScopeRegistersAnEHRLaunch(t *testing.T) {
	f := newFixture(t, 1000)
	a := f.register(t, jsonOf(t, with(publicApp(), "scope", "launch openid patient/*.rs")))
	app, _ := f.store.Get(context.Background(), a.str("client_id"))
	if !slices.Equal(app.LaunchTypes, []string{apps.LaunchStandalone, apps.LaunchEHR}) {
		t.Errorf("launch types %v", app.LaunchTypes)
	}
}

func TestUnknownMembersAreIgnoredAndNotRegistered(t *testing.T) {
	f := newFixture(t, 1000)
	a := f.register(t, jsonOf(t, with(publicApp(), "application_type", "web", "x_custom", 7, "Client_Name", "Shadow")))
	for _, m := range []string{"application_type", "x_custom", "Client_Name"} {
		if _, ok := a.body[m]; ok {
			t.Errorf("%s echoed as registered: %s", m, a.raw)
		}
	}
	if a.str("client_name") != "Member Wallet" {
		t.Errorf("client_name %q: a differently cased member must not count as client_name", a.str("client_name"))
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestRefusalsCarryTheRFC7591ErrorCodesAndRegisterNothing(t *testing.T) {
	f := newFixture(t, 1000)
	now := f.clock.now().Unix()
	good := sign(t, f.registrar, "registrar-1", jose.ES256, map[string]any{"iss": "https://registrar.example", "iat": now})
	privJWKS := map[string]any{"keys": []any{map[string]any{"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "c"}}}
	cases := []struct {
		name, body, contentType string
		code                    string
	}{
		{"http redirect off loopback", jsonOf(t, with(publicApp(), "redirect_uris", []string{"http://wallet.example/cb"})), "", InvalidRedirectURI},
		{"redirect with a fragment", jsonOf(t, with(publicApp(), "redirect_uris", []string{"https://wallet.example/cb#x"})), "", InvalidRedirectURI},
		{"redirect wildcard", jsonOf(t, with(publicApp(), "redirect_uris", []string{"https://*.wallet.example/cb"})), "", InvalidRedirectURI},
		{"redirect twice", jsonOf(t, with(publicApp(), "redirect_uris", []string{"https://wallet.example/cb", "https://wallet.example/cb"})), "", InvalidRedirectURI},
		{"redirect not a list", jsonOf(t, with(publicApp(), "redirect_uris", "https://wallet.example/cb")), "", InvalidRedirectURI},
		{"code grant without redirect", jsonOf(t, with(publicApp(), "redirect_uris", nil)), "", InvalidClientMetadata},
		{"scope no API offers", jsonOf(t, with(publicApp(), "scope", "openid patient/*.cruds")), "", InvalidClientMetadata},
		{"scope malformed", jsonOf(t, with(publicApp(), "scope", "openid patient/Observation")), "", InvalidClientMetadata},
		{"scope without a resource scope", jsonOf(t, with(publicApp(), "scope", "openid fhirUser")), "", InvalidClientMetadata},
		{"scope missing", jsonOf(t, with(publicApp(), "scope", nil)), "", InvalidClientMetadata},
		{"non-resource scope the API does not offer", jsonOf(t, with(publicApp(), "scope", "openid profile patient/*.rs")), "", InvalidClientMetadata},
		{"scope twice", jsonOf(t, with(publicApp(), "scope", "patient/*.rs patient/*.rs")), "", InvalidClientMetadata},
		{"client_secret sent", jsonOf(t, with(publicApp(), "token_endpoint_auth_method", "client_secret_basic", "client_secret", "mine")), "", InvalidClientMetadata},
		{"none with a secret", jsonOf(t, with(publicApp(), "client_secret", "s3cret")), "", InvalidClientMetadata},
		{"client_id sent", jsonOf(t, with(publicApp(), "client_id", "my-own-id")), "", InvalidClientMetadata},
		{"registration token sent", jsonOf(t, with(publicApp(), "registration_access_token", "x")), "", InvalidClientMetadata},
		{"backend without keys", jsonOf(t, with(backendApp(t), "jwks", nil)), "", InvalidClientMetadata},
		{"backend with a secret method", jsonOf(t, with(backendApp(t), "jwks", nil, "token_endpoint_auth_method", "client_secret_basic")), "", InvalidClientMetadata},
		{"private key in the JWKS", jsonOf(t, with(backendApp(t), "jwks", privJWKS)), "", InvalidClientMetadata},
		{"jwks not an object", jsonOf(t, with(backendApp(t), "jwks", "keys")), "", InvalidClientMetadata},
		{"unknown auth method", jsonOf(t, with(publicApp(), "token_endpoint_auth_method", "tls_client_auth")), "", InvalidClientMetadata},
		{"implicit grant", jsonOf(t, with(publicApp(), "grant_types", []string{"implicit"}, "response_types", []string{"token"})), "", InvalidClientMetadata},
		{"code grant without code response", jsonOf(t, with(publicApp(), "response_types", []string{"token"})), "", InvalidClientMetadata},
		{"refresh without code", jsonOf(t, with(backendApp(t), "grant_types", []string{"client_credentials", "refresh_token"})), "", InvalidClientMetadata},
		// SMART App Launch 2.2 §scopes: system/ scopes are a backend service's (client credentials, no user);
		// patient/ and user/ scopes are a user's, granted through the authorization code flow.
		{"system scope on a user-facing public app", jsonOf(t, with(publicApp(), "scope", "system/*.rs")), "", InvalidClientMetadata},
		{"system scope beside patient scopes on a user-facing app", jsonOf(t, with(publicApp(), "scope", "openid patient/*.rs system/*.rs")), "", InvalidClientMetadata},
		{"user scope on a backend service", jsonOf(t, with(backendApp(t), "scope", "user/*.rs")), "", InvalidClientMetadata},
		{"patient scope on a backend service", jsonOf(t, with(backendApp(t), "scope", "patient/*.rs")), "", InvalidClientMetadata},
		// A redirect URI's host as a Unicode IDN (Cyrillic "е", "х", "а" posing as example.com) reads as another
		// host to a reviewer; its A-label (xn--) form is registered instead.
		{"redirect with a Unicode IDN host", jsonOf(t, with(publicApp(), "redirect_uris", []string{"https://\u0435\u0445\u0430mple.com/cb"})), "", InvalidRedirectURI},
		// Keycloak fetches a private_key_jwt client's jwks_uri: an anonymous registrant must not point it at the
		// server's own network (blind SSRF).
		{"jwks_uri on loopback", jsonOf(t, with(backendApp(t), "jwks", nil, "jwks_uri", "https://127.0.0.1:9443/admin")), "", InvalidClientMetadata},
		{"jwks_uri on localhost", jsonOf(t, with(backendApp(t), "jwks", nil, "jwks_uri", "https://localhost/keys")), "", InvalidClientMetadata},
		{"jwks_uri on a link-local address", jsonOf(t, with(backendApp(t), "jwks", nil, "jwks_uri", "https://169.254.169.254/latest/meta-data")), "", InvalidClientMetadata},
		{"jwks_uri on a private address", jsonOf(t, with(backendApp(t), "jwks", nil, "jwks_uri", "https://10.0.0.7/keys")), "", InvalidClientMetadata},
		{"jwks_uri on an IPv6 loopback", jsonOf(t, with(backendApp(t), "jwks", nil, "jwks_uri", "https://[::1]/keys")), "", InvalidClientMetadata},
		{"jwks_uri on an IPv4-mapped loopback", jsonOf(t, with(backendApp(t), "jwks", nil, "jwks_uri", "https://[::ffff:127.0.0.1]/keys")), "", InvalidClientMetadata},
		{"user app and backend at once", jsonOf(t, with(publicApp(), "grant_types", []string{"authorization_code", "client_credentials"})), "", InvalidClientMetadata},
		{"no contacts", jsonOf(t, with(publicApp(), "contacts", nil)), "", InvalidClientMetadata},
		{"contact not an address", jsonOf(t, with(publicApp(), "contacts", []string{"Bob <bob@x.example>"})), "", InvalidClientMetadata},
		{"no client_name", jsonOf(t, with(publicApp(), "client_name", nil)), "", InvalidClientMetadata},
		// Bidirectional overrides make a name read as another in the reviewer console and on Keycloak's consent page.
		{"client_name with a right-to-left override", jsonOf(t, with(publicApp(), "client_name", "Wallet \u202eppa lanruoJ")), "", InvalidClientMetadata},
		{"client_name with a bidi isolate", jsonOf(t, with(publicApp(), "client_name", "Wallet \u2067x\u2069")), "", InvalidClientMetadata},
		{"client_name forging a log line", jsonOf(t, with(publicApp(), "client_name", "ok\nlevel=ERROR")), "", InvalidClientMetadata},
		{"http policy_uri", jsonOf(t, with(publicApp(), "policy_uri", "http://wallet.example/p")), "", InvalidClientMetadata},
		{"client_name not a string", jsonOf(t, with(publicApp(), "client_name", 42)), "", InvalidClientMetadata},
		{"member twice", `{"client_name":"A","client_name":"B"}`, "", InvalidClientMetadata},
		{"member twice inside a JWK", strings.Replace(jsonOf(t, backendApp(t)), `"kty":`, `"x":"AAAA","kty":`, 1), "", InvalidClientMetadata},
		{"not JSON", `client_name=A`, "", InvalidClientMetadata},
		{"two JSON values", jsonOf(t, publicApp()) + "{}", "", InvalidClientMetadata},
		{"an array", `[]`, "", InvalidClientMetadata},
		{"form content type", jsonOf(t, publicApp()), "application/x-www-form-urlencoded", InvalidClientMetadata},
		{"larger than 64 KiB", jsonOf(t, with(publicApp(), "x_padding", strings.Repeat("a", MaxBody))), "", InvalidClientMetadata},
		{"statement not a JWT", jsonOf(t, with(publicApp(), "software_statement", "not-a-jwt")), "", InvalidSoftwareStatement},
		{"statement not a string", jsonOf(t, with(publicApp(), "software_statement", 1)), "", InvalidSoftwareStatement},
		{"statement unsigned", jsonOf(t, with(publicApp(), "software_statement", "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")), "", InvalidSoftwareStatement},
		{"statement HS256", jsonOf(t, with(publicApp(), "software_statement", sign(t, []byte(strings.Repeat("k", 32)), "registrar-1", jose.HS256, map[string]any{"iss": "x"}))), "", InvalidSoftwareStatement},
		{"statement by a stranger", jsonOf(t, with(publicApp(), "software_statement", sign(t, f.stranger, "registrar-1", jose.ES256, map[string]any{"iss": "https://registrar.example"}))), "", UnapprovedSoftwareStatement},
		{"statement expired", jsonOf(t, with(publicApp(), "software_statement", sign(t, f.registrar, "registrar-1", jose.ES256, map[string]any{"iss": "r", "exp": now - 3600}))), "", InvalidSoftwareStatement},
		{"statement not yet valid", jsonOf(t, with(publicApp(), "software_statement", sign(t, f.registrar, "registrar-1", jose.ES256, map[string]any{"iss": "r", "nbf": now + 3600}))), "", InvalidSoftwareStatement},
		{"statement without iss", jsonOf(t, with(publicApp(), "software_statement", sign(t, f.registrar, "registrar-1", jose.ES256, map[string]any{"software_id": "x"}))), "", InvalidSoftwareStatement},
		{"statement issuing a client id", jsonOf(t, with(publicApp(), "software_statement", sign(t, f.registrar, "registrar-1", jose.ES256, map[string]any{"iss": "r", "client_id": "mine"}))), "", InvalidSoftwareStatement},
		{"statement with bad metadata", jsonOf(t, with(publicApp(), "software_statement", sign(t, f.registrar, "registrar-1", jose.ES256, map[string]any{"iss": "r", "redirect_uris": []string{"http://evil.example/cb"}}))), "", InvalidRedirectURI},
		{"good statement, bad request", jsonOf(t, with(publicApp(), "software_statement", good, "scope", "openid")), "", InvalidClientMetadata},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{}
			if c.contentType != "" {
				hdr["Content-Type"] = c.contentType
			}
			a := f.do(t, http.MethodPost, "/register", c.body, hdr)
			if a.status != http.StatusBadRequest || a.str("error") != c.code || a.str("error_description") == "" {
				t.Errorf("%d %s, want 400 %s with a description", a.status, a.raw, c.code)
			}
		})
	}
	if all, _ := f.store.List(context.Background()); len(all) != 0 {
		t.Errorf("refused registrations stored %d apps", len(all))
	}
}

func TestTrustedSoftwareStatementTakesPrecedenceAndIsReturnedUnmodified(t *testing.T) {
	f := newFixture(t, 1000)
	stmt := sign(t, f.registrar, "registrar-1", jose.ES256, map[string]any{"iss": "https://registrar.example",
		"iat": f.clock.now().Unix(), "exp": f.clock.now().Add(time.Hour).Unix(), "jti": "s-1",
		"software_id": "certified-wallet", "client_name": "Certified Wallet", "redirect_uris": []string{"https://certified.example/cb"}})
	a := f.register(t, jsonOf(t, with(publicApp(), "software_statement", stmt)))
	if a.str("software_statement") != stmt {
		t.Errorf("software_statement not returned unmodified: %s", a.raw)
	}
	app, _ := f.store.Get(context.Background(), a.str("client_id"))
	if app.Name != "Certified Wallet" || app.SoftwareID != "certified-wallet" ||
		!slices.Equal(app.RedirectURIs, []string{"https://certified.example/cb"}) || app.SoftwareStatement != stmt {
		t.Errorf("the statement's values must win over the request's: %+v", app)
	}
	if _, ok := a.body["jti"]; ok {
		t.Errorf("the statement's JWT claims are not client metadata: %s", a.raw)
	}
}

func TestWithoutTrustedRegistrarsEveryStatementIsUnapproved(t *testing.T) {
	store := admintest.NewFakeStore()
	h, err := New(store, testOffered(), Options{PublicURL: publicURL, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{h: h, store: store}
	stmt := sign(t, newKey(t), "any", jose.ES256, map[string]any{"iss": "https://registrar.example"})
	a := f.do(t, http.MethodPost, "/register", jsonOf(t, with(publicApp(), "software_statement", stmt)), nil)
	if a.status != http.StatusBadRequest || a.str("error") != UnapprovedSoftwareStatement {
		t.Errorf("%d %s", a.status, a.raw)
	}
}

func TestRateLimitPerAddressAnswers429WithRetryAfter(t *testing.T) {
	f := newFixture(t, 2)
	from := func(addr string) answer {
		r := httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(`{}`))
		r.Header.Set("Content-Type", "application/json")
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, r)
		return answer{status: w.Code, header: w.Header(), raw: w.Body.String()}
	}
	for i := range 2 { // refused registrations count too: the limit is on work, not success
		if a := from("198.51.100.7:4000"); a.status != http.StatusBadRequest {
			t.Fatalf("call %d: %d %s", i, a.status, a.raw)
		}
	}
	a := from("198.51.100.7:4001")
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") != "30" || !strings.Contains(a.raw, TooManyRequests) {
		t.Fatalf("third call: %d Retry-After %q %s, want 429 after 30s", a.status, a.header.Get("Retry-After"), a.raw)
	}
	if a := from("198.51.100.8:4000"); a.status == http.StatusTooManyRequests {
		t.Errorf("another address is limited too")
	}
	// One IPv6 /64 is one bucket.
	from("[2001:db8:1:2::1]:4000")
	from("[2001:db8:1:2::2]:4000")
	if a := from("[2001:db8:1:2::3]:4000"); a.status != http.StatusTooManyRequests {
		t.Errorf("a third address of the same /64: %d, want 429", a.status)
	}
	f.clock.advance(30 * time.Second)
	if a := from("198.51.100.7:4002"); a.status == http.StatusTooManyRequests {
		t.Errorf("still limited after Retry-After")
	}
}

func TestRegistrationAccessTokenRefusalsRevealNothing(t *testing.T) {
	f := newFixture(t, 1000)
	a := f.register(t, jsonOf(t, publicApp()))
	b := f.register(t, jsonOf(t, publicApp()))
	id, tok := a.str("client_id"), a.str("registration_access_token")
	// The token with its last character changed (to "A", or "B" when it already ends in "A": a fixed "A"
	// was the token itself once in 64 runs).
	last := "A"
	if strings.HasSuffix(tok, "A") {
		last = "B"
	}
	wrong := tok[:len(tok)-1] + last
	cases := map[string]struct {
		path string
		hdr  map[string]string
	}{
		"no header":              {"/register/" + id, nil},
		"basic scheme":           {"/register/" + id, map[string]string{"Authorization": "Basic " + tok}},
		"wrong token":            {"/register/" + id, bearer(wrong)},
		"another client's token": {"/register/" + id, bearer(b.str("registration_access_token"))},
		"unknown client":         {"/register/dcr-00000000000000000000000000000000", bearer(tok)},
		"token with a space":     {"/register/" + id, bearer(tok + " x")},
		"overlong token":         {"/register/" + id, bearer(strings.Repeat("a", 600))},
	}
	var bodies []string
	for name, c := range cases {
		for _, method := range []string{http.MethodGet, http.MethodDelete, http.MethodPut} {
			body := ""
			if method == http.MethodPut {
				body = jsonOf(t, with(publicApp(), "client_id", id))
			}
			r := f.do(t, method, c.path, body, c.hdr)
			if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` || r.str("error") != InvalidToken {
				t.Errorf("%s %s: %d %q %s", name, method, r.status, r.header.Get("WWW-Authenticate"), r.raw)
			}
			bodies = append(bodies, r.raw)
		}
	}
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Errorf("refusals differ, so they tell clients apart: %q vs %q", b, bodies[0])
		}
	}
	if app, _ := f.store.Get(context.Background(), id); app.State != apps.StateActive || app.Version != 1 {
		t.Errorf("refused calls changed the app: %+v", app)
	}
}

func TestReadReturnsTheRegisteredMetadata(t *testing.T) {
	f := newFixture(t, 1000)
	a := f.register(t, jsonOf(t, publicApp()))
	r := f.do(t, http.MethodGet, a.str("registration_client_uri")[len(publicURL):], "", bearer(a.str("registration_access_token")))
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	for _, m := range []string{"client_id", "client_name", "scope", "token_endpoint_auth_method", "registration_client_uri", "software_id", "software_version", "client_uri", "policy_uri"} {
		if r.body[m] != a.body[m] {
			t.Errorf("%s: read %v, registered %v", m, r.body[m], a.body[m])
		}
	}
	if !slices.Equal(toStrings(r.body["redirect_uris"]), toStrings(a.body["redirect_uris"])) {
		t.Errorf("redirect_uris differ: %s", r.raw)
	}
}

func TestUpdateReplacesTheMetadataAsItsRegistrant(t *testing.T) {
	f := newFixture(t, 1000)
	a := f.register(t, jsonOf(t, publicApp()))
	id, tok := a.str("client_id"), a.str("registration_access_token")
	next := with(publicApp(), "client_id", id, "client_name", "Member Wallet 2",
		"redirect_uris", []string{"https://wallet.example/cb2"}, "scope", "openid patient/*.rs", "client_uri", nil)
	r := f.do(t, http.MethodPut, "/register/"+id, jsonOf(t, next), bearer(tok))
	if r.status != http.StatusOK || r.str("client_name") != "Member Wallet 2" || r.str("registration_access_token") != tok {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if _, ok := r.body["client_uri"]; ok {
		t.Errorf("a member left out of the update must be gone (full replacement): %s", r.raw)
	}
	app, _ := f.store.Get(context.Background(), id)
	if app.Name != "Member Wallet 2" || app.ClientURI != "" || !slices.Equal(app.ApprovedScopes, []string{"openid", "patient/*.rs"}) ||
		app.State != apps.StateActive || app.Environment != apps.Sandbox || app.Version != 2 {
		t.Errorf("updated app: %+v", app)
	}
	evs, _ := f.store.History(context.Background(), id)
	if last := evs[len(evs)-1]; last.Actor != "dcr:"+id || last.Action != "update" || last.Reason != ReasonUpdate {
		t.Errorf("update event %+v", last)
	}
}

func TestUpdateRefusals(t *testing.T) {
	f := newFixture(t, 1000)
	a := f.register(t, jsonOf(t, with(publicApp(), "token_endpoint_auth_method", "client_secret_basic")))
	id, tok := a.str("client_id"), a.str("registration_access_token")
	base := with(publicApp(), "client_id", id, "token_endpoint_auth_method", "client_secret_basic")
	cases := []struct {
		name string
		body map[string]any
		code string
	}{
		{"no client_id", with(base, "client_id", nil), InvalidClientMetadata},
		{"another client_id", with(base, "client_id", "dcr-other"), InvalidClientMetadata},
		{"registration_access_token", with(base, "registration_access_token", tok), InvalidClientMetadata},
		{"registration_client_uri", with(base, "registration_client_uri", a.str("registration_client_uri")), InvalidClientMetadata},
		{"client_id_issued_at", with(base, "client_id_issued_at", 1), InvalidClientMetadata},
		{"client_secret_expires_at", with(base, "client_secret_expires_at", 0), InvalidClientMetadata},
		{"client_secret", with(base, "client_secret", "whatever"), InvalidClientMetadata},
		{"auth method change", with(base, "token_endpoint_auth_method", "none"), InvalidClientMetadata},
		{"software_id change", with(base, "software_id", "other"), InvalidClientMetadata},
		{"bad redirect", with(base, "redirect_uris", []string{"http://evil.example/cb"}), InvalidRedirectURI},
		{"scope no API offers", with(base, "scope", "patient/*.cruds"), InvalidClientMetadata},
	}
	for _, c := range cases {
		r := f.do(t, http.MethodPut, "/register/"+id, jsonOf(t, c.body), bearer(tok))
		if r.status != http.StatusBadRequest || r.str("error") != c.code {
			t.Errorf("%s: %d %s, want 400 %s", c.name, r.status, r.raw, c.code)
		}
	}
	if app, _ := f.store.Get(context.Background(), id); app.Version != 1 {
		t.Errorf("refused updates changed the app to version %d", app.Version)
	}
}

func TestUpdateOfAnAppWithProductionAccessIsForbidden(t *testing.T) {
	f := newFixture(t, 1000)
	prod := apps.App{ClientID: "dcr-prod", Name: "P", Contacts: []apps.Contact{{Email: "p@x.example"}},
		RedirectURIs: []string{"https://p.example/cb"}, LaunchTypes: []string{apps.LaunchStandalone}, TokenAuthMethod: apps.AuthNone,
		RequestedAPIs: []string{"patient-access"}, RequestedScopes: []string{"patient/*.rs"}, Environment: apps.Production,
		State: apps.StateActive, Tier: "standard"}
	if _, err := f.store.Register(context.Background(), prod, "test", "", apps.Issued{RegistrationToken: "tok-prod"}); err != nil {
		t.Fatal(err)
	}
	r := f.do(t, http.MethodPut, "/register/dcr-prod", jsonOf(t, with(publicApp(), "client_id", "dcr-prod")), bearer("tok-prod"))
	if r.status != http.StatusForbidden || r.str("error") != AccessDenied {
		t.Errorf("%d %s", r.status, r.raw)
	}
}

// A reviewer suspended the app (abuse, a leaked key): while suspended its registrant cannot rewrite what the
// reviewer will reactivate (redirect URIs, scopes, keys); reading it and deleting it stay possible.
func TestUpdateOfASuspendedAppIsForbidden(t *testing.T) {
	f := newFixture(t, 1000)
	a := f.register(t, jsonOf(t, publicApp()))
	id, tok := a.str("client_id"), a.str("registration_access_token")
	if _, err := f.store.Transition(context.Background(), id, apps.StateSuspended, "reviewer:riley", "abuse", nil, nil); err != nil {
		t.Fatal(err)
	}
	r := f.do(t, http.MethodPut, "/register/"+id, jsonOf(t, with(publicApp(), "client_id", id, "redirect_uris", []string{"https://evil.example/cb"})), bearer(tok))
	if r.status != http.StatusForbidden || r.str("error") != AccessDenied {
		t.Errorf("update of a suspended app: %d %s, want 403 access_denied", r.status, r.raw)
	}
	if app, _ := f.store.Get(context.Background(), id); slices.Contains(app.RedirectURIs, "https://evil.example/cb") {
		t.Errorf("a suspended app's redirect URIs were rewritten")
	}
	if r := f.do(t, http.MethodGet, "/register/"+id, "", bearer(tok)); r.status != http.StatusOK {
		t.Errorf("read of a suspended app: %d", r.status)
	}
	if r := f.do(t, http.MethodDelete, "/register/"+id, "", bearer(tok)); r.status != http.StatusNoContent {
		t.Errorf("delete of a suspended app: %d %s", r.status, r.raw)
	}
}

func TestUpdateOfAStatementRegisteredAppNeedsAStatement(t *testing.T) {
	f := newFixture(t, 1000)
	stmt := sign(t, f.registrar, "registrar-1", jose.ES256, map[string]any{"iss": "r", "software_id": "certified"})
	a := f.register(t, jsonOf(t, with(publicApp(), "software_statement", stmt, "software_id", nil)))
	id, tok := a.str("client_id"), a.str("registration_access_token")
	r := f.do(t, http.MethodPut, "/register/"+id, jsonOf(t, with(publicApp(), "client_id", id, "software_id", "certified")), bearer(tok))
	if r.status != http.StatusBadRequest || r.str("error") != InvalidSoftwareStatement {
		t.Errorf("without the statement: %d %s", r.status, r.raw)
	}
	r = f.do(t, http.MethodPut, "/register/"+id, jsonOf(t, with(publicApp(), "client_id", id, "software_id", nil, "software_statement", stmt, "client_name", "Renamed")), bearer(tok))
	if r.status != http.StatusOK || r.str("software_id") != "certified" {
		t.Errorf("with the statement: %d %s", r.status, r.raw)
	}
}

func TestDeleteDeactivatesAndEndsTheRegistrationAccessToken(t *testing.T) {
	f := newFixture(t, 1000)
	a := f.register(t, jsonOf(t, publicApp()))
	id, tok := a.str("client_id"), a.str("registration_access_token")
	if r := f.do(t, http.MethodDelete, "/register/"+id, "", bearer(tok)); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	app, _ := f.store.Get(context.Background(), id)
	if app.State != apps.StateDeactivated {
		t.Errorf("state %s, want deactivated", app.State)
	}
	evs, _ := f.store.History(context.Background(), id)
	if last := evs[len(evs)-1]; last.Actor != "dcr:"+id || last.Action != "deactivate" || last.Reason != ReasonDelete {
		t.Errorf("delete event %+v", last)
	}
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		if r := f.do(t, m, "/register/"+id, "", bearer(tok)); r.status != http.StatusUnauthorized {
			t.Errorf("%s after delete: %d, want 401", m, r.status)
		}
	}
}

// auditFailingStore is a FakeStore whose audit spool refuses every change.
type auditFailingStore struct{ *admintest.FakeStore }

func (auditFailingStore) Register(context.Context, apps.App, string, string, apps.Issued) (apps.App, error) {
	return apps.App{}, apps.ErrAuditFailed
}

func TestUnauditedRegistrationIsRefusedWith503(t *testing.T) {
	h, err := New(auditFailingStore{admintest.NewFakeStore()}, testOffered(), Options{PublicURL: publicURL, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	a := (&fixture{h: h}).do(t, http.MethodPost, "/register", jsonOf(t, publicApp()), nil)
	if a.status != http.StatusServiceUnavailable || a.str("error") != ServerError || strings.Contains(a.raw, "registration_access_token") {
		t.Errorf("%d %s", a.status, a.raw)
	}
}

func TestNewRefusesWhatCouldNotServe(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	store := admintest.NewFakeStore()
	priv, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: newKey(t), KeyID: "k"}}})
	sym, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "k"}}})
	cases := map[string]func() (http.Handler, error){
		"no store":      func() (http.Handler, error) { return New(nil, testOffered(), Options{PublicURL: publicURL, Log: log}) },
		"no log":        func() (http.Handler, error) { return New(store, testOffered(), Options{PublicURL: publicURL}) },
		"no APIs":       func() (http.Handler, error) { return New(store, nil, Options{PublicURL: publicURL, Log: log}) },
		"no public URL": func() (http.Handler, error) { return New(store, testOffered(), Options{Log: log}) },
		"http public": func() (http.Handler, error) {
			return New(store, testOffered(), Options{PublicURL: "http://portal.example", Log: log})
		},
		"negative rate": func() (http.Handler, error) {
			return New(store, testOffered(), Options{PublicURL: publicURL, PerMinute: -1, Log: log})
		},
		"private key": func() (http.Handler, error) {
			return New(store, testOffered(), Options{PublicURL: publicURL, Log: log, TrustedRegistrars: [][]byte{priv}})
		},
		"symmetric key": func() (http.Handler, error) {
			return New(store, testOffered(), Options{PublicURL: publicURL, Log: log, TrustedRegistrars: [][]byte{sym}})
		},
		"not a JWKS": func() (http.Handler, error) {
			return New(store, testOffered(), Options{PublicURL: publicURL, Log: log, TrustedRegistrars: [][]byte{[]byte("x")}})
		},
		"empty JWKS": func() (http.Handler, error) {
			return New(store, testOffered(), Options{PublicURL: publicURL, Log: log, TrustedRegistrars: [][]byte{[]byte(`{"keys":[]}`)}})
		},
	}
	for name, mk := range cases {
		if h, err := mk(); err == nil || h != nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(store, testOffered(), Options{PublicURL: "http://127.0.0.1:9444", Log: log}); err != nil {
		t.Errorf("http on loopback (tests): %v", err)
	}
}
