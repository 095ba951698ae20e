//go:build e2e

// Package adversarial attacks the real stack (test/stack/up.sh) the way a curious app or an attacker would,
// through both faces (Envoy + ext_authz/ext_proc, and the standalone proxy), and checks every answer:
//
//   - every 2xx answer carries no forbidden marker in its headers or body: another member's id, name,
//     identifier, phone or street; the id of a resource the caller may not see; a type the token does not
//     grant; an Observation outside a granular scope; for providers, money of any kind;
//   - every other answer (304 aside) is an OperationOutcome.
//
// The markers come from HAPI itself (truth_test.go), which these tests read for ground truth only, after
// writing into it the few fixtures the shared seed lacks (fixtures_test.go: a resource moved between
// members, Provenance/Task/PaymentReconciliation, money in contained resources and extensions). Each
// finding of issue 12 has a test named after what it proves (findings_test.go); classes_test.go covers every
// search parameter, modifier, interaction and header the APIs accept; property_test.go sends random
// combinations (FHIRWALL_PROPERTY_N, FHIRWALL_PROPERTY_SEED); payertopayer_test.go attacks the Payer-to-Payer
// API as payer-b (one member opted in through $member-match) and payer-c (nobody), with its own members
// (p2p_fixtures_test.go, testdata/payertopayer.json; FHIRWALL_P2P_ALL=1 sends every search probe).
package adversarial

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/test/stackenv"
)

const (
	patientAccess  = "/patient-access/fhir"
	providerAccess = "/provider-access/fhir"
	payerToPayer   = "/payer-to-payer/fhir"
)

// mode is one of fhirwall's two faces.
type mode struct{ name, root string }

func modes() []mode {
	return []mode{{"envoy", stackenv.EnvoyURL()}, {"standalone", stackenv.StandaloneURL}}
}

// call is one request, relative to an API's base: path holds the query too, written exactly as sent.
type call struct {
	method string
	path   string
	header map[string]string
	body   string
	// chunked sends the body with Transfer-Encoding: chunked (no Content-Length).
	chunked bool
}

func get(path string, header ...string) call {
	c := call{method: http.MethodGet, path: path}
	if len(header)%2 != 0 {
		panic("get: header names and values come in pairs")
	}
	for i := 0; i < len(header); i += 2 {
		if c.header == nil {
			c.header = map[string]string{}
		}
		c.header[header[i]] = header[i+1]
	}
	return c
}

// ask is a GET of path by p, the shape of most cases' tables.
type ask struct {
	p    *principal
	path string
}

// searchPost is `POST [type]/_search` with a form body.
func searchPost(typ, form string) call {
	return call{method: http.MethodPost, path: "/" + typ + "/_search", body: form,
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}
}

func (c call) String() string {
	s := c.method + " " + c.path
	for k, v := range c.header {
		s += fmt.Sprintf(" [%s: %s]", k, v)
	}
	if c.body != "" {
		s += " body=" + c.body
	}
	if c.chunked {
		s += " (chunked)"
	}
	return s
}

// answer is what came back, the body decoded if the answer was gzip.
type answer struct {
	mode   string
	method string
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string {
	return fmt.Sprintf("%s: %d %.400s", a.mode, a.status, a.body)
}

var client = func() *http.Client {
	c, err := stackenv.Client(60 * time.Second)
	if err != nil {
		panic(err)
	}
	tr := c.Transport.(*http.Transport)
	// The cases send Accept-Encoding themselves; the markers are looked for in the decoded body.
	tr.DisableCompression = true
	tr.MaxIdleConnsPerHost = 16
	return c
}()

// throttled counts the answers that said "retry after" (rate limit, in-flight bound), for the run's summary.
var throttled atomic.Int64

// send sends c to the API at apiPrefix through m. It waits and retries while the proxy restarts
// (connection refused: other engineers restart it) and when a rate limit or the in-flight bound says
// "retry after": neither is an answer about the data.
func send(ctx context.Context, m mode, apiPrefix, token string, c call) (answer, error) {
	deadline := time.Now().Add(90 * time.Second)
	for attempt := 0; ; attempt++ {
		a, err := sendOnce(ctx, m, apiPrefix, token, c)
		retry := time.Duration(0)
		switch {
		case err != nil && (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)):
			retry = time.Second
		case err != nil:
			return a, err
		case a.status == http.StatusTooManyRequests || (a.status == http.StatusServiceUnavailable && a.header.Get("Retry-After") != ""):
			throttled.Add(1)
			s, _ := strconv.Atoi(a.header.Get("Retry-After"))
			retry = min(max(time.Duration(s)*time.Second, 200*time.Millisecond), 5*time.Second)
		case a.status == http.StatusServiceUnavailable && (attempt < 3 || !proxyReady()):
			retry = time.Second // the proxy is restarting: Envoy fails closed until it is back
		}
		if retry == 0 {
			return a, nil
		}
		if time.Now().Add(retry).After(deadline) {
			if err != nil {
				return a, err
			}
			return a, nil
		}
		select {
		case <-ctx.Done():
			return a, ctx.Err()
		case <-time.After(retry):
		}
	}
}

func proxyReady() bool {
	resp, err := http.Get(stackenv.ProxyAdminURL + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func sendOnce(ctx context.Context, m mode, apiPrefix, token string, c call) (answer, error) {
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	full := m.root + apiPrefix + c.path
	req, err := http.NewRequestWithContext(ctx, c.method, full, body)
	if err != nil {
		return answer{}, err
	}
	if c.chunked {
		req.ContentLength, req.TransferEncoding = -1, []string{"chunked"}
		req.Body = io.NopCloser(strings.NewReader(c.body)) // no GetBody: the client cannot know the length
	}
	// Send the path exactly as the case wrote it (encodings, modifiers' colons).
	path, _, _ := strings.Cut(apiPrefix+c.path, "?")
	req.URL.Opaque = path
	req.Header.Set("Accept", "application/fhir+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range c.header {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{mode: m.name, method: c.method, status: resp.StatusCode, header: resp.Header, body: raw}
	if enc := strings.ToLower(resp.Header.Get("Content-Encoding")); enc == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return a, fmt.Errorf("%s %s: Content-Encoding gzip, body is not: %w", m.name, c, err)
		}
		if a.body, err = io.ReadAll(zr); err != nil {
			return a, fmt.Errorf("%s %s: gzip body: %w", m.name, c, err)
		}
	}
	return a, nil
}

// exchange sends c as p through both modes and checks each answer (check): it returns the two answers for
// the case's own assertions.
func exchange(t *testing.T, p *principal, c call) [2]answer {
	t.Helper()
	var out [2]answer
	for i, m := range modes() {
		out[i] = sendAs(t, p, m, c)
	}
	return out
}

// sendAs sends c as p through one mode and checks the answer (check).
func sendAs(t *testing.T, p *principal, m mode, c call) answer {
	t.Helper()
	p.prepare(t, groundTruth(t))
	a, err := send(testContext(t), m, p.api, p.token(t), c)
	if err != nil {
		t.Fatalf("%s %s as %s: %v", m.name, c, p.name, err)
	}
	for _, problem := range check(p, a) {
		t.Errorf("%s as %s, %s: %s", c, p.name, m.name, problem)
	}
	return a
}

// resources returns the resources a FHIR answer carries, at every level: the root, Bundle entries (nested
// Bundles too) and contained resources.
func resources(b []byte) []map[string]any {
	var root map[string]any
	if json.Unmarshal(b, &root) != nil {
		return nil
	}
	var out []map[string]any
	var walk func(r map[string]any)
	walk = func(r map[string]any) {
		out = append(out, r)
		for _, c := range asObjects(r["contained"]) {
			walk(c)
		}
		if r["resourceType"] == "Bundle" {
			for _, e := range asObjects(r["entry"]) {
				if res, ok := e["resource"].(map[string]any); ok {
					walk(res)
				}
			}
		}
	}
	walk(root)
	return out
}

// entries returns the resources of a searchset's entries (search mode match and include alike).
func entries(t *testing.T, a answer) []map[string]any {
	t.Helper()
	var b struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(a.body, &b); err != nil || b.ResourceType != "Bundle" {
		t.Fatalf("%s: want a Bundle, got %d %.300s", a.mode, a.status, a.body)
	}
	var out []map[string]any
	for _, e := range b.Entry {
		out = append(out, e.Resource)
	}
	return out
}

func ids(rs []map[string]any) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%v/%v", r["resourceType"], r["id"]))
	}
	return out
}

func asObjects(v any) []map[string]any {
	arr, _ := v.([]any)
	var out []map[string]any
	for _, x := range arr {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// link returns a Bundle's link of the given relation, or "".
func link(a answer, relation string) string {
	var b struct {
		Link []struct{ Relation, URL string } `json:"link"`
	}
	_ = json.Unmarshal(a.body, &b)
	for _, l := range b.Link {
		if l.Relation == relation {
			return l.URL
		}
	}
	return ""
}

// relative turns an absolute link of the API into a call path (what follows the API's base).
func relative(t *testing.T, abs, apiPrefix string) string {
	t.Helper()
	u, err := url.Parse(abs)
	if err != nil {
		t.Fatalf("link %q: %v", abs, err)
	}
	rest, ok := strings.CutPrefix(u.EscapedPath(), apiPrefix)
	if !ok {
		t.Fatalf("link %q is not on the API's base %s", abs, apiPrefix)
	}
	if u.RawQuery != "" {
		rest += "?" + u.RawQuery
	}
	return rest
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestMain(m *testing.M) {
	// The proxy may be restarting (other suites restart it): give it a while before calling the stack down.
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		var resp *http.Response
		if resp, err = http.Get(stackenv.ProxyAdminURL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				err := writeFixtures(ctx)
				if err == nil {
					err = writePayerToPayerFixtures(ctx)
				}
				cancel()
				if err != nil {
					fmt.Fprintln(os.Stderr, "adversarial: writing the test fixtures into HAPI:", err)
					os.Exit(1)
				}
				code := m.Run()
				if n := throttled.Load(); n > 0 {
					fmt.Fprintf(os.Stderr, "adversarial: %d answers said \"retry after\" (rate limit or in-flight bound) and were retried\n", n)
				}
				os.Exit(code)
			}
			err = fmt.Errorf("readyz: %s", resp.Status)
		}
	}
	fmt.Fprintln(os.Stderr, "adversarial: the stack is not up; run `make stack-up` (or `make test`):", err)
	os.Exit(1)
}
