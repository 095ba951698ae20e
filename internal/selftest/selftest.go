// Package selftest checks a live fhirwall deployment from the outside, with test clients the payer provides:
// discovery, scopes, refusal equivalence, each API's data scope, rate-limit answers, audit records and the
// adversarial cases that are safe against production (reads only, synthetic members). Each check names the
// requirement ids (internal/evidence) it proves; `fhirwall selftest` turns the results into a signed matrix.
// The checks are the same for Envoy mode and the standalone proxy: only the base URL differs.
package selftest

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

// Outcome is a check's result: pass, fail or skip, as the compliance matrix records it.
type Outcome = evidence.Outcome

const (
	Pass = evidence.Pass
	Fail = evidence.Fail
	Skip = evidence.Skip
)

// Result is one check's result. Detail is one line: why it failed or skipped, or what it saw when it passed;
// it never holds a token.
type Result struct {
	Name         string
	Requirements []string
	Outcome      Outcome
	Detail       string
}

// Options are one run's settings.
type Options struct {
	Base   *url.URL     // the deployment's public base (Envoy's listener or the standalone proxy)
	HTTP   *http.Client // trusts the deployment's CA; also used for the token endpoint
	Config *Config
	// AuditKafka are the brokers of the audit topic; none: the audit check skips. AuditTopic defaults to
	// fhirwall.audit. AuditWait bounds the wait for the records (default 60s).
	AuditKafka []string
	AuditTopic string
	AuditWait  time.Duration
	// RateLimitBurst, when > 0, sends that many requests at once (Config.RateLimit) and expects 429s; 0: the
	// rate-limit check skips. Never a flood: one burst, once.
	RateLimitBurst int
	// AllowWrites lets the one writing check run (config prior_auth_writes): without it, it skips.
	AllowWrites bool
	// Only keeps the checks whose name or one of whose requirement ids is listed; empty: all.
	Only []string
	Now  func() time.Time
}

// check is one self-test check.
type check struct {
	name string
	reqs []string
	run  func(ctx context.Context, r *runner) (Outcome, string)
}

// Checks lists every check's name and requirement ids, in run order.
func Checks() []Result {
	var out []Result
	for _, c := range checks() {
		out = append(out, Result{Name: c.name, Requirements: slices.Clone(c.reqs)})
	}
	return out
}

// Run runs the checks (Options.Only) in order and returns their results; an error means the run itself
// could not start (bad options), never that a check failed.
func Run(ctx context.Context, o Options) ([]Result, error) {
	if o.Base == nil || o.Base.Scheme == "" || o.Base.Host == "" {
		return nil, errors.New("the deployment's base URL is required (https://host[:port])")
	}
	if o.Config == nil {
		return nil, errors.New("a config is required")
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AuditTopic == "" {
		o.AuditTopic = "fhirwall.audit"
	}
	if o.AuditWait == 0 {
		o.AuditWait = 60 * time.Second
	}
	r := &runner{o: o, c: o.Config, tokens: map[string]tokenResult{}, started: o.Now()}
	var out []Result
	for _, c := range checks() {
		if len(o.Only) > 0 && !slices.Contains(o.Only, c.name) && !slices.ContainsFunc(c.reqs, func(id string) bool { return slices.Contains(o.Only, id) }) {
			continue
		}
		outcome, detail := c.run(ctx, r)
		out = append(out, Result{Name: c.name, Requirements: slices.Clone(c.reqs), Outcome: outcome, Detail: r.redact(detail)})
	}
	return out, nil
}

// runner is one run's state: tokens fetched once, the answers whose audit records must appear.
type runner struct {
	o       Options
	c       *Config
	started time.Time

	mu       sync.Mutex
	tokens   map[string]tokenResult // by principal: member, member-limited, provider, provider-pa, payer
	secrets  []string               // every token seen, redacted from details
	answered []answered             // answers that carried a decision id
}

type tokenResult struct {
	tok string
	err error
}

// answered is an answer whose audit record the audit check looks for.
type answered struct {
	what       string
	path       string // as sent, query included
	decisionID string
	requestID  string
	status     int
	withToken  bool
}

// answer is one HTTP exchange's result.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// maxBody bounds what a check reads of an answer.
const maxBody = 8 << 20

// send sends one request to the deployment: path is relative to the base URL and holds the query exactly as
// sent. token "" sends no Authorization header. The answer's decision id is kept for the audit check.
func (r *runner) send(ctx context.Context, what, method, path, token string, header map[string]string, body []byte) (answer, error) {
	u := strings.TrimSuffix(r.o.Base.String(), "/") + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := r.o.HTTP.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) { // its message repeats the whole URL, query (and any access_token) included
			err = ue.Err
		}
		return answer{}, fmt.Errorf("%s %s: %w", method, r.redactURL(path), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: reading the answer: %w", method, r.redactURL(path), err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: b}
	if id := resp.Header.Get("X-Fhirwall-Decision-Id"); id != "" {
		r.mu.Lock()
		r.answered = append(r.answered, answered{what: what, path: path, decisionID: id, requestID: resp.Header.Get("X-Request-Id"),
			status: resp.StatusCode, withToken: token != ""})
		r.mu.Unlock()
	}
	return a, nil
}

// token returns a principal's access token, fetched once: "member", "member-limited", "provider",
// "provider-pa" (the provider's backend with its Prior Authorization scopes), "provider-pa-write" (with
// Claim create and read), "payer". ok false: the config
// names no way to it (the caller skips).
func (r *runner) token(ctx context.Context, who string) (tok string, ok bool, err error) {
	r.mu.Lock()
	if t, seen := r.tokens[who]; seen {
		r.mu.Unlock()
		return t.tok, t.tok != "" || t.err != nil, t.err
	}
	r.mu.Unlock()
	var cr Credentials
	var api string
	scopes := []string(nil)
	switch who {
	case "member":
		cr, api = r.c.Member.Credentials, r.c.APIs.PatientAccess
	case "member-limited":
		cr, api = Credentials{TokenFile: r.c.Member.LimitedTokenFile}, r.c.APIs.PatientAccess
	case "provider":
		cr, api = r.c.Provider.Credentials, r.c.APIs.ProviderAccess
	case "provider-pa":
		cr, api = r.c.Provider.Credentials, r.c.APIs.PriorAuth
		scopes = r.c.Provider.PriorAuthScopes
		if len(scopes) == 0 {
			scopes = []string{"system/Claim.r"}
		}
	case "provider-pa-write":
		cr, api = r.c.Provider.Credentials, r.c.APIs.PriorAuth
		if r.c.PriorAuthWrites.API != "" {
			api = r.c.PriorAuthWrites.API
		}
		scopes = []string{"system/Claim.c", "system/Claim.r"}
	case "payer":
		cr, api = r.c.Payer.Credentials, r.c.APIs.PayerToPayer
	default:
		return "", false, fmt.Errorf("no principal %q", who)
	}
	if !cr.configured() {
		return "", false, nil
	}
	switch {
	case cr.TokenFile != "":
		tok, err = readTokenFile(r.c.file(cr.TokenFile))
	case api == "":
		err = fmt.Errorf("%s: a backend client needs its API's base path (the token endpoint comes from its discovery)", who)
	default:
		if scopes == nil {
			scopes = cr.Scopes
		}
		if len(scopes) == 0 {
			scopes = []string{"system/*.rs"}
		}
		var key crypto.Signer
		var endpoint string
		if key, err = loadSigner(r.c.file(cr.KeyFile)); err == nil {
			if endpoint, err = r.tokenEndpoint(ctx, api); err == nil {
				tok, err = backendToken(ctx, r.o.HTTP, endpoint, cr, key, scopes, r.o.Now())
			}
		}
	}
	if err != nil {
		err = fmt.Errorf("%s token: %w", who, err)
	}
	r.mu.Lock()
	r.tokens[who] = tokenResult{tok, err}
	if tok != "" {
		r.secrets = append(r.secrets, tok)
	}
	r.mu.Unlock()
	return tok, true, err
}

// redact removes every token this run has seen from s (a check's detail quotes answers, which must never
// echo a token, but if one did, the matrix would not carry it).
func (r *runner) redact(s string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.secrets {
		if t != "" {
			s = strings.ReplaceAll(s, t, "[token]")
		}
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return strings.Join(strings.Fields(s), " ")
}

// redactURL is path with any access_token value hidden.
func (r *runner) redactURL(path string) string {
	if i := strings.Index(path, "access_token="); i >= 0 {
		return path[:i] + "access_token=[token]"
	}
	return path
}
