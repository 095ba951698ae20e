//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/smartclient"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// How long a rate_limits change may take to reach Envoy (fhirwall-xds pushes a snapshot) and the standalone
// limiter (fhirwall-proxy reloads), and how long the original limits may take to come back.
const (
	rateChangeBound  = 20 * time.Second
	rateRestoreBound = 30 * time.Second
)

// A search every provider client may make on Provider Access and is allowed (200): only allowed requests
// reach Envoy's local rate limit (it sits after ext_authz), so a refused one would never count.
const providerProbe = "/Patient?_count=1"

type rate struct{ perSecond, burst int }

// TestRateLimitChangeInTheConfigFileTakesEffectUnderLoad lowers Provider Access's standard tier in the
// runtime config file while member01 reads through both faces: the lower limit must reach Envoy (a new xDS
// snapshot) and the standalone limiter without a restart, and not one of the load's requests may fail.
func TestRateLimitChangeInTheConfigFileTakesEffectUnderLoad(t *testing.T) {
	evidence.Proves(t, "OPS-RATE-01")
	member := member01Token(t)
	provider := providerAppToken(t)
	for _, m := range providerModes {
		if err := burstAllowed(m.base+providerProbe, provider, 4); err != nil {
			t.Fatalf("%s before the change: %v (is the limit already low? `fhirwall.sh reset-config`)", m.name, err)
		}
	}

	load := startLoad(member, 3, 150*time.Millisecond) // 3 workers, ~20 requests a second in all
	defer load.stop()
	time.Sleep(time.Second)

	overrideRates(t, "provider-access", map[string]rate{"standard": {1, 2}}, func() error {
		for _, m := range providerModes {
			if err := burstAllowed(m.base+providerProbe, provider, 4); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
		}
		return nil
	})
	changed := time.Now()
	deadline := changed.Add(rateChangeBound)
	for _, m := range providerModes {
		took, err := waitThrottled(m.base+providerProbe, provider, deadline)
		if err != nil {
			t.Fatalf("%s: provider-app never throttled after the change: %v", m.name, err)
		}
		t.Logf("%s: provider-app throttled %v after the file changed", m.name, took.Sub(changed).Round(time.Millisecond))
	}
	throttledAt := time.Now()
	time.Sleep(time.Second) // the load goes on after the new limits are in force

	res := load.stop()
	t.Logf("load: %d requests (%v) from %s; file changed %s; longest pause between answers %v, ending %s; slowest request %v (%s)",
		res.ok+len(res.failures), res.byMode, load.started.Format(time.StampMilli), changed.Format(time.StampMilli),
		res.maxGap.Round(time.Millisecond), res.gapEnd.Format(time.StampMilli), res.slowTook.Round(time.Millisecond), res.slowest)
	if len(res.failures) > 0 {
		t.Errorf("%d load requests failed across the change, first: %v", len(res.failures), res.failures[:min(5, len(res.failures))])
	}
	if want := int(res.elapsed.Seconds() * 20 / 2); res.ok < want {
		t.Errorf("load answered %d requests in %v, want at least %d", res.ok, res.elapsed.Round(time.Millisecond), want)
	}
	for _, m := range modes {
		if res.byMode[m.name] == 0 {
			t.Errorf("no load request went through %s", m.name)
		}
	}
	if res.maxGap > 2*time.Second {
		t.Errorf("the load stalled for %v", res.maxGap)
	}
	if !res.last.After(throttledAt) {
		t.Errorf("no load request was answered after the new limits were in force (last %v, throttled at %v)", res.last, throttledAt)
	}
}

// TestClientOverItsLimitDoesNotAffectOthers: with Provider Access limited to 1 a second (burst 2) for both
// tiers, provider-app (standard) and provider-org-b (backend) are pushed past their buckets and refused, and
// meanwhile provider-org-a — same API, same tier and limit as provider-org-b — and member01 on Patient
// Access are served: buckets are per client and per API.
func TestClientOverItsLimitDoesNotAffectOthers(t *testing.T) {
	evidence.Proves(t, "OPS-RATE-01")
	member := member01Token(t)
	app := providerAppToken(t)
	orgA := providerToken(t, "provider-org-a")
	orgB := providerToken(t, "provider-org-b")
	overrideRates(t, "provider-access", map[string]rate{"standard": {1, 2}, "backend": {1, 2}}, func() error {
		for _, m := range providerModes {
			for _, tok := range []string{app, orgB} {
				if err := burstAllowed(m.base+providerProbe, tok, 4); err != nil {
					return fmt.Errorf("%s: %w", m.name, err)
				}
			}
		}
		return nil
	})
	deadline := time.Now().Add(rateChangeBound)
	for _, m := range providerModes {
		if _, err := waitThrottled(m.base+providerProbe, orgB, deadline); err != nil {
			t.Fatalf("%s: the low backend limit never applied: %v", m.name, err)
		}
	}

	for i, m := range providerModes {
		t.Run(m.name, func(t *testing.T) {
			// The clients over their limits keep knocking, at ~20 requests a second each, for the whole case.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			hammers := map[string]*hammer{"provider-app": {}, "provider-org-b": {}}
			for name, tok := range map[string]string{"provider-app": app, "provider-org-b": orgB} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					hammers[name].run(m.base+providerProbe, tok, stop)
				}()
			}
			halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
			defer halt()
			for name, h := range hammers {
				if !h.waitThrottled(5 * time.Second) {
					t.Fatalf("%s never got a 429", name)
				}
			}

			// The global limit (rate_limits.global) counts one window a second for both modes together, and the
			// other mode's subtest may have spent provider-org-a's one request of this second: start a new one.
			time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
			served := time.Now()
			if r := fetch(m.base+providerProbe, orgA); r.err != nil || r.status != 200 {
				t.Errorf("provider-org-a (same API, tier and limit as throttled provider-org-b): %v %d %.200s", r.err, r.status, r.body)
			}
			for range 5 {
				if r := fetch(modes[i].base+"/Patient/member-01", member); r.err != nil || r.status != 200 {
					t.Errorf("member01 on patient-access: %v %d %.200s", r.err, r.status, r.body)
				}
			}
			servedEnd := time.Now()
			time.Sleep(300 * time.Millisecond)
			halt()

			for name, h := range hammers {
				h.mu.Lock()
				t.Logf("%s: %d served, %d throttled", name, h.ok, h.throttled)
				if h.err != nil {
					t.Errorf("%s: %v", name, h.err)
				}
				if h.firstThrottled.After(served) || h.lastThrottled.Before(servedEnd) {
					t.Errorf("%s was not throttled throughout (429s from %v to %v, others served from %v to %v)", name,
						h.firstThrottled.Format(time.StampMilli), h.lastThrottled.Format(time.StampMilli),
						served.Format(time.StampMilli), servedEnd.Format(time.StampMilli))
				}
				h.mu.Unlock()
			}
		})
	}
}

// hammer sends one request every 50 ms until stop and tallies the answers: 200 or a proper 429, nothing else.
type hammer struct {
	mu                            sync.Mutex
	ok, throttled                 int
	firstThrottled, lastThrottled time.Time
	err                           error
}

func (h *hammer) run(url, token string, stop <-chan struct{}) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		r := fetch(url, token)
		now := time.Now()
		h.mu.Lock()
		switch {
		case r.err == nil && r.status == 200:
			h.ok++
		case r.err == nil && r.status == 429:
			if err := r.throttledProperly(); err != nil && h.err == nil {
				h.err = err
			}
			h.throttled++
			if h.firstThrottled.IsZero() {
				h.firstThrottled = now
			}
			h.lastThrottled = now
		default:
			if h.err == nil {
				h.err = fmt.Errorf("unexpected answer: %v %d %.200s", r.err, r.status, r.body)
			}
		}
		h.mu.Unlock()
	}
}

func (h *hammer) waitThrottled(bound time.Duration) bool {
	for end := time.Now().Add(bound); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		h.mu.Lock()
		n := h.throttled
		h.mu.Unlock()
		if n > 0 {
			return true
		}
	}
	return false
}

// providerAppToken signs dr-smith (Practitioner/pract-01) in through provider-app: a user-level token of a
// standard-tier client that may call Provider Access.
func providerAppToken(t *testing.T) string {
	t.Helper()
	tok, err := smartclient.AuthorizationCodePKCE(ctx(t), issuer, "provider-app", "http://127.0.0.1:8089/callback",
		[]string{"openid", "fhirUser", "user/*.rs"}, "dr-smith", "fhirwall-demo")
	if err != nil {
		t.Fatalf("login dr-smith through provider-app: %v", err)
	}
	return tok.AccessToken
}

type fetched struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// fetch is get without a *testing.T, for goroutines.
func fetch(url, token string) fetched {
	c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(c, http.MethodGet, url, nil)
	if err != nil {
		return fetched{err: err}
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return fetched{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return fetched{resp.StatusCode, resp.Header, b, err}
}

// throttledProperly checks a 429: Retry-After in whole seconds (at least 1) and an OperationOutcome whose
// issue code is "throttled".
func (r fetched) throttledProperly() error {
	if r.status != 429 {
		return fmt.Errorf("status %d, want 429", r.status)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		return fmt.Errorf("429 with Retry-After %q, want whole seconds >= 1", r.header.Get("Retry-After"))
	}
	var oo struct {
		ResourceType string
		Issue        []struct{ Code string }
	}
	if err := json.Unmarshal(r.body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 || oo.Issue[0].Code != "throttled" {
		return fmt.Errorf("429 body is not a throttled OperationOutcome: %.300s", r.body)
	}
	return nil
}

// waitThrottled asks every 100 ms until the answer is a proper 429; a 200 means the old limit still holds.
func waitThrottled(url, token string, deadline time.Time) (time.Time, error) {
	last := fetched{}
	for time.Now().Before(deadline) {
		last = fetch(url, token)
		switch {
		case last.err != nil:
			return time.Time{}, last.err
		case last.status == 429:
			return time.Now(), last.throttledProperly()
		case last.status != 200:
			return time.Time{}, fmt.Errorf("%d %.300s", last.status, last.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("still %d after %v", last.status, rateChangeBound)
}

// burstAllowed sends n requests at once; all must be 200 (the bucket holds at least n).
func burstAllowed(url, token string, n int) error {
	answers := make([]fetched, n)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() { defer wg.Done(); answers[i] = fetch(url, token) }()
	}
	wg.Wait()
	for _, a := range answers {
		if a.err != nil || a.status != 200 {
			return fmt.Errorf("a burst of %d: %v %d %.200s", n, a.err, a.status, a.body)
		}
	}
	return nil
}

// overrideRates gives api its own rates in the stack's runtime config file (apis[].rate_limits), written
// aside and renamed into place as an operator would, everything else unchanged. Cleanup writes the original
// bytes back the same way and waits until restored() holds, so later tests see the stack's own limits.
func overrideRates(t *testing.T, api string, rates map[string]rate, restored func() error) {
	t.Helper()
	path := runtimeConfigPath(t)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := withAPIRates(orig, api, rates)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := replaceFile(path, orig); err != nil {
			t.Errorf("restore %s: %v (run `bash test/stack/fhirwall.sh reset-config`)", path, err)
			return
		}
		var err error
		for end := time.Now().Add(rateRestoreBound); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
			if err = restored(); err == nil {
				return
			}
		}
		t.Errorf("the original rate limits did not come back within %v: %v", rateRestoreBound, err)
	})
	if err := replaceFile(path, changed); err != nil {
		t.Fatal(err)
	}
}

func runtimeConfigPath(t *testing.T) string {
	out, err := exec.Command("bash", filepath.Join(stackenv.Root(), "test", "stack", "fhirwall.sh"), "config-path").Output()
	if err != nil {
		t.Fatalf("fhirwall.sh config-path: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func replaceFile(path string, b []byte) error {
	tmp := path + ".e2e-tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// withAPIRates edits the YAML document as nodes (comments and layout survive) to set apis[name=api].rate_limits,
// then checks that the result differs from the original in that key only.
func withAPIRates(orig []byte, api string, rates map[string]rate) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(orig, &doc); err != nil || len(doc.Content) == 0 {
		return nil, fmt.Errorf("config: %v", err)
	}
	scalar := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }
	override := &yaml.Node{Kind: yaml.MappingNode}
	for tier, r := range rates {
		override.Content = append(override.Content, scalar(tier), &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle,
			Content: []*yaml.Node{scalar("per_second"), scalar(strconv.Itoa(r.perSecond)), scalar("burst"), scalar(strconv.Itoa(r.burst))}})
	}
	apis := mappingValue(doc.Content[0], "apis")
	if apis == nil {
		return nil, fmt.Errorf("config has no apis")
	}
	index := -1
	for i, a := range apis.Content {
		if n := mappingValue(a, "name"); n != nil && n.Value == api {
			index = i
			if v := mappingValue(a, "rate_limits"); v != nil {
				*v = *override
			} else {
				a.Content = append(a.Content, scalar("rate_limits"), override)
			}
		}
	}
	if index < 0 {
		return nil, fmt.Errorf("config has no API %q", api)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}

	// Everything but the override is as it was.
	var want, got map[string]any
	if err := yaml.Unmarshal(orig, &want); err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(buf.Bytes(), &got); err != nil {
		return nil, err
	}
	wantRates := map[string]any{}
	for tier, r := range rates {
		wantRates[tier] = map[string]any{"per_second": r.perSecond, "burst": r.burst}
	}
	want["apis"].([]any)[index].(map[string]any)["rate_limits"] = wantRates
	if !reflect.DeepEqual(want, got) {
		return nil, fmt.Errorf("editing the config changed more than apis[%d].rate_limits", index)
	}
	return buf.Bytes(), nil
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// load reads member01's Patient through both faces in turn from a few workers until stopped.
type load struct {
	stopOnce sync.Once
	stopCh   chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	res      loadResult
	started  time.Time
}

type loadResult struct {
	ok       int
	failures []string
	byMode   map[string]int
	maxGap   time.Duration
	gapEnd   time.Time // when the longest pause ended
	slowest  string    // the slowest request, for the log
	slowTook time.Duration
	last     time.Time
	elapsed  time.Duration
}

func startLoad(token string, workers int, every time.Duration) *load {
	l := &load{stopCh: make(chan struct{}), started: time.Now(), res: loadResult{byMode: map[string]int{}}}
	l.res.last = l.started
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := w; ; i++ {
				select {
				case <-l.stopCh:
					return
				case <-tick.C:
				}
				m := modes[i%len(modes)]
				began := time.Now()
				r := fetch(m.base+"/Patient/member-01", token)
				now := time.Now()
				l.mu.Lock()
				if took := now.Sub(began); took > l.res.slowTook {
					l.res.slowTook, l.res.slowest = took, fmt.Sprintf("%s at %s", m.name, began.Format(time.StampMilli))
				}
				l.res.byMode[m.name]++
				if r.err != nil || r.status != 200 {
					l.res.failures = append(l.res.failures, fmt.Sprintf("%s at %s: %v %d %.200s", m.name, now.Format(time.StampMilli), r.err, r.status, r.body))
				} else {
					l.res.ok++
					if gap := now.Sub(l.res.last); gap > l.res.maxGap {
						l.res.maxGap, l.res.gapEnd = gap, now
					}
					l.res.last = now
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) stop() loadResult {
	l.stopOnce.Do(func() {
		close(l.stopCh)
		l.wg.Wait()
		l.res.elapsed = time.Since(l.started)
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res
}
