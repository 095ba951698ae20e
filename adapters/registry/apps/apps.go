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
}
