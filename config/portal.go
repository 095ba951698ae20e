package config

import "time"

// KeycloakSync is the identity provider the app registry keeps in sync (registry.keycloak): every registry
// change creates, updates, disables or deletes the app's Keycloak client through Keycloak's admin REST API,
// and a reconcile loop corrects drift both ways (adapters/registry/keycloak). Empty URL: no sync (the demo's
// file registry, whose clients are the realm file's).
type KeycloakSync struct {
	URL   string `mapstructure:"url"`   // Keycloak's base URL, e.g. http://127.0.0.1:8180
	Realm string `mapstructure:"realm"` // the realm whose clients the registry owns, e.g. fhirwall
	// ClientID and ClientSecretFile are the service account fhirwall signs in to the admin API with
	// (client_credentials in the same realm; realm-management roles manage-clients, view-clients,
	// manage-users, view-users). The file is relative to the configuration file.
	ClientID         string `mapstructure:"client_id"`
	ClientSecretFile string `mapstructure:"client_secret_file"`
	// ReconcileInterval is how often every client in the realm is compared with the registry (default 30s).
	ReconcileInterval time.Duration `mapstructure:"reconcile_interval"`
	// Protected are client ids of the realm the registry does not own and the reconcile loop never touches,
	// besides Keycloak's own (account, account-console, admin-cli, broker, realm-management,
	// security-admin-console) and ClientID: fhirwall's portal, say.
	Protected []string `mapstructure:"protected_clients"`
}

// Portal is the developer portal, Dynamic Client Registration and the token revocation endpoint, on a
// listener of their own (portal.listen), never on the API listeners (internal/portal,
// adapters/registry/dcr, adapters/registry/revocation).
type Portal struct {
	// Listen is host:port of the portal's HTTPS listener; empty: the portal, DCR and revocation are off.
	Listen string `mapstructure:"listen"`
	// PublicURL is the portal's origin as browsers and apps reach it, e.g. https://127.0.0.1:9443 (the
	// OIDC redirect URI is PublicURL+"/auth/callback"; DCR's registration_client_uri is built on it).
	PublicURL string `mapstructure:"public_url"`
	// TLSCert and TLSKey are PEM files (relative to the configuration file): the portal's cookies are Secure
	// and its listener speaks only TLS.
	TLSCert string `mapstructure:"tls_cert"`
	TLSKey  string `mapstructure:"tls_key"`
	// ClientID and ClientSecretFile are the portal's own OIDC client (authorization code + PKCE) in
	// issuers[0]'s realm.
	ClientID         string `mapstructure:"client_id"`
	ClientSecretFile string `mapstructure:"client_secret_file"`
	// ReviewerRole is the realm role that may approve, suspend and deactivate apps in the reviewer console
	// (default fhirwall-reviewer); DeveloperRole the one that may register apps (default fhirwall-developer).
	// A member (a token with a patient claim) only sees their own connected apps.
	ReviewerRole  string `mapstructure:"reviewer_role"`
	DeveloperRole string `mapstructure:"developer_role"`
	// DCR is RFC 7591/7592 Dynamic Client Registration at PublicURL+"/register".
	DCR DCR `mapstructure:"dcr"`
	// SecretOverlap is how long a rotated client secret keeps working beside the new one (default 24h).
	SecretOverlap time.Duration `mapstructure:"secret_overlap"`
	// SessionKeyFile holds the 32-byte AES-256-GCM key the portal seals its session cookie with (raw, or
	// base64/hex of 32 bytes; relative to the configuration file). Every replica reads the same file, so a
	// session survives the replica that made it. Required with Listen.
	SessionKeyFile string `mapstructure:"session_key_file"`
}

// DCR configures Dynamic Client Registration (RFC 7591 and RFC 7592).
type DCR struct {
	// Enabled serves /register. Anonymous registrations are always sandbox apps; production needs a
	// reviewer (the portal or the admin API).
	Enabled bool `mapstructure:"enabled"`
	// PerMinute bounds registrations per client IP address per minute (default 10); a refusal is 429.
	PerMinute int `mapstructure:"per_minute"`
	// TrustedRegistrars are JWKS files (relative to the configuration file) whose keys may sign software
	// statements (RFC 7591 §2.3); a statement signed by no trusted key is refused (unapproved_software_statement).
	TrustedRegistrars []string `mapstructure:"trusted_registrars"`
}

// Notice is a deprecation, maintenance window or incident, published on the portal (its page per API and
// an Atom feed) and, for a deprecation, as Deprecation (RFC 9745) and Sunset (RFC 8594) headers on the
// affected API's answers in both modes (notices:).
type Notice struct {
	ID    string `mapstructure:"id"`    // stable; the Atom entry's id
	Kind  string `mapstructure:"kind"`  // deprecation | maintenance | incident
	API   string `mapstructure:"api"`   // the API it concerns (apis[].name)
	Title string `mapstructure:"title"` // one line; the Atom entry's title
	Body  string `mapstructure:"body"`  // plain text
	// Resource narrows a deprecation to one resource type's answers (empty: every answer of the API).
	Resource  string    `mapstructure:"resource"`
	Published time.Time `mapstructure:"published"` // when it was announced (the feed's updated time)
	// Deprecation is when the API (or resource) was or will be deprecated; Sunset when it stops answering.
	Deprecation time.Time `mapstructure:"deprecation"`
	Sunset      time.Time `mapstructure:"sunset"`
	// Link is where the notice is explained (Link: <...>; rel="deprecation"); default the portal's page.
	Link string `mapstructure:"link"`
	// Start and End bound a maintenance window or an incident (End zero: ongoing).
	Start time.Time `mapstructure:"start"`
	End   time.Time `mapstructure:"end"`
}
