package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Bundles groups the resources into one transaction Bundle per tier, each entry a PUT with the
// client-assigned id (idempotent: HAPI keeps the current version when the content is unchanged).
func Bundles(rs []Resource) []map[string]any {
	maxTier := 0
	for _, r := range rs {
		maxTier = max(maxTier, r.Tier)
	}
	var out []map[string]any
	for tier := 1; tier <= maxTier; tier++ {
		var entries []any
		for _, r := range rs {
			if r.Tier != tier {
				continue
			}
			entries = append(entries, map[string]any{
				"resource": r.Body,
				"request":  map[string]any{"method": "PUT", "url": r.Ref()},
			})
		}
		if len(entries) == 0 {
			continue
		}
		out = append(out, map[string]any{
			"resourceType": "Bundle",
			"id":           fmt.Sprintf("fhirwall-seed-%d", tier),
			"type":         "transaction",
			"entry":        entries,
		})
	}
	return out
}

// MarshalBundle gives the canonical bytes of a Bundle (encoding/json sorts map keys, so the output
// depends on the content only).
func MarshalBundle(b map[string]any) ([]byte, error) {
	return json.MarshalIndent(b, "", "  ")
}

// Counts returns the number of generated resources per resource type.
func Counts(rs []Resource) map[string]int {
	c := map[string]int{}
	for _, r := range rs {
		c[r.Type]++
	}
	return c
}

type client struct {
	base string
	http *http.Client
}

func newClient(base string, timeout time.Duration) *client {
	return &client{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: timeout}}
}

func (c *client) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/"+strings.TrimLeft(path, "/"), rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Cache-Control", "no-cache") // HAPI reuses cached search results otherwise
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, b, err
}

// outcomeText condenses an OperationOutcome (or any body) into one line for error messages.
func outcomeText(body []byte) string {
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Severity    string   `json:"severity"`
			Code        string   `json:"code"`
			Diagnostics string   `json:"diagnostics"`
			Expression  []string `json:"expression"`
			Location    []string `json:"location"`
		} `json:"issue"`
	}
	if json.Unmarshal(body, &oo) == nil && oo.ResourceType == "OperationOutcome" {
		var parts []string
		for _, is := range oo.Issue {
			s := is.Severity + "/" + is.Code + ": " + is.Diagnostics
			if loc := append(is.Expression, is.Location...); len(loc) > 0 {
				s += " at " + strings.Join(loc, ",")
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, "; ")
	}
	s := string(body)
	if len(s) > 500 {
		s = s[:500] + "..."
	}
	return s
}

// Load POSTs every transaction Bundle in order. When HAPI refuses a Bundle, the entries of that Bundle
// are PUT one by one to name the entry HAPI rejects (PUT with a client id is idempotent, so retrying
// single entries leaves the same state as the transaction would have).
func Load(ctx context.Context, c *client, rs []Resource, logf func(string, ...any)) error {
	for i, b := range Bundles(rs) {
		body, err := json.Marshal(b)
		if err != nil {
			return err
		}
		entries := b["entry"].([]any)
		status, resp, err := c.do(ctx, http.MethodPost, "", body)
		if err != nil {
			return fmt.Errorf("bundle %d: POST %s: %w", i+1, c.base, err)
		}
		if status/100 == 2 {
			if err := checkTransactionResponse(resp, entries); err != nil {
				return fmt.Errorf("bundle %d: %w", i+1, err)
			}
			logf("bundle %d/%s: %d entries accepted (HTTP %d)", i+1, b["id"], len(entries), status)
			continue
		}
		logf("bundle %d/%s refused: HTTP %d: %s", i+1, b["id"], status, outcomeText(resp))
		logf("retrying its entries one by one to find the rejected one(s)")
		var rejected []string
		for _, e := range entries {
			em := e.(map[string]any)
			ref := em["request"].(map[string]any)["url"].(string)
			rb, _ := json.Marshal(em["resource"])
			st, rr, err := c.do(ctx, http.MethodPut, ref, rb)
			if err != nil {
				return fmt.Errorf("PUT %s: %w", ref, err)
			}
			if st/100 != 2 {
				rejected = append(rejected, fmt.Sprintf("%s: HTTP %d: %s", ref, st, outcomeText(rr)))
			}
		}
		if len(rejected) > 0 {
			return fmt.Errorf("HAPI rejected %d entr(y/ies) of bundle %d:\n  %s", len(rejected), i+1, strings.Join(rejected, "\n  "))
		}
		return fmt.Errorf("bundle %d refused as a transaction (HTTP %d: %s) although every entry was accepted alone", i+1, status, outcomeText(resp))
	}
	return nil
}

func checkTransactionResponse(resp []byte, entries []any) error {
	var tr struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Response struct {
				Status   string `json:"status"`
				Location string `json:"location"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(resp, &tr); err != nil {
		return fmt.Errorf("transaction-response: %w", err)
	}
	if tr.ResourceType != "Bundle" || tr.Type != "transaction-response" || len(tr.Entry) != len(entries) {
		return fmt.Errorf("unexpected transaction answer (%s/%s, %d entries for %d sent)", tr.ResourceType, tr.Type, len(tr.Entry), len(entries))
	}
	for i, e := range tr.Entry {
		if !strings.HasPrefix(e.Response.Status, "2") {
			ref := entries[i].(map[string]any)["request"].(map[string]any)["url"]
			return fmt.Errorf("entry %d (%s): status %q", i, ref, e.Response.Status)
		}
	}
	return nil
}

// Count asks HAPI for the number of matches of a search (`_summary=count`).
func (c *client) Count(ctx context.Context, resourceType string, params url.Values) (int, error) {
	q := url.Values{}
	for k, v := range params {
		q[k] = v
	}
	q.Set("_summary", "count")
	st, body, err := c.do(ctx, http.MethodGet, resourceType+"?"+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	if st != http.StatusOK {
		return 0, fmt.Errorf("GET %s?%s: HTTP %d: %s", resourceType, q.Encode(), st, outcomeText(body))
	}
	var b struct {
		Total *int `json:"total"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.Total == nil {
		return 0, fmt.Errorf("GET %s?%s: no total in answer", resourceType, q.Encode())
	}
	return *b.Total, nil
}

// Check is one verification search and the count the seed set implies.
type Check struct {
	Type   string
	Params url.Values
	Want   int
}

func (ch Check) String() string {
	q := ch.Params.Encode()
	if u, err := url.QueryUnescape(q); err == nil {
		q = u
	}
	return ch.Type + "?" + q
}

// Checks derives the verification searches from the generated set: one per resource type (by seed
// tag), plus per-member searches that the e2e tests and other components rely on.
func Checks(rs []Resource) []Check {
	counts := Counts(rs)
	types := make([]string, 0, len(counts))
	for t := range counts {
		types = append(types, t)
	}
	sort.Strings(types)
	tag := SeedTagSystem + "|" + SeedTagCode
	var out []Check
	for _, t := range types {
		out = append(out, Check{t, url.Values{"_tag": {tag}}, counts[t]})
	}
	eobPer := map[string]int{}
	for _, r := range rs {
		if r.Type == "ExplanationOfBenefit" {
			ref := r.Body["patient"].(map[string]any)["reference"].(string)
			eobPer[strings.TrimPrefix(ref, "Patient/")]++
		}
	}
	// Member 2's claims are written by the seed alone; members 1 and 5 also get prior auths from the demo and
	// the Prior Authorization suites (adapters/priorauth writes them on HAPI), so theirs are counted by tag.
	out = append(out, Check{"ExplanationOfBenefit", url.Values{"patient": {MemberID(2)}}, eobPer[MemberID(2)]})
	for _, n := range []int{1, 5} {
		id := MemberID(n)
		out = append(out, Check{"ExplanationOfBenefit", url.Values{"patient": {id}, "_tag": {tag}}, eobPer[id]})
	}
	out = append(out,
		Check{"Coverage", url.Values{"beneficiary": {"Patient/" + MemberID(1)}}, 1},
		Check{"Condition", url.Values{"patient": {MemberID(1)}, "category": {"problem-list-item"}}, 1},
		Check{"Condition", url.Values{"patient": {MemberID(1)}, "category": {"encounter-diagnosis"}}, 1},
		Check{"Observation", url.Values{"patient": {MemberID(1)}, "category": {"laboratory"}}, 1},
		Check{"Observation", url.Values{"patient": {MemberID(1)}, "category": {"vital-signs"}}, 2},
		Check{"Consent", url.Values{"_tag": {tag}, "patient": {MemberID(5)}}, 1},
		Check{"Group", url.Values{"_id": {GroupID("org-a")}}, 1},
	)
	// The sandbox APIs answer with this tag's resources alone: each type's sandbox resources, the sandbox
	// member's claims, and the sandbox organisation's attribution Group. Counted with the seed tag too: the
	// sandbox Payer-to-Payer and Prior Authorization APIs write tagged Consents, Groups, Claims and prior
	// auths of their own.
	sandboxTag := EnvironmentSystem + "|" + SandboxCode
	sandbox := map[string]int{}
	for _, r := range rs {
		if IsSandbox(r) {
			sandbox[r.Type]++
		}
	}
	for _, t := range types {
		if sandbox[t] > 0 {
			out = append(out, Check{t, url.Values{"_tag": {tag, sandboxTag}}, sandbox[t]})
		}
	}
	out = append(out,
		Check{"ExplanationOfBenefit", url.Values{"patient": {SandboxMember}, "_tag": {tag, sandboxTag}}, eobPer[SandboxMember]},
		Check{"Group", url.Values{"managing-entity": {"Organization/" + SandboxOrg}}, 1},
	)
	return out
}

// Verify runs the checks and returns every mismatch.
func Verify(ctx context.Context, c *client, rs []Resource, logf func(string, ...any)) error {
	var bad []string
	for _, ch := range Checks(rs) {
		got, err := c.Count(ctx, ch.Type, ch.Params)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		mark := "ok"
		if got != ch.Want {
			mark = "MISMATCH"
			bad = append(bad, fmt.Sprintf("%s: got %d, want %d", ch, got, ch.Want))
		}
		logf("  %-8s %-84s %4d (want %d)", mark, ch, got, ch.Want)
	}
	if len(bad) > 0 {
		return fmt.Errorf("verification failed:\n  %s", strings.Join(bad, "\n  "))
	}
	return nil
}
