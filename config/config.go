// Package config is fhirwall's typed configuration: defaults, loading with viper (file + FHIRWALL_*
// environment variables) and validation. Both binaries read the same file.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/fhirwall/fhirwall/internal/ratelimit"
)

// Config is the whole configuration. See config/fhirwall.yaml for a commented example.
type Config struct {
	FHIRServer FHIRServer `mapstructure:"fhir_server"`
	Issuers    []Issuer   `mapstructure:"issuers"`
	APIs       []API      `mapstructure:"apis"`
	Proxy      Proxy      `mapstructure:"proxy"`
	Audit      Audit      `mapstructure:"audit"`
	Policies   Policies   `mapstructure:"policies"`
	XDS        XDS        `mapstructure:"xds"`
	Tokens     Tokens     `mapstructure:"tokens"`
	Registry   Registry   `mapstructure:"registry"`
	Jobs       Jobs       `mapstructure:"jobs"`
	RateLimits RateLimits `mapstructure:"rate_limits"`
	// Admin is what every admin API on proxy.admin shares (registry.go).
	Admin Admin `mapstructure:"admin"`
	// PriorAuth is the Prior Authorization API's adapter (priorauth.go); required when that API is configured.
	PriorAuth PriorAuth `mapstructure:"prior_auth"`
	// PublicURL is where apps reach fhirwall (Envoy, or the standalone proxy), without the API prefix; each
	// API's CapabilityStatement names PublicURL+prefix as its base.
	PublicURL string `mapstructure:"public_url"`
	// Portal is the developer portal, DCR and token revocation on their own listener (portal.go).
	Portal Portal `mapstructure:"portal"`
	// Notices are deprecations, maintenance windows and incidents (portal.go).
	Notices []Notice `mapstructure:"notices"`
	// Tracing is OpenTelemetry tracing in Envoy and fhirwall-proxy (tracing.go); off unless an endpoint is set.
	Tracing Tracing `mapstructure:"tracing"`

	role Role // what Load was asked to check for
}

// FHIRServer is the FHIR server fhirwall fronts.
type FHIRServer struct {
	URL string `mapstructure:"url"` // FHIR base, e.g. http://127.0.0.1:8090/fhir
	// Timeout bounds one request to it (Envoy's route timeout; the standalone proxy's wait for an answer's
	// headers); ConnectTimeout one connection attempt. LookupTimeout bounds one lookup fhirwall-proxy makes
	// itself while a request waits for its decision (compartment, attribution, consent): shorter than
	// xds.authz_timeout, so a slow FHIR server gets fhirwall's own 503 rather than Envoy's; 0: see
	// Config.LookupTimeout. One client built from these serves the standalone proxy and every adapter
	// (adapters/fhirserver.Dial).
	Timeout        time.Duration `mapstructure:"timeout"`
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	LookupTimeout  time.Duration `mapstructure:"lookup_timeout"`
	// CAFile verifies an https FHIR server (PEM; relative to the config file); ServerName overrides the name
	// checked in its certificate (default: the URL's host).
	CAFile     string `mapstructure:"ca_file"`
	ServerName string `mapstructure:"server_name"`
}

// RateLimits are the per-client limits of every API (Envoy's local rate limit; the standalone proxy
// enforces the same). A client's tier comes from the client registry. No tiers: nothing is limited.
type RateLimits struct {
	Tiers map[string]ratelimit.Rate `mapstructure:"tiers"`
	// Anonymous is the shared bucket per API of requests without a client (discovery documents) or whose
	// client's tier is not in Tiers.
	Anonymous ratelimit.Rate `mapstructure:"anonymous"`
	// MaxClients bounds the client buckets kept per API and tier (least recently used go first).
	MaxClients uint32 `mapstructure:"max_clients"`
	// PerUser gives each user (token subject) of a client of the tiers named here its own bucket, beside the
	// client's: patient-facing apps, so one member cannot use up the app's rate. The tier's rate stays the
	// app's aggregate. Tiers not named (backend clients) are limited per client only, and so is a tier on an
	// API that overrides its rate to one no faster than the per-user rate.
	PerUser map[string]ratelimit.Rate `mapstructure:"per_user"`
	// MaxUsers bounds the user buckets kept per API and tier (least recently used go first; 0: 100,000).
	MaxUsers uint32 `mapstructure:"max_users"`
	// Global is the limit all replicas share (docs/rate-limits.md); its address empty: off.
	Global GlobalRateLimit `mapstructure:"global"`
}

// GlobalRateLimit is the rate limit service (envoyproxy/ratelimit over Redis) Envoy and the standalone proxy
// ask after their local limits, so N replicas hold a client to its tier once rather than N times. The
// service takes its limits from fhirwall-xds (xds.ratelimit_node_id). Down or slower than Timeout, it
// refuses: 503 with Retry-After in both modes (fail closed).
type GlobalRateLimit struct {
	// Address is the service's gRPC host:port (env FHIRWALL_RATE_LIMITS_GLOBAL_ADDRESS); empty: no global limit.
	Address string `mapstructure:"address"`
	// Domain keys fhirwall's limits in the service (default fhirwall).
	Domain string `mapstructure:"domain"`
	// Timeout bounds one call to the service (default 100ms).
	Timeout time.Duration `mapstructure:"timeout"`
}

// Enabled reports whether the global limit is on.
func (g GlobalRateLimit) Enabled() bool { return g.Address != "" }

// Limits is what the standalone limiter enforces.
func (c *Config) Limits() ratelimit.Limits {
	l := ratelimit.Limits{Tiers: c.RateLimits.Tiers, Anonymous: c.RateLimits.Anonymous, MaxClients: int(c.RateLimits.MaxClients),
		PerUser: c.RateLimits.PerUser, MaxUsers: int(c.RateLimits.MaxUsers), PerAPI: map[string]map[string]ratelimit.Rate{}}
	for _, a := range c.APIs {
		if len(a.RateLimits) > 0 {
			l.PerAPI[a.Name] = a.RateLimits
		}
	}
	return l
}

// Issuer is one trusted token issuer.
type Issuer struct {
	URL        string   `mapstructure:"url"`        // the exact `iss` of its tokens; its OIDC discovery document names the JWKS
	Audience   string   `mapstructure:"audience"`   // required: an access token's `aud` must contain it (the stack: fhirwall)
	Algorithms []string `mapstructure:"algorithms"` // allowed JWS algorithms (asymmetric only); empty: RS256
	// Introspection is the issuer's RFC 7662 endpoint, for opaque (non-JWT) access tokens; nil: none.
	Introspection *Introspection `mapstructure:"introspection"`
}

// Introspection is an RFC 7662 endpoint and the credentials fhirwall presents to it (client_secret_basic).
type Introspection struct {
	URL          string `mapstructure:"url"`           // the introspection endpoint (http or https)
	ClientID     string `mapstructure:"client_id"`     // fhirwall's client id at the endpoint (required)
	ClientSecret string `mapstructure:"client_secret"` // its secret; prefer FHIRWALL_ISSUERS_… in the environment to the file
}

// Tokens tunes token verification for every issuer.
type Tokens struct {
	ClockSkew          time.Duration `mapstructure:"clock_skew"`           // leeway on exp, nbf, iat; at most 5 min
	MinRefetchInterval time.Duration `mapstructure:"min_refetch_interval"` // least time between JWKS fetches per issuer
	CacheSize          int           `mapstructure:"cache_size"`           // verified tokens kept; 0 turns the cache off
}

// Registry is the client registry. Source says where the gateway reads it (registry.go): "file" (default),
// File, a YAML file of clients (see config/clients.yaml), reloaded when it changes, a relative path taken
// relative to the configuration file; or "postgres", the app registry in jobs.postgres_dsn.
type Registry struct {
	Source string `mapstructure:"source"` // file or postgres
	File   string `mapstructure:"file"`   // with source file: the clients.yaml to read (relative to the config file)
	// Import, with source postgres, is a file registry (clients.yaml) whose clients are registered at
	// start-up as active production apps when not registered yet (registry.go); relative to the config file.
	Import string `mapstructure:"import"`
	// Keycloak is the identity provider kept in sync with the PostgreSQL registry (portal.go).
	Keycloak KeycloakSync `mapstructure:"keycloak"`
}

// API is one exposed FHIR API, its base path, and the resource types it serves.
type API struct {
	Name   string `mapstructure:"name"`   // one of the four APIs or its sandbox: patient-access, provider-access, payer-to-payer, prior-auth (+ -sandbox)
	Prefix string `mapstructure:"prefix"` // the API's base path below public_url, e.g. /patient-access/fhir; no trailing slash
	// Resources is a list, not a map keyed by type: viper lower-cases map keys, and FHIR type names are
	// case-sensitive.
	Resources []Resource `mapstructure:"resources"`
	// SMART is what [prefix]/.well-known/smart-configuration and the CapabilityStatement's security say.
	SMART SMART `mapstructure:"smart"`
	// Interactions are the type-level interactions the API's policy serves for every type (read, vread,
	// history-instance, search-type), as its CapabilityStatement lists them; empty: read and search-type.
	Interactions []string `mapstructure:"interactions"`
	// Operations are the FHIR operations the API's policy serves, as its CapabilityStatement lists them.
	Operations []Operation `mapstructure:"operations"`
	// Guides name the implementation guides whose profiles the CapabilityStatement lists per type, first
	// match wins (see internal/capability guides.go).
	Guides []string `mapstructure:"guides"`
	// RateLimits overrides rate_limits.tiers for this API, tier by tier.
	RateLimits map[string]ratelimit.Rate `mapstructure:"rate_limits"`
	// CORS says which browser origins may read this API's data (cors.go).
	CORS CORS `mapstructure:"cors"`
	// SandboxOf makes this API the sandbox of another (sandbox.go): named "<that API>-sandbox", decided by
	// that API's policy, it inherits every field above it leaves unset (resources, interactions, operations,
	// guides, smart, rate_limits, cors) and answers with synthetic data only.
	SandboxOf string `mapstructure:"sandbox_of"`
}

// Operation is one FHIR operation an API serves on a type (Group $export, say). Fields mirror
// capability.Operation.
type Operation struct {
	Type       string `mapstructure:"type"`       // the resource type it is invoked on, e.g. Group
	Name       string `mapstructure:"name"`       // without the $
	Definition string `mapstructure:"definition"` // the OperationDefinition's canonical URL
	// MaxBodyBytes, when set, is the largest request body a type-level POST of this operation may send
	// ([base]/[type]/$[name]), instead of the 1 MiB every other request gets; at most MaxOperationBodyBytes.
	// Envoy gets a route of its own for it with the same limit.
	MaxBodyBytes int `mapstructure:"max_body_bytes"`
}

// MaxOperationBodyBytes bounds operations[].max_body_bytes: Envoy buffers a whole request body for
// ext_authz within its 16 MiB per-connection buffer, headers included.
const MaxOperationBodyBytes = 15 << 20

// AdapterTimeout bounds the answer of an operation fhirwall answers itself (an adapter: $member-match,
// Prior Authorization's $submit): PAS 2.0.1 §Timeliness asks a synchronous answer within 15 seconds, which
// covers validation, the UM system and the FHIR server's writes. In Envoy mode fhirwall-proxy extends the
// ext_proc message timeout to it for such a request (override_message_timeout), and fhirwall-xds allows
// that extension (max_message_timeout, AdapterTimeout plus a second).
const AdapterTimeout = 15 * time.Second

// BodyLimits are the operations of a with their own body limit, by path below the API's base.
func (a API) BodyLimits() map[string]int {
	out := map[string]int{}
	for _, o := range a.Operations {
		if o.MaxBodyBytes > 0 {
			out["/"+o.Type+"/$"+o.Name] = o.MaxBodyBytes
		}
	}
	return out
}

// SMART describes an API's SMART App Launch 2.x discovery document. Fields mirror capability.SMART.
type SMART struct {
	// Issuer whose OIDC discovery document names the endpoints; empty: issuers[0].url.
	Issuer string `mapstructure:"issuer"`
	// Overrides; each set one replaces what the issuer's discovery document says.
	AuthorizationEndpoint string `mapstructure:"authorization_endpoint"`
	TokenEndpoint         string `mapstructure:"token_endpoint"` // override of the token endpoint
	JWKSURI               string `mapstructure:"jwks_uri"`       // override of the JWKS URL
	// ManagementEndpoint is where a user sees and revokes the apps they authorised; empty: not published.
	ManagementEndpoint string   `mapstructure:"management_endpoint"`
	Capabilities       []string `mapstructure:"capabilities"` // SMART 2.x capability codes (launch-standalone, client-confidential-asymmetric, …); a client-auth one only if the issuer supports it
	Scopes             []string `mapstructure:"scopes"`       // published in scopes_supported as they are
	// ResourceScopes are templates expanded per resource type, e.g. "patient/{type}.rs".
	ResourceScopes []string `mapstructure:"resource_scopes"`
	// GrantTypes and TokenEndpointAuthMethods are offered as far as the issuer supports them.
	GrantTypes               []string `mapstructure:"grant_types"`
	TokenEndpointAuthMethods []string `mapstructure:"token_endpoint_auth_methods"`
}

// Resource is one resource type an API serves, with the search parameters it accepts (an allow-list: the
// policies refuse any other parameter with a 400 naming it).
type Resource struct {
	Type         string   `mapstructure:"type"`          // the FHIR resource type, e.g. ExplanationOfBenefit
	SearchParams []string `mapstructure:"search_params"` // the search parameters allowed on it; any other is refused with 400
	// Include and RevInclude are the _include/_revinclude paths the CapabilityStatement lists.
	Include    []string `mapstructure:"include"`
	RevInclude []string `mapstructure:"revinclude"`
	// VRead lists the vread interaction in the CapabilityStatement.
	VRead bool `mapstructure:"vread"`
	// Public marks reference data outside the Patient compartment (Practitioner, Organization, Location):
	// resources of a type outside the compartment leave in answers only when it is public (Invariant 2), and
	// still only to a token whose scopes grant the type.
	Public bool `mapstructure:"public"`
	// Documentation is what the CapabilityStatement says of the type beyond its interactions (markdown).
	Documentation string `mapstructure:"documentation"`
}

// PolicyData is what the Rego policies see as data.config:
// {"apis": {name: {"prefix": ..., "sandbox_of": base (sandboxes only), "resources": {type: {"search_params": [...], "public": bool}}}}}.
func (c *Config) PolicyData() map[string]any {
	apis := map[string]any{}
	for _, a := range c.APIs {
		res := map[string]any{}
		for _, r := range a.Resources {
			params := make([]any, len(r.SearchParams))
			for i, p := range r.SearchParams {
				params[i] = p
			}
			res[r.Type] = map[string]any{"search_params": params, "public": r.Public}
		}
		api := map[string]any{"prefix": a.Prefix, "resources": res}
		if a.SandboxOf != "" {
			api["sandbox_of"] = a.SandboxOf // policies/authz.rego decides it with its base API's policy
		}
		apis[a.Name] = api
	}
	return map[string]any{"apis": apis}
}

// Proxy is where fhirwall-proxy listens. An empty address turns that listener off.
type Proxy struct {
	GRPC string `mapstructure:"grpc"` // ext_authz + ext_proc for Envoy
	HTTP string `mapstructure:"http"` // standalone reverse proxy
	// PublicURL is where apps reach the standalone proxy, without an API's prefix; empty: "http://" + HTTP.
	// The FHIR server's links (X-Forwarded-Host/-Proto/-Prefix) and rewritten bulk-export manifests name
	// PublicURL + prefix, never the Host or Forwarded headers a client sent.
	PublicURL string `mapstructure:"public_url"`
	Admin     string `mapstructure:"admin"` // /healthz, /readyz
	// Local serves [prefix]/metadata and [prefix]/.well-known/smart-configuration to Envoy.
	Local string `mapstructure:"local"`
	// MaxInFlight bounds the requests the standalone proxy works on at once; beyond it, 503 with Retry-After at
	// once. 0: 32 per CPU (InFlightLimit). Requests being decided have a wider bound (DecidingLimit), so a
	// client over its own rate is told 429 before the proxy is full; Envoy's authz cluster admits the sum of
	// both (fhirwall-xds).
	MaxInFlight int `mapstructure:"max_in_flight"`
	// GCPercent is the Go garbage collector's target (GOGC) unless the GOGC environment variable is set:
	// 400 trades ~25 MB of heap for 35-45% more throughput (BENCHMARKS.md). Set GOMEMLIMIT in a container
	// with a memory limit so the collector works harder before the limit is reached.
	GCPercent int `mapstructure:"gc_percent"`
	// PProf serves Go's profiles (/debug/pprof/) on the admin listener: for profiling under load, never on an
	// address others can reach.
	PProf bool `mapstructure:"pprof"`
	// DecisionKeysFile holds the AES-256-GCM keys ext_authz seals each allowed decision with for ext_proc,
	// which may run on another replica (internal/seal: one key per line, base64 or hex; the first seals, every
	// one opens). Every replica needs the same file. Required with GRPC.
	DecisionKeysFile string `mapstructure:"decision_keys_file"`
}

// Audit is where audit records go: first the local spool (durable before the answer leaves), then Kafka.
type Audit struct {
	Kafka Kafka `mapstructure:"kafka"`
	Spool Spool `mapstructure:"spool"`
	// SigningKeyFile is the ed25519 private key (PKCS#8 PEM) that signs the spool's checkpoints and head;
	// `fhirwall audit keygen -out FILE` makes one. Keep its public half (FILE.pub) where verifiers are.
	SigningKeyFile string `mapstructure:"signing_key_file"`
}

// Spool is the audit spool on local disk (internal/audit.Spool).
type Spool struct {
	Dir                string        `mapstructure:"dir"`                 // the spool directory, required by fhirwall-proxy: a persistent disk of its own, one per replica
	MaxBytes           int64         `mapstructure:"max_bytes"`           // disk budget; past it requests get 503
	SegmentBytes       int64         `mapstructure:"segment_bytes"`       // segment size before a new one starts
	CheckpointEvery    int           `mapstructure:"checkpoint_every"`    // records between two signed checkpoints
	CheckpointInterval time.Duration `mapstructure:"checkpoint_interval"` // time between two signed checkpoints
}

// InFlightLimit is proxy.max_in_flight, or 32 per CPU when it is 0: about 1 ms of CPU per request makes
// that a queue of some 16 ms on each core before a request is refused rather than served late.
func (p Proxy) InFlightLimit() int {
	if p.MaxInFlight > 0 {
		return p.MaxInFlight
	}
	return 32 * runtime.GOMAXPROCS(0)
}

// DecidingLimit bounds the requests being decided at once: 4 x InFlightLimit. A decision is short and in
// memory, and only after it and the rate limit is a request counted in flight; a burst of one client over
// its rate is then told 429, which it can act on, rather than 503. Deciding holds the request body, hence
// a bound at all.
func (p Proxy) DecidingLimit() int { return 4 * p.InFlightLimit() }

// CheckSpool reports what fhirwall-proxy needs to write audit records (fhirwall-xds does not).
func (a Audit) CheckSpool() error {
	var errs []error
	if a.Spool.Dir == "" {
		errs = append(errs, errors.New("audit.spool.dir is required: the directory where audit records are made durable before an answer leaves"))
	}
	if a.SigningKeyFile == "" {
		errs = append(errs, errors.New("audit.signing_key_file is required: create a key with `fhirwall audit keygen -out FILE`"))
	}
	if a.Spool.MaxBytes != 0 && a.Spool.MaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("audit.spool.max_bytes %d: want at least 1 MiB (1048576)", a.Spool.MaxBytes))
	}
	if a.Spool.MaxBytes > 0 && a.Spool.SegmentBytes > a.Spool.MaxBytes/4 {
		errs = append(errs, fmt.Errorf("audit.spool.segment_bytes %d: at most a quarter of max_bytes (%d), or the spool cannot free space", a.Spool.SegmentBytes, a.Spool.MaxBytes/4))
	}
	if a.Spool.SegmentBytes < 0 || a.Spool.CheckpointEvery < 0 || a.Spool.CheckpointInterval < 0 {
		errs = append(errs, errors.New("audit.spool: segment_bytes, checkpoint_every and checkpoint_interval cannot be negative"))
	}
	return errors.Join(errs...)
}

// Kafka names the brokers and the topic of the audit stream.
type Kafka struct {
	Brokers []string `mapstructure:"brokers"` // host:port of each broker
	Topic   string   `mapstructure:"topic"`   // the audit topic; it must take 18 MiB messages (max.message.bytes=18874368)
}

// Jobs is where bulk-export job ownership lives. PostgresDSN empty means in memory (one proxy replica).
type Jobs struct {
	PostgresDSN string `mapstructure:"postgres_dsn"` // PostgreSQL for the app registry, paging bindings, jobs, prior-auth requests; empty: in memory (one replica, with a warning)
}

// Policies: Dir empty means the embedded policy set. DryRunDir names a candidate policy set evaluated
// beside the enforced one and logged where it disagrees, never enforced. DecisionCache: decisioncache.go.
type Policies struct {
	Dir           string        `mapstructure:"dir"`         // a directory of Rego to load instead of the embedded set; reloaded on change
	DryRunDir     string        `mapstructure:"dry_run_dir"` // a candidate policy set evaluated beside the enforced one and logged where it disagrees
	DecisionCache DecisionCache `mapstructure:"decision_cache"`
}

// XDS is the control plane's own listener and what it tells Envoy.
type XDS struct {
	Listen string `mapstructure:"listen"`  // ADS gRPC address of fhirwall-xds
	Admin  string `mapstructure:"admin"`   // fhirwall-xds /healthz and /readyz; empty: off
	NodeID string `mapstructure:"node_id"` // Envoy's node id
	// RateLimitNodeID is the node id of the rate limit service (rate_limits.global), which fhirwall-xds
	// serves its limits to (default fhirwall-ratelimit).
	RateLimitNodeID string `mapstructure:"ratelimit_node_id"`
	EnvoyListen     string `mapstructure:"envoy_listen"`  // where Envoy accepts clients
	AuthzAddress    string `mapstructure:"authz_address"` // where Envoy reaches fhirwall-proxy's gRPC
	LocalAddress    string `mapstructure:"local_address"` // where Envoy reaches fhirwall-proxy's proxy.local
	// AuthzAddresses and LocalAddresses are several fhirwall-proxy replicas (host:port each; env: a
	// comma-separated list). Set, they replace authz_address and local_address. All IP addresses: Envoy
	// balances over exactly these; a DNS name (a Kubernetes headless Service): over every address it resolves to.
	AuthzAddresses []string `mapstructure:"authz_addresses"`
	LocalAddresses []string `mapstructure:"local_addresses"`
	// AuthzTimeout bounds each ext_authz and ext_proc call; past it Envoy refuses the request (503). 0: 2s.
	AuthzTimeout time.Duration `mapstructure:"authz_timeout"`
	// TLS is the certificate Envoy's listener serves; empty: plain HTTP.
	TLS ListenerTLS `mapstructure:"tls"`
}

// ListenerTLS names PEM files (relative to the config file); Envoy watches their directory and serves a
// replaced pair to new connections without a restart. ClientCAFile set: client certificates required.
type ListenerTLS struct {
	CertFile     string `mapstructure:"cert_file"`      // PEM certificate (chain) Envoy's listener serves
	KeyFile      string `mapstructure:"key_file"`       // its PEM private key
	ClientCAFile string `mapstructure:"client_ca_file"` // PEM CA; set: clients must present a certificate it signed
}

// KnownAPIs are the four CMS-0057-F APIs fhirwall has policies for (more land with later work), and the
// sandbox of each (sandbox.go).
var KnownAPIs = []string{"patient-access", "provider-access", "payer-to-payer", "prior-auth",
	"patient-access" + SandboxSuffix, "provider-access" + SandboxSuffix,
	"payer-to-payer" + SandboxSuffix, "prior-auth" + SandboxSuffix}

// Role is the program a configuration is loaded for: each is refused only for what it uses.
type Role int

const (
	// ForProxy is fhirwall-proxy (and the CLI): every check.
	ForProxy Role = iota
	// ForXDS is fhirwall-xds, which builds Envoy's configuration from the file and never opens the app
	// registry: it needs no jobs.postgres_dsn (so its pod holds no database password).
	ForXDS
)

// Load reads path (may be empty: defaults and environment only) and validates the result for
// fhirwall-proxy.
func Load(path string) (*Config, error) { return LoadFor(path, ForProxy) }

// LoadFor is Load for the program role names.
func LoadFor(path string, role Role) (*Config, error) {
	v, err := read(path)
	if err != nil {
		return nil, err
	}
	return decode(v, path, role)
}

// Watch calls onChange with the new configuration (or the reason it was refused) whenever the file at path
// changes. Callers keep what they run on when the error is non-nil.
func Watch(path string, onChange func(*Config, error)) error {
	return WatchFor(path, ForProxy, onChange)
}

// WatchFor is Watch for the program role names.
func WatchFor(path string, role Role, onChange func(*Config, error)) error {
	v, err := read(path)
	if err != nil {
		return err
	}
	v.OnConfigChange(func(fsnotify.Event) { onChange(decode(v, path, role)) })
	v.WatchConfig()
	return nil
}

func read(path string) (*viper.Viper, error) {
	v := viper.New()
	setDefaults(v)
	v.SetEnvPrefix("FHIRWALL")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config: read %s: %w", path, err)
		}
	}
	return v, nil
}

// Defaults are the default value of every key that has one, by its dotted key (fhir_server.url), before
// the environment or a file is read: what docs/config-reference.md lists (config/internal/refgen).
func Defaults() map[string]any {
	v := viper.New()
	setDefaults(v)
	out := map[string]any{}
	for _, k := range v.AllKeys() {
		out[k] = v.Get(k)
	}
	return out
}

// setDefaults is the one place a key gets its default.
func setDefaults(v *viper.Viper) {
	v.SetDefault("fhir_server.url", "http://127.0.0.1:8090/fhir")
	v.SetDefault("fhir_server.timeout", "30s")
	v.SetDefault("fhir_server.connect_timeout", "2s")
	v.SetDefault("proxy.grpc", "127.0.0.1:9191")
	v.SetDefault("proxy.public_url", "") // "http://" + proxy.http (decode), so FHIRWALL_PROXY_PUBLIC_URL applies
	v.SetDefault("proxy.admin", "127.0.0.1:9190")
	v.SetDefault("proxy.local", "127.0.0.1:9192")
	v.SetDefault("proxy.pprof", false)
	v.SetDefault("proxy.decision_keys_file", "") // so FHIRWALL_PROXY_DECISION_KEYS_FILE applies
	v.SetDefault("proxy.max_in_flight", 0)
	v.SetDefault("proxy.gc_percent", 400)
	v.SetDefault("public_url", "http://127.0.0.1:10000")
	v.SetDefault("audit.kafka.brokers", []string{"127.0.0.1:9092"})
	v.SetDefault("audit.kafka.topic", "fhirwall.audit")
	v.SetDefault("audit.spool.dir", "")
	v.SetDefault("audit.signing_key_file", "")
	v.SetDefault("audit.spool.max_bytes", 1<<30)
	v.SetDefault("audit.spool.segment_bytes", 16<<20)
	v.SetDefault("audit.spool.checkpoint_every", 1000)
	v.SetDefault("audit.spool.checkpoint_interval", "10s")
	v.SetDefault("xds.listen", "127.0.0.1:18000")
	v.SetDefault("xds.admin", "127.0.0.1:18001")
	v.SetDefault("xds.node_id", "fhirwall-envoy")
	v.SetDefault("xds.ratelimit_node_id", "fhirwall-ratelimit")
	v.SetDefault("rate_limits.global.address", "")
	v.SetDefault("rate_limits.global.domain", ratelimit.DefaultDomain)
	v.SetDefault("rate_limits.global.timeout", "100ms")
	v.SetDefault("xds.envoy_listen", "127.0.0.1:10000")
	v.SetDefault("xds.authz_address", "127.0.0.1:9191")
	v.SetDefault("tokens.clock_skew", "60s")
	v.SetDefault("tokens.min_refetch_interval", "30s")
	v.SetDefault("tokens.cache_size", 10000)
	v.SetDefault("xds.local_address", "127.0.0.1:9192")
	// Empty defaults so FHIRWALL_XDS_AUTHZ_ADDRESSES and FHIRWALL_XDS_LOCAL_ADDRESSES apply (viper reads the
	// environment only for keys it knows).
	v.SetDefault("xds.authz_addresses", []string{})
	v.SetDefault("xds.local_addresses", []string{})
	priorAuthDefaults(v)
	decisionCacheDefaults(v)
	tracingDefaults(v)
	registryDefaults(v)
	portalDefaults(v)
}

func decode(v *viper.Viper, path string, role Role) (*Config, error) {
	c := Config{role: role}
	// Viper's own hooks (durations, comma-separated lists) plus RFC 3339 times: a notice's dates arrive as
	// strings when the file quotes them (Helm's toYaml always does).
	hooks := viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","), mapstructure.StringToTimeHookFunc(time.RFC3339)))
	if err := v.UnmarshalExact(&c, hooks); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if len(c.APIs) == 0 {
		c.APIs = []API{{Name: "patient-access", Prefix: "/patient-access/fhir"}}
	}
	c.inheritSandboxes()
	if c.Proxy.PublicURL == "" && c.Proxy.HTTP != "" {
		c.Proxy.PublicURL = "http://" + c.Proxy.HTTP
	}
	for _, f := range []*string{&c.Registry.File, &c.XDS.TLS.CertFile, &c.XDS.TLS.KeyFile, &c.XDS.TLS.ClientCAFile, &c.FHIRServer.CAFile, &c.Audit.Spool.Dir, &c.Audit.SigningKeyFile,
		&c.PriorAuth.RulesFile, &c.PriorAuth.AdminTokenFile, &c.Admin.TokenFile, &c.Registry.Import, &c.Registry.Keycloak.ClientSecretFile,
		&c.Portal.TLSCert, &c.Portal.TLSKey, &c.Portal.ClientSecretFile, &c.Portal.SessionKeyFile, &c.Proxy.DecisionKeysFile} {
		if *f != "" && path != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(filepath.Dir(path), *f)
		}
		if *f != "" && !filepath.IsAbs(*f) {
			// Envoy resolves these paths itself, from its own working directory.
			if abs, err := filepath.Abs(*f); err == nil {
				*f = abs
			}
		}
	}
	for i, f := range c.Portal.DCR.TrustedRegistrars {
		if f != "" && path != "" && !filepath.IsAbs(f) {
			c.Portal.DCR.TrustedRegistrars[i] = filepath.Join(filepath.Dir(path), f)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.FHIRServer.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("fhir_server.url %q: want an http(s) URL", c.FHIRServer.URL))
	} else if u.Scheme != "https" && (c.FHIRServer.CAFile != "" || c.FHIRServer.ServerName != "") {
		// (An https url without ca_file is refused by each binary as it builds its FHIR-server client.)
		errs = append(errs, fmt.Errorf("fhir_server.ca_file and server_name: only for an https url, not %q", c.FHIRServer.URL))
	}
	errs = append(errs, c.validateLookupTimeout()...)
	if len(c.Issuers) == 0 {
		errs = append(errs, errors.New("issuers: at least one trusted issuer is required"))
	}
	for i, is := range c.Issuers {
		if u, err := url.Parse(is.URL); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("issuers[%d].url %q: want the exact issuer URL", i, is.URL))
		}
		if is.Audience == "" {
			errs = append(errs, fmt.Errorf("issuers[%d].audience: required (the aud fhirwall accepts)", i))
		}
		if ic := is.Introspection; ic != nil {
			if u, err := url.Parse(ic.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || ic.ClientID == "" {
				errs = append(errs, fmt.Errorf("issuers[%d].introspection: want an http(s) url and a client_id", i))
			}
		}
	}
	seen := map[string]bool{}
	for i, a := range c.APIs {
		if !contains(KnownAPIs, a.Name) {
			errs = append(errs, fmt.Errorf("apis[%d].name %q: want one of %v", i, a.Name, KnownAPIs))
		}
		if !strings.HasPrefix(a.Prefix, "/") || strings.HasSuffix(a.Prefix, "/") || strings.Contains(a.Prefix, "//") {
			errs = append(errs, fmt.Errorf("apis[%d].prefix %q: want /path without a trailing slash", i, a.Prefix))
		}
		if seen[a.Name] || seen[a.Prefix] {
			errs = append(errs, fmt.Errorf("apis[%d]: %q or %q appears twice", i, a.Name, a.Prefix))
		}
		seen[a.Name], seen[a.Prefix] = true, true
		errs = append(errs, a.CORS.validate(i)...)
		for j, o := range a.Operations {
			if o.MaxBodyBytes < 0 || o.MaxBodyBytes > MaxOperationBodyBytes {
				errs = append(errs, fmt.Errorf("apis[%d].operations[%d].max_body_bytes %d: want 0 (the default 1 MiB) up to %d", i, j, o.MaxBodyBytes, MaxOperationBodyBytes))
			}
		}
		types := map[string]bool{}
		for j, r := range a.Resources {
			if r.Type == "" || r.Type[0] < 'A' || r.Type[0] > 'Z' || types[r.Type] {
				errs = append(errs, fmt.Errorf("apis[%d].resources[%d].type %q: want a FHIR resource type, listed once", i, j, r.Type))
			}
			types[r.Type] = true
			for _, p := range r.SearchParams {
				if p == "" || strings.ContainsAny(p, ":.,= ") {
					errs = append(errs, fmt.Errorf("apis[%d].resources[%d].search_params: %q is not a plain parameter name (modifiers and chains are the policy's to allow)", i, j, p))
				}
			}
		}
	}
	for name, addr := range map[string]string{"proxy.grpc": c.Proxy.GRPC, "proxy.http": c.Proxy.HTTP, "proxy.admin": c.Proxy.Admin, "xds.listen": c.XDS.Listen, "xds.admin": c.XDS.Admin, "xds.envoy_listen": c.XDS.EnvoyListen, "xds.authz_address": c.XDS.AuthzAddress, "proxy.local": c.Proxy.Local, "xds.local_address": c.XDS.LocalAddress} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port", name, addr))
		}
	}
	for name, list := range map[string][]string{"xds.authz_addresses": c.XDS.AuthzAddresses, "xds.local_addresses": c.XDS.LocalAddresses} {
		seen := map[string]bool{}
		for _, addr := range list {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				errs = append(errs, fmt.Errorf("%s: %q: want host:port", name, addr))
			} else if seen[addr] {
				errs = append(errs, fmt.Errorf("%s: %q listed twice", name, addr))
			}
			seen[addr] = true
		}
	}
	if !isPublicURL(c.PublicURL) {
		errs = append(errs, fmt.Errorf("public_url %q: want an absolute http(s) URL without trailing slash", c.PublicURL))
	}
	if c.Proxy.HTTP != "" && !isPublicURL(c.Proxy.PublicURL) {
		errs = append(errs, fmt.Errorf("proxy.public_url %q: want the absolute http(s) URL apps reach proxy.http at, without query, fragment or trailing slash", c.Proxy.PublicURL))
	} else if host, _, err := net.SplitHostPort(c.Proxy.HTTP); err == nil && c.Proxy.PublicURL == "http://"+c.Proxy.HTTP && (host == "" || net.ParseIP(host).IsUnspecified()) {
		errs = append(errs, fmt.Errorf("proxy.public_url: required when proxy.http %q listens on every address: the URL apps use, which the FHIR server's links name", c.Proxy.HTTP))
	}
	if c.Tokens.ClockSkew < 0 || c.Tokens.ClockSkew > 5*time.Minute {
		errs = append(errs, fmt.Errorf("tokens.clock_skew %v: want 0 to 5m", c.Tokens.ClockSkew))
	}
	if c.Tokens.MinRefetchInterval < time.Second {
		errs = append(errs, fmt.Errorf("tokens.min_refetch_interval %v: want at least 1s", c.Tokens.MinRefetchInterval))
	}
	if c.Tokens.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("tokens.cache_size %d: want 0 or more", c.Tokens.CacheSize))
	}
	errs = append(errs, c.validateSandboxes()...)
	errs = append(errs, c.validateNotices()...)
	errs = append(errs, c.validateRegistry()...)
	errs = append(errs, c.validatePortal()...)
	errs = append(errs, c.validateRateLimits()...)
	errs = append(errs, c.Policies.DecisionCache.validate()...)
	errs = append(errs, c.Tracing.validate()...)
	if t := c.XDS.TLS; (t.CertFile == "") != (t.KeyFile == "") || (t.ClientCAFile != "" && t.CertFile == "") {
		errs = append(errs, errors.New("xds.tls: set cert_file and key_file together (client_ca_file needs them)"))
	}
	for name, d := range map[string]time.Duration{"fhir_server.timeout": c.FHIRServer.Timeout, "fhir_server.connect_timeout": c.FHIRServer.ConnectTimeout, "xds.authz_timeout": c.XDS.AuthzTimeout} {
		if d < 0 || d > 10*time.Minute {
			errs = append(errs, fmt.Errorf("%s %v: want 0 (default) to 10m", name, d))
		}
	}
	if c.Proxy.GCPercent < 0 || c.Proxy.GCPercent > 2000 {
		errs = append(errs, fmt.Errorf("proxy.gc_percent %d: want 1 to 2000 (0: the Go default, 100)", c.Proxy.GCPercent))
	}
	if c.Proxy.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("proxy.max_in_flight %d: want 0 (32 per CPU) or more", c.Proxy.MaxInFlight))
	}
	if c.Proxy.GRPC == "" && c.Proxy.HTTP == "" {
		errs = append(errs, errors.New("proxy: set proxy.grpc (Envoy mode), proxy.http (standalone) or both"))
	}
	if c.Proxy.GRPC != "" && c.Proxy.DecisionKeysFile == "" && c.role != ForXDS { // fhirwall-xds never seals
		errs = append(errs, errors.New("proxy.decision_keys_file: required with proxy.grpc (ext_authz seals each decision for ext_proc with it, and every replica needs the same file): head -c 32 /dev/urandom | base64 > decision.keys"))
	}
	if c.HasAPI(PriorAuthAPI) {
		errs = append(errs, c.PriorAuth.validate()...)
	}
	if len(c.Audit.Kafka.Brokers) == 0 || c.Audit.Kafka.Topic == "" {
		errs = append(errs, errors.New("audit.kafka: brokers and topic are required; fhirwall does not serve unaudited"))
	}
	return errors.Join(errs...)
}

// AuthzAddressList is where Envoy reaches fhirwall-proxy's gRPC: xds.authz_addresses, else xds.authz_address.
func (x XDS) AuthzAddressList() []string { return addressList(x.AuthzAddresses, x.AuthzAddress) }

// LocalAddressList is where Envoy reaches fhirwall-proxy's proxy.local: xds.local_addresses, else xds.local_address.
func (x XDS) LocalAddressList() []string { return addressList(x.LocalAddresses, x.LocalAddress) }

func addressList(list []string, one string) []string {
	if len(list) > 0 {
		return list
	}
	return []string{one}
}

// defaultAuthzTimeout is fhirwall-xds's ext_authz timeout when xds.authz_timeout is 0 (internal/xds).
const defaultAuthzTimeout = 2 * time.Second

// defaultLookupTimeout bounds a lookup when fhir_server.lookup_timeout is 0 and the authz timeout allows it.
const defaultLookupTimeout = 1500 * time.Millisecond

func (c *Config) authzTimeout() time.Duration {
	if c.XDS.AuthzTimeout > 0 {
		return c.XDS.AuthzTimeout
	}
	return defaultAuthzTimeout
}

// LookupTimeout is fhir_server.lookup_timeout, or when it is 0 the smaller of 1.5 s and three quarters of the
// ext_authz timeout (and at most fhir_server.timeout): a decision that waits on the FHIR server still
// answers before Envoy gives up on it.
func (c *Config) LookupTimeout() time.Duration {
	if c.FHIRServer.LookupTimeout > 0 {
		return c.FHIRServer.LookupTimeout
	}
	d := min(defaultLookupTimeout, c.authzTimeout()*3/4)
	if c.FHIRServer.Timeout > 0 {
		d = min(d, c.FHIRServer.Timeout)
	}
	return d
}

func (c *Config) validateLookupTimeout() []error {
	f := c.FHIRServer
	if f.LookupTimeout == 0 {
		return nil // LookupTimeout derives one that fits
	}
	if f.LookupTimeout < 0 || f.LookupTimeout > 10*time.Minute {
		return []error{fmt.Errorf("fhir_server.lookup_timeout %v: want 0 (default) to 10m", f.LookupTimeout)}
	}
	if f.Timeout > 0 && f.LookupTimeout > f.Timeout {
		return []error{fmt.Errorf("fhir_server.lookup_timeout %v: at most fhir_server.timeout (%v)", f.LookupTimeout, f.Timeout)}
	}
	if authz := c.authzTimeout(); c.Proxy.GRPC != "" && f.LookupTimeout >= authz {
		return []error{fmt.Errorf("fhir_server.lookup_timeout %v: want less than xds.authz_timeout (%v), or Envoy gives up on the decision first", f.LookupTimeout, authz)}
	}
	return nil
}

var tierRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$`)

func (c *Config) validateRateLimits() []error {
	rl := c.RateLimits
	if len(rl.Tiers) == 0 {
		return nil
	}
	var errs []error
	errs = append(errs, rl.Global.validate(c.XDS)...)
	for name, r := range rl.Tiers {
		if !tierRE.MatchString(name) {
			errs = append(errs, fmt.Errorf("rate_limits.tiers.%s: want a lower-case name", name))
		}
		if err := r.Validate("rate_limits.tiers." + name); err != nil {
			errs = append(errs, err)
		}
	}
	if _, ok := rl.Tiers[ratelimit.DefaultTier]; !ok {
		errs = append(errs, fmt.Errorf("rate_limits.tiers: define %q, the tier of clients the registry gives none", ratelimit.DefaultTier))
	}
	if err := rl.Anonymous.Validate("rate_limits.anonymous"); err != nil {
		errs = append(errs, err)
	}
	for name, r := range rl.PerUser {
		tier, ok := rl.Tiers[name]
		if !ok {
			errs = append(errs, fmt.Errorf("rate_limits.per_user.%s: not a tier of rate_limits.tiers", name))
			continue
		}
		if err := r.Validate("rate_limits.per_user." + name); err != nil {
			errs = append(errs, err)
		}
		// Envoy takes tokens from a request's buckets strictest rate first and stops at the first empty one:
		// with the client's rate as strict as its users', a user over its own rate could drain the client's.
		if r.PerSecond >= tier.PerSecond || max(r.Burst, r.PerSecond) > max(tier.Burst, tier.PerSecond) {
			errs = append(errs, fmt.Errorf("rate_limits.per_user.%s: want per_second below the tier's and burst no larger", name))
		}
	}
	for i, a := range c.APIs {
		for name, r := range a.RateLimits {
			if _, ok := rl.Tiers[name]; !ok {
				errs = append(errs, fmt.Errorf("apis[%d].rate_limits.%s: not a tier of rate_limits.tiers", i, name))
			}
			if err := r.Validate(fmt.Sprintf("apis[%d].rate_limits.%s", i, name)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

func (g GlobalRateLimit) validate(x XDS) []error {
	if !g.Enabled() {
		return nil
	}
	var errs []error
	if host, port, err := net.SplitHostPort(g.Address); err != nil || host == "" || port == "" {
		errs = append(errs, fmt.Errorf("rate_limits.global.address %q: want the rate limit service's host:port, or \"\" to turn the global limit off", g.Address))
	}
	if !tierRE.MatchString(g.Domain) {
		errs = append(errs, fmt.Errorf("rate_limits.global.domain %q: want a lower-case name such as %q", g.Domain, ratelimit.DefaultDomain))
	}
	if g.Timeout < time.Millisecond || g.Timeout > 5*time.Second || g.Timeout%time.Millisecond != 0 {
		errs = append(errs, fmt.Errorf("rate_limits.global.timeout %v: want whole milliseconds from 1ms to 5s (every limited request waits on it)", g.Timeout))
	}
	if x.RateLimitNodeID == "" || x.RateLimitNodeID == x.NodeID {
		errs = append(errs, fmt.Errorf("xds.ratelimit_node_id %q: want the rate limit service's own xDS node id (default fhirwall-ratelimit), not Envoy's", x.RateLimitNodeID))
	}
	return errs
}

// isPublicURL: an absolute http(s) URL apps use as a base, nothing but scheme, host[:port] and a path.
func isPublicURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil &&
		!strings.ContainsAny(raw, "?#") && !strings.HasSuffix(raw, "/")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
