package priorauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fhirwall/fhirwall/adapters/priorauth/um"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// StateDir is the stack's runtime directory: $FHIRWALL_STATE as test/stack/lib.sh reads it, else
// <repo>/.fhirwall.
func StateDir() string {
	if d := os.Getenv("FHIRWALL_STATE"); d != "" {
		return d
	}
	return stackenv.StateDir()
}

// AdminTokenFile is the review admin API's bearer token file: $FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE, else
// $FHIRWALL_STATE/admin/prior-auth.token (config prior_auth.admin_token_file on the stack).
func AdminTokenFile() string {
	if f := os.Getenv("FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE"); f != "" {
		return f
	}
	return filepath.Join(StateDir(), "admin", "prior-auth.token")
}

// Admin talks to the review admin API on fhirwall-proxy's admin listener.
type Admin struct {
	URL   string // http://127.0.0.1:9190
	Token string
	HTTP  *http.Client
}

// NewAdmin reads the token file and points at the stack's admin listener.
func NewAdmin() (*Admin, error) {
	b, err := os.ReadFile(AdminTokenFile())
	if err != nil {
		return nil, fmt.Errorf("admin token: %w (is the stack up with prior_auth.admin_token_file set?)", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("admin token file %s is empty", AdminTokenFile())
	}
	return &Admin{URL: stackenv.ProxyAdminURL, Token: tok, HTTP: &http.Client{Timeout: 30 * time.Second}}, nil
}

// QueueItem is one request as the admin API lists it. The admin API's JSON names are read loosely
// (snake_case or Go field names, any case): Raw keeps everything.
type QueueItem struct {
	Raw             map[string]any
	ID              string
	Status          string
	ClaimIdentifier string
	EOBID           string
	ClaimResponseID string
	Expedited       bool
	Received        time.Time
	Deadline        time.Time
}

// field finds a member of m by any of names, comparing lower case without underscores or dashes.
func field(m map[string]any, names ...string) any {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
	}
	for _, n := range names {
		for k, v := range m {
			if norm(k) == norm(n) {
				return v
			}
		}
	}
	return nil
}

func readItem(m map[string]any) QueueItem {
	q := QueueItem{Raw: m}
	q.ID = str(field(m, "id", "request_id"))
	q.Status = str(field(m, "status"))
	q.ClaimIdentifier = str(field(m, "claim_identifier"))
	q.EOBID = strings.TrimPrefix(str(field(m, "eob_id", "eob")), "ExplanationOfBenefit/")
	q.ClaimResponseID = strings.TrimPrefix(str(field(m, "claim_response_id", "claimresponse")), "ClaimResponse/")
	q.Expedited, _ = field(m, "expedited").(bool)
	q.Received, _ = time.Parse(time.RFC3339Nano, str(field(m, "received", "received_at")))
	q.Deadline, _ = time.Parse(time.RFC3339Nano, str(field(m, "deadline", "due")))
	return q
}

func (a *Admin) do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// List is GET /admin/prior-auth/requests[?status=…]. The answer is a JSON array, or an object holding one.
func (a *Admin) List(ctx context.Context, status string) ([]QueueItem, error) {
	path := "/admin/prior-auth/requests"
	if status != "" {
		path += "?status=" + url.QueryEscape(status)
	}
	st, b, err := a.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if st != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %.300s", path, st, b)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("GET %s: not JSON: %.300s", path, b)
	}
	arr, ok := v.([]any)
	if !ok {
		if m, isMap := v.(map[string]any); isMap {
			for _, e := range m {
				if l, isList := e.([]any); isList {
					arr, ok = l, true
					break
				}
			}
		}
	}
	if !ok && v != nil {
		return nil, fmt.Errorf("GET %s: no list in %.300s", path, b)
	}
	var out []QueueItem
	for _, e := range arr {
		if m, ok := e.(map[string]any); ok {
			out = append(out, readItem(m))
		}
	}
	return out, nil
}

// Find is the listed request whose JSON carries the (unique) Claim identifier value.
func (a *Admin) Find(ctx context.Context, status, identifier string) (QueueItem, bool, error) {
	items, err := a.List(ctx, status)
	if err != nil {
		return QueueItem{}, false, err
	}
	for _, it := range items {
		if Contains(it.Raw, identifier) {
			return it, true, nil
		}
	}
	return QueueItem{}, false, nil
}

// Get is GET /admin/prior-auth/requests/{id}.
func (a *Admin) Get(ctx context.Context, id string) (QueueItem, int, error) {
	st, b, err := a.do(ctx, http.MethodGet, "/admin/prior-auth/requests/"+url.PathEscape(id), nil)
	if err != nil || st != http.StatusOK {
		return QueueItem{}, st, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return QueueItem{}, st, fmt.Errorf("request %s: not a JSON object: %.300s", id, b)
	}
	return readItem(m), st, nil
}

// Review is a reviewer's decision (the admin API's body).
type Review struct {
	Reviewer    string         `json:"reviewer"`
	Verdict     string         `json:"verdict"` // ReviewApproved or ReviewDenied
	Reason      map[string]any `json:"reason,omitempty"`
	Extended    bool           `json:"extended"`
	AfterAppeal bool           `json:"after_appeal"`
}

// The verdicts of the admin API.
const (
	ReviewApproved = "approved"
	ReviewDenied   = "denied"
)

// Decide is POST /admin/prior-auth/requests/{id}/decision; it returns the status and body.
func (a *Admin) Decide(ctx context.Context, id string, r Review) (int, []byte, error) {
	return a.do(ctx, http.MethodPost, "/admin/prior-auth/requests/"+url.PathEscape(id)+"/decision", r)
}

// CLIDecide decides a pended request with `fhirwall prior-auth decide`: the stack's built binary
// ($FHIRWALL_STATE/bin/fhirwall) when present and it knows the command, else `go run ./cmd/fhirwall`. It
// returns the combined output.
func CLIDecide(ctx context.Context, id, reviewer, verdict string) ([]byte, error) {
	args := []string{"prior-auth", "decide", "-admin", stackenv.ProxyAdminURL, "-token-file", AdminTokenFile(),
		"-id", id, "-reviewer", reviewer, "-verdict", verdict}
	if bin := filepath.Join(StateDir(), "bin", "fhirwall"); isExecutable(bin) {
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			return out, err
		}
		// Exit status 2 is a usage error: a binary built before the prior-auth commands existed.
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"run", "./cmd/fhirwall"}, args...)...)
	cmd.Dir = stackenv.Root()
	return cmd.CombinedOutput()
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// --- the payer's UM system ----------------------------------------------------------------------------------

// UMAddr is where the stack's config points prior_auth.um.url (http://127.0.0.1:8096/decide).
const UMAddr = "127.0.0.1:8096"

// FakeUM stands in for the payer's utilization management system: POST /decide with an um.Request, answered
// with an um.Result giving every item Verdict. It records the requests it was asked.
type FakeUM struct {
	Verdict um.Verdict
	addr    string
	srv     *http.Server
	mu      sync.Mutex
	asked   []um.Request
}

// ErrUMPortBusy: something else listens where the fake UM must.
var ErrUMPortBusy = errors.New("the UM port is taken by another process")

// StartFakeUM listens on addr (UMAddr) and answers verdict for every item.
func StartFakeUM(addr string, verdict um.Verdict) (*FakeUM, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUMPortBusy, err)
	}
	f := &FakeUM{Verdict: verdict, addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /decide", func(w http.ResponseWriter, r *http.Request) {
		var req um.Request
		if err := json.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.asked = append(f.asked, req)
		f.mu.Unlock()
		res := um.Result{}
		for _, it := range req.Items {
			ir := um.ItemResult{Sequence: it.Sequence, Verdict: f.Verdict, Rule: "fake-um"}
			if f.Verdict == um.Denied {
				ir.Reason = &um.Code{System: X12ReasonCode, Code: "A1", Display: "fake UM denial"}
			}
			res.Items = append(res.Items, ir)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	})
	f.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

// Addr is where the fake UM listens.
func (f *FakeUM) Addr() string { return f.addr }

// Asked is every request the fake UM received.
func (f *FakeUM) Asked() []um.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]um.Request(nil), f.asked...)
}

// Close stops the fake UM: the UM is down again.
func (f *FakeUM) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f.srv.Shutdown(ctx)
}

// UMDown reports whether nothing listens on addr.
func UMDown(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}
