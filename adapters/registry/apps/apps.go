// Package apps is the app registry's model: an application registered to call fhirwall's APIs, its lifecycle
// (pending → approved → active ⇄ suspended → deactivated) with history, and the store that keeps it. Every
// change is an Event, audited in the same tamper-evident stream as data access (kind "admin") before it is
// committed. The registry the gateway consults (decision.Registry) is a view of the active apps.
package apps

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// State is where an app is in its lifecycle. Only an active app's tokens are honoured.
type State string

const (
	StatePending     State = "pending"     // registered, waiting for a reviewer (production) — no access
	StateApproved    State = "approved"    // a reviewer approved it; credentials issued, not yet switched on
	StateActive      State = "active"      // its tokens are honoured
	StateSuspended   State = "suspended"   // temporarily refused; may become active again
	StateDeactivated State = "deactivated" // refused for good; terminal
)

// Environment says which data an app may reach: sandbox apps only synthetic data, production apps real
// members' data after review.
type Environment string

const (
	Sandbox    Environment = "sandbox"
	Production Environment = "production"
)

// Contact is a person responsible for an app.
type Contact struct {
	Name  string `json:"name,omitempty"`
	Email string `json:"email"`
	Role  string `json:"role,omitempty"` // technical, security, business
}

// App is one registered application (an OAuth client).
type App struct {
	ClientID     string    `json:"client_id"`
	Name         string    `json:"name"`
	DeveloperOrg string    `json:"developer_org"` // who builds it
	Contacts     []Contact `json:"contacts"`
	LogoURI      string    `json:"logo_uri,omitempty"`
	ClientURI    string    `json:"client_uri,omitempty"` // homepage
	PolicyURI    string    `json:"policy_uri,omitempty"` // privacy policy
	TOSURI       string    `json:"tos_uri,omitempty"`

	RedirectURIs []string `json:"redirect_uris"` // https, or http on a loopback host for native apps
	LaunchTypes  []string `json:"launch_types"`  // standalone, ehr, backend
	// TokenAuthMethod: none (public client), client_secret_basic, private_key_jwt (RFC 7591 §2).
	TokenAuthMethod string          `json:"token_endpoint_auth_method"`
	JWKSURI         string          `json:"jwks_uri,omitempty"`
	JWKS            json.RawMessage `json:"jwks,omitempty"`

	RequestedAPIs   []string `json:"requested_apis"`
	RequestedScopes []string `json:"requested_scopes"`
	ApprovedAPIs    []string `json:"approved_apis"`   // what the gateway honours; a reviewer may narrow
	ApprovedScopes  []string `json:"approved_scopes"` // scope patterns, as decision.Client.Scopes

	Environment Environment `json:"environment"`
	State       State       `json:"state"`
	Tier        string      `json:"tier"`          // rate tier
	ProviderOrg string      `json:"org,omitempty"` // the organisation a backend client acts for (Organization/<id>)
	NotifyHosts []string    `json:"notify_hosts,omitempty"`
	// Owner is who registered the app: the portal user's subject ("portal:<sub>"), "dcr" for an anonymous
	// Dynamic Client Registration, "admin:<name>" or "import". The portal lists a developer's own apps by it.
	Owner string `json:"owner,omitempty"`
	// SoftwareID, SoftwareVersion and SoftwareStatement are what a Dynamic Client Registration said of the
	// software (RFC 7591 §2, §2.3): the same software_id across its registrations, and the registrar's signed
	// statement as it was sent, which RFC 7592 reads must return unmodified.
	SoftwareID        string `json:"software_id,omitempty"`
	SoftwareVersion   string `json:"software_version,omitempty"`
	SoftwareStatement string `json:"software_statement,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Version counts changes; an update names the version it read (optimistic concurrency).
	Version int `json:"version"`
}

// Event is one change to an app: who did what, with the app before and after (Before nil on registration).
// It is the audit record of the change (kind "admin") and a row of the app's history.
type Event struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`  // the reviewer, developer or system that made the change (e.g. "admin:alice", "dcr", "import")
	Action   string    `json:"action"` // register, update, approve, activate, suspend, reactivate, deactivate, import
	ClientID string    `json:"client_id"`
	Reason   string    `json:"reason,omitempty"`
	Before   *App      `json:"before,omitempty"`
	After    *App      `json:"after"`
}

// Errors of a Store and of the lifecycle.
var (
	ErrNotFound    = errors.New("app not found")
	ErrExists      = errors.New("app already registered")
	ErrConflict    = errors.New("app changed since it was read") // version mismatch
	ErrTransition  = errors.New("state change not allowed")
	ErrInvalid     = errors.New("app refused by registration policy")
	ErrAuditFailed = errors.New("the change's audit record could not be written; nothing changed")
)

// Auditor makes an Event durable in the audit stream. A Store calls it inside the change's transaction:
// an error rolls the change back (nothing changes unaudited).
type Auditor func(ctx context.Context, ev Event) error

// Store keeps the apps and their history.
type Store interface {
	// Create registers a new app (ErrExists if the client id is taken); actor and reason go into its Event.
	Create(ctx context.Context, a App, actor, reason string) (App, error)
	// Get returns one app.
	Get(ctx context.Context, clientID string) (App, error)
	// List returns every app, by client id.
	List(ctx context.Context) ([]App, error)
	// Update replaces an app's fields (not its state) if its Version is still a.Version (ErrConflict).
	Update(ctx context.Context, a App, actor, reason string) (App, error)
	// Transition moves an app to another state if the lifecycle allows it (ErrTransition); approving may
	// narrow the approved APIs and scopes (nil: keep).
	Transition(ctx context.Context, clientID string, to State, actor, reason string, narrowAPIs, narrowScopes []string) (App, error)
	// History returns the app's events, oldest first.
	History(ctx context.Context, clientID string) ([]Event, error)
	// Register is Create for a registration that issues credentials, written in the same transaction: the
	// client secret waits (for the identity provider's sync) until delivered, then is erased; of the
	// registration access token only its SHA-256 is kept. Neither is ever audited or returned again.
	Register(ctx context.Context, a App, actor, reason string, issued Issued) (App, error)
	// VerifyRegistrationToken is nil when token is clientID's registration access token (RFC 7592),
	// ErrUnauthorized otherwise (also for an unknown client, so the answer reveals nothing).
	VerifyRegistrationToken(ctx context.Context, clientID, token string) error
	// Sync returns where the app's client in the identity provider stands against the registry.
	Sync(ctx context.Context, clientID string) (SyncState, error)
}

// ErrUnauthorized refuses a registration access token (RFC 7592) that is not the client's.
var ErrUnauthorized = errors.New("registration access token refused")

// Issued is what a registration hands out once (RFC 7591 §3.2.1): the client secret of a confidential
// client (client_secret_basic / client_secret_post; empty for none and private_key_jwt) and the registration
// access token of RFC 7592 (empty when the registration was not made through DCR).
type Issued struct {
	ClientSecret      string
	RegistrationToken string
}

// SyncState is where an app's client in the identity provider (Keycloak) stands against the registry.
type SyncState struct {
	Pending   bool      `json:"pending"`              // a change waits to reach the identity provider
	Since     time.Time `json:"since,omitzero"`       // when the oldest waiting change was made
	Attempts  int       `json:"attempts,omitempty"`   // delivery attempts of the waiting change
	LastError string    `json:"last_error,omitempty"` // why the last attempt failed
	SyncedAt  time.Time `json:"synced_at,omitzero"`   // when the identity provider last matched the registry
}

// IdP is what the registry asks of the authorization server beyond keeping clients in sync
// (adapters/registry/keycloak implements it against Keycloak's admin REST API).
type IdP interface {
	// RotateSecret issues a new client secret for a confidential app; the previous one keeps working for
	// overlap (0: it stops at once). The new secret is returned once and kept nowhere by fhirwall.
	RotateSecret(ctx context.Context, clientID string, overlap time.Duration) (string, error)
	// EndSessions ends every session, refresh token and offline token of the app (deactivation, suspension).
	EndSessions(ctx context.Context, clientID string) error
	// Grants lists the apps a user (the token subject) has signed in to and may still hold refresh or
	// offline tokens for, by client id.
	Grants(ctx context.Context, subject string) ([]string, error)
	// RevokeGrant ends the user's sessions, refresh and offline tokens for one app (a member revoking it).
	RevokeGrant(ctx context.Context, subject, clientID string) error
}
