package capability

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/fhirwall/fhirwall/internal/outcome"
)

// The two paths below each API's base this package answers.
const (
	MetadataPath = "/metadata"
	SMARTPath    = "/.well-known/smart-configuration"
)

// Discovery tells the handler an issuer's endpoints; OIDCDiscovery is the real one.
type Discovery interface {
	Discover(ctx context.Context, issuer string) (*Endpoints, error)
}

var _ Discovery = (*OIDCDiscovery)(nil)

// Options are the parts of the documents that do not come from an API's configuration.
type Options struct {
	// Date is CapabilityStatement.date (required by R4): when this configuration took effect, YYYY-MM-DD.
	Date string
	// Version is CapabilityStatement.software.version; may be empty.
	Version string
	// PortalURL is the developer portal's public origin (portal.public_url); empty when the portal is off.
	// When set, the documents name fhirwall's own RFC 7009 endpoint, PortalURL+RevocationPath, instead of
	// the issuer's: a token revoked only at the issuer would still pass the gateway, which verifies JWTs
	// locally (adapters/registry/revocation).
	PortalURL string
	// DCR also names the portal's RFC 7591 registration endpoint, PortalURL+RegistrationPath
	// (portal.dcr.enabled), never the issuer's own.
	DCR bool
}

// The portal's paths the documents name (RFC 8414 §2 revocation_endpoint and registration_endpoint).
const (
	RevocationPath   = "/oauth/revoke"
	RegistrationPath = "/register"
)

// portalEndpoints are the endpoints opts makes the documents name instead of the issuer's.
func (o Options) portalEndpoints() (revocation, registration string) {
	if o.PortalURL == "" {
		return "", ""
	}
	base := strings.TrimSuffix(o.PortalURL, "/")
	revocation = base + RevocationPath
	if o.DCR {
		registration = base + RegistrationPath
	}
	return revocation, registration
}

func (o Options) validate() error {
	if o.PortalURL == "" {
		if o.DCR {
			return invalid("DCR needs the portal's URL")
		}
		return nil
	}
	u, err := url.Parse(o.PortalURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return invalid("portal URL %q: want an absolute http(s) URL without query or fragment", o.PortalURL)
	}
	return nil
}

// Handler answers GET [base]/metadata and GET [base]/.well-known/smart-configuration for every configured
// API, and 404 for anything else. The documents are rendered once per configuration and issuer discovery
// document and served from memory; when the issuer's endpoints cannot be known it answers 503 (fail
// closed: no document names endpoints fhirwall has not seen).
type Handler struct {
	apis      []*apiDocs
	discovery Discovery
	opts      Options
	log       *slog.Logger
}

type apiDocs struct {
	api      API
	rendered atomic.Pointer[documents]
}

// documents are one rendering; source is the discovery document it was made from (nil: none needed).
type documents struct {
	source   *Endpoints
	metadata document
	smart    document
}

type document struct {
	body        []byte
	etag        string
	contentType string
}

// New validates every API and returns the handler; the error names every problem.
func New(apis []API, discovery Discovery, opts Options, log *slog.Logger) (*Handler, error) {
	var errs []error
	h := &Handler{discovery: discovery, opts: opts, log: log}
	prefixes := map[string]bool{}
	for i := range apis {
		a := apis[i]
		if err := a.Validate(); err != nil {
			errs = append(errs, err)
		}
		if prefixes[a.Prefix] {
			errs = append(errs, invalid("prefix %q configured twice", a.Prefix))
		}
		prefixes[a.Prefix] = true
		h.apis = append(h.apis, &apiDocs{api: a})
	}
	if opts.Date == "" {
		errs = append(errs, invalid("no CapabilityStatement date"))
	}
	if err := opts.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Render what needs no issuer now: a mistake shows at start, not at the first request.
	for _, d := range h.apis {
		if !d.api.SMART.needsDiscovery() {
			if _, err := h.documents(context.Background(), d); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}

// Match reports whether path (as the client sent it, API prefix included) is one this handler answers.
func (h *Handler) Match(path string) bool {
	_, _, ok := h.route(path)
	return ok
}

func (h *Handler) route(path string) (*apiDocs, string, bool) {
	for _, d := range h.apis {
		if rest, ok := strings.CutPrefix(path, d.api.Prefix); ok && (rest == MetadataPath || rest == SMARTPath) {
			return d, rest, true
		}
	}
	return nil, "", false
}

// ServeHTTP answers the two documents. It decides nothing about the caller: both are public (SMART 2.2
// §Discovery, FHIR R4 capabilities), and whoever mounts it audits the request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d, which, ok := h.route(r.URL.EscapedPath())
	if !ok {
		outcome.NotFound.Write(w)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		outcome.Refusal{Status: http.StatusMethodNotAllowed, Code: "not-supported", Diagnostics: "only GET is supported here"}.Write(w)
		return
	}
	docs, err := h.documents(r.Context(), d)
	if err != nil {
		h.log.Error("discovery documents unavailable", "api", d.api.Name, "path", which, "error", err)
		outcome.Unavailable.WithDiagnostics("the authorization server's configuration is unavailable").Write(w)
		return
	}
	doc := docs.metadata
	if which == SMARTPath {
		doc = docs.smart
	}
	w.Header().Set("Content-Type", doc.contentType)
	w.Header().Set("ETag", doc.etag)
	w.Header().Set("Cache-Control", "no-cache") // revalidate: endpoints change with the IdP
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, doc.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(doc.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(doc.body)
	}
}

// documents returns the current rendering, re-rendering when the issuer's document changed.
func (h *Handler) documents(ctx context.Context, d *apiDocs) (*documents, error) {
	var src *Endpoints
	if d.api.SMART.needsDiscovery() {
		var err error
		if src, err = h.discovery.Discover(ctx, d.api.SMART.Issuer); err != nil {
			return nil, err
		}
	}
	if cur := d.rendered.Load(); cur != nil && cur.source == src {
		return cur, nil
	}
	ep := effective(d.api.SMART, src)
	revocation, registration := h.opts.portalEndpoints()
	if revocation != "" {
		ep.RevocationEndpoint = revocation
	}
	meta, err := renderCapabilityStatement(&d.api, ep, registration, h.opts.Date, h.opts.Version)
	if err != nil {
		return nil, err
	}
	smart, err := renderSMART(&d.api, ep, registration)
	if err != nil {
		return nil, err
	}
	docs := &documents{
		source:   src,
		metadata: newDocument(meta, outcome.ContentType),
		// SMART 2.2 §Discovery: served as application/json.
		smart: newDocument(smart, "application/json"),
	}
	d.rendered.Store(docs)
	return docs, nil
}

func newDocument(body []byte, contentType string) document {
	sum := sha256.Sum256(body)
	return document{body: body, etag: `"` + hex.EncodeToString(sum[:16]) + `"`, contentType: contentType}
}

func etagMatches(header, etag string) bool {
	for _, m := range strings.Split(header, ",") {
		m = strings.TrimSpace(m)
		if m == "*" || strings.TrimPrefix(m, "W/") == etag {
			return true
		}
	}
	return false
}

// Documents returns the API's CapabilityStatement and SMART configuration as ServeHTTP answers them (the
// developer portal renders its API pages from them); an unknown API is an error.
func (h *Handler) Documents(ctx context.Context, api string) (metadata, smart []byte, err error) {
	for _, d := range h.apis {
		if d.api.Name == api {
			docs, err := h.documents(ctx, d)
			if err != nil {
				return nil, nil, err
			}
			return docs.metadata.body, docs.smart.body, nil
		}
	}
	return nil, nil, fmt.Errorf("capability: no API named %q", api)
}
