//go:build e2e

package adversarial

// Test-owned fixtures: what the shared seed lacks for some checks to be able to fail at all (a resource
// that moved between members, so its history holds another member's version; Provenance, Task and
// PaymentReconciliation naming members; money inside contained resources and extensions; a contained
// type a down-scoped token does not grant). They are written into HAPI once per run, before the ground
// truth is read, so the markers cover them like any seeded resource.
//
// Every fixture is PUT under a fixed id with the tag fixtureTag; a rerun changes nothing (HAPI keeps the
// version when a PUT does not change the content), and the shared seed is never touched.

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/test/stackenv"
)

const (
	fixtureTagSystem = "https://fhirwall.example/adversarial"
	fixtureTagCode   = "fixture"

	// movedObservation's first version named member-02, its current one names member-01.
	movedObservation = "fwadv-moved-obs"
	// moneyEOB (member-04, 2024) carries money in an extension, an item extension and a contained
	// Coverage's costToBeneficiary; moneyCoverage (member-04) has costToBeneficiary.
	moneyEOB      = "fwadv-eob-money"
	moneyCoverage = "fwadv-coverage-money"
)

//go:embed testdata/fixtures.json
var fixturesJSON []byte

// writeFixtures puts every fixture version into HAPI, in file order. A resource with several versions is
// written again only if HAPI's newest versions are not already those, in that order (so a rerun adds no
// version, and a half-written earlier run is completed).
func writeFixtures(ctx context.Context) error {
	var f struct {
		Versions []map[string]any `json:"versions"`
	}
	if err := json.Unmarshal(fixturesJSON, &f); err != nil {
		return fmt.Errorf("testdata/fixtures.json: %w", err)
	}
	var order []string
	versions := map[string][]map[string]any{}
	for _, r := range f.Versions {
		ref := fmt.Sprintf("%v/%v", r["resourceType"], r["id"])
		if versions[ref] == nil {
			order = append(order, ref)
		}
		r["meta"] = map[string]any{"tag": []any{map[string]any{"system": fixtureTagSystem, "code": fixtureTagCode}}}
		versions[ref] = append(versions[ref], r)
	}
	for _, ref := range order {
		want := versions[ref]
		if len(want) > 1 {
			newest, err := hapiHistory(ctx, ref)
			if err != nil {
				return err
			}
			if len(newest) >= len(want) && slices.EqualFunc(newest[:len(want)], reversed(want), sameContent) {
				continue
			}
		}
		for _, r := range want {
			if err := hapiPut(ctx, ref, r); err != nil {
				return err
			}
		}
	}
	return nil
}

func reversed[T any](s []T) []T {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// sameContent compares two resources without meta (HAPI fills versionId, lastUpdated, source).
func sameContent(a, b map[string]any) bool {
	strip := func(r map[string]any) map[string]any {
		var out map[string]any
		raw, _ := json.Marshal(r)
		_ = json.Unmarshal(raw, &out)
		delete(out, "meta")
		return out
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

func hapiPut(ctx context.Context, ref string, r map[string]any) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, stackenv.HAPIURL+"/"+ref, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("PUT %s: %w", ref, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: %d %.500s", ref, resp.StatusCode, b)
	}
	return nil
}

// hapiHistory returns the versions HAPI holds of ref, newest first (none if it does not exist).
func hapiHistory(ctx context.Context, ref string) ([]map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, stackenv.HAPIURL+"/"+ref+"/_history?_count=100", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s/_history: %w", ref, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return nil, nil
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s/_history: %d %.300s", ref, resp.StatusCode, b)
	}
	var out []map[string]any
	for _, e := range historyEntries(b) {
		if r, ok := e["resource"].(map[string]any); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// hapiAnswer is HAPI's own answer to a call's path (relative to an API base): what fhirwall would pass on
// if it enforced nothing.
func hapiAnswer(t *testing.T, path string) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, stackenv.HAPIURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("HAPI %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{mode: "HAPI itself", method: http.MethodGet, status: resp.StatusCode, header: resp.Header, body: b}
}

// wouldLeak proves a case can fail: HAPI's own answer to path, passed on unchanged to p, would be a 200
// in which check finds a leak naming each of want (a fixture's id, a marker, a money path). Without it a
// passing case might only mean the data it looks for is not there.
func wouldLeak(t *testing.T, p *principal, path string, want ...string) {
	t.Helper()
	p.prepare(t, groundTruth(t))
	raw := hapiAnswer(t, path)
	if raw.status != http.StatusOK {
		t.Fatalf("fixture missing? HAPI answers %s with %d %.300s", path, raw.status, raw.body)
	}
	found := leaks(p, raw)
	for _, w := range want {
		if !slices.ContainsFunc(found, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("the check cannot fail here: HAPI's answer to %s, passed on to %s, leaks nothing naming %q (found %d: %.600s)",
				path, p.name, w, len(found), strings.Join(found, "; "))
		}
	}
}

// versionsOf returns the versions HAPI holds of Type/id that name patient (from the ground truth).
func versionsOf(t *testing.T, ref, patient string) []string {
	t.Helper()
	tr := groundTruth(t)
	var out []string
	for _, h := range append(slices.Clone(tr.all), tr.past...) {
		if h.typ+"/"+h.id == ref && slices.Contains(h.patients, patient) {
			out = append(out, h.version)
		}
	}
	if len(out) == 0 {
		t.Fatalf("fixture missing: HAPI holds no version of %s naming %s", ref, patient)
	}
	slices.Sort(out)
	return out
}

// versionOfEntry returns the version a history or search entry is of, from whatever the answer still
// says after trimming: meta.versionId, the entry's response etag, or a versioned fullUrl.
func versionOfEntry(e map[string]any) string {
	if r, ok := e["resource"].(map[string]any); ok {
		if m, ok := r["meta"].(map[string]any); ok {
			if v, ok := m["versionId"].(string); ok {
				return v
			}
		}
	}
	if resp, ok := e["response"].(map[string]any); ok {
		if etag, ok := resp["etag"].(string); ok {
			return strings.Trim(strings.TrimPrefix(etag, "W/"), `"`)
		}
	}
	if req, ok := e["request"].(map[string]any); ok {
		if u, ok := req["url"].(string); ok {
			if _, v, ok := strings.Cut(u, "/_history/"); ok {
				return v
			}
		}
	}
	if u, ok := e["fullUrl"].(string); ok {
		if _, v, ok := strings.Cut(u, "/_history/"); ok {
			return v
		}
	}
	return ""
}

// historyEntries returns a history Bundle's entries as raw objects.
func historyEntries(b []byte) []map[string]any {
	var root map[string]any
	_ = json.Unmarshal(b, &root)
	return asObjects(root["entry"])
}

// versionProblems says what is wrong with a 200 history answer that may hold only the versions in own:
// an entry of another version, or more entries (or a larger total) than own has, whatever trimming left.
func versionProblems(a answer, own []string) []string {
	var out []string
	es := historyEntries(a.body)
	for _, e := range es {
		if v := versionOfEntry(e); v != "" && !slices.Contains(own, v) {
			out = append(out, fmt.Sprintf("%s: history holds version %s, not one of %v", a.mode, v, own))
		}
	}
	if len(es) > len(own) {
		out = append(out, fmt.Sprintf("%s: history holds %d entries, only %d versions (%v) are the caller's", a.mode, len(es), len(own), own))
	}
	if total, ok := bundleTotal(a.body); ok && total > len(own) {
		out = append(out, fmt.Sprintf("%s: history counts %d versions, only %d (%v) are the caller's", a.mode, total, len(own), own))
	}
	return out
}
