package synthetic

import (
	"encoding/json"
	"errors"
	"net/url"
	"testing"

	"github.com/fhirwall/fhirwall/internal/datascope"
	"github.com/fhirwall/fhirwall/internal/decision"
)

func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTagMakesEveryNestedResourceSyntheticAndKeepsOtherTags(t *testing.T) {
	for name, in := range map[string]string{
		"bare":       `{"resourceType":"Claim"}`,
		"other tags": `{"resourceType":"Consent","meta":{"profile":["p"],"tag":[{"system":"s","code":"c"}]}}`,
		"bundle":     `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"ClaimResponse","contained":[{"resourceType":"Patient"}]}}]}`,
		"parameters": `{"resourceType":"Parameters","parameter":[{"name":"g","resource":{"resourceType":"Group","contained":[{"resourceType":"Patient"}]}},{"name":"x","part":[{"resource":{"resourceType":"Patient"}}]}]}`,
	} {
		res := decode(t, in)
		if datascope.Synthetic(res) && name != "bundle" {
			t.Fatalf("%s: synthetic before tagging", name)
		}
		Tag(res)
		Tag(res) // once is enough: a second Tag adds nothing
		if !datascope.Synthetic(res) {
			t.Errorf("%s: not synthetic after Tag: %v", name, res)
		}
		meta := res["meta"].(map[string]any)
		if n := len(meta["tag"].([]any)); name == "other tags" && n != 2 || name != "other tags" && n != 1 {
			t.Errorf("%s: %d tags: %v", name, n, meta["tag"])
		}
		if name == "other tags" && meta["profile"] == nil {
			t.Errorf("the profiles were lost: %v", meta)
		}
	}
}

func TestNarrowAndUsableHoldOnlyASandboxRequest(t *testing.T) {
	if q := Narrow(url.Values{"identifier": {"x"}}, true); q.Get("_tag") != datascope.SandboxTag || q.Get("identifier") != "x" {
		t.Fatalf("sandbox search %v", q)
	}
	if q := Narrow(url.Values{"identifier": {"x"}}, false); q.Has("_tag") {
		t.Fatalf("production search narrowed: %v", q)
	}
	real := decode(t, `{"resourceType":"Patient"}`)
	if Usable(real, true) || !Usable(real, false) {
		t.Fatal("an untagged Patient: usable in the sandbox, or not in production")
	}
}

func TestASandboxAnswerWithRealDataIsAnErrorNeverSent(t *testing.T) {
	sandbox := &decision.Decision{Input: decision.Input{API: "prior-auth-sandbox"}}
	production := &decision.Decision{Input: decision.Input{API: "prior-auth"}}
	untagged := decision.Answer{Status: 200, Body: []byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"ClaimResponse"}}]}`)}
	for name, ans := range map[string]decision.Answer{"untagged": untagged, "not JSON": {Status: 200, Body: []byte("x")}} {
		if err := CheckAnswer(sandbox, ans); !errors.Is(err, ErrNotSynthetic) {
			t.Errorf("%s sandbox answer: %v", name, err)
		}
	}
	for name, ans := range map[string]decision.Answer{
		"no body":          {Status: 202},
		"OperationOutcome": {Status: 404, Body: []byte(`{"resourceType":"OperationOutcome"}`)},
		"tagged":           {Status: 200, Body: []byte(`{"resourceType":"Parameters","meta":{"tag":[{"system":"https://fhirwall.dev/CodeSystem/environment","code":"sandbox"}]}}`)},
	} {
		if err := CheckAnswer(sandbox, ans); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := CheckAnswer(production, untagged); err != nil {
		t.Fatalf("the production API's answer is not the sandbox's to check: %v", err)
	}
}

// depth is the JSON nesting of v.
func depth(v any) int {
	d := 0
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			d = max(d, depth(e))
		}
		return d + 1
	case map[string]any:
		for _, e := range t {
			d = max(d, depth(e))
		}
		return d + 1
	}
	return 0
}

// FuzzTagMakesAnyResourceSynthetic: whatever JSON object an adapter tags (a Subscription as a sandbox app
// sent it, a Bundle it builds), what comes out is synthetic by datascope's rule, unless it nests deeper than
// either walks (then neither calls it synthetic, and CheckAnswer refuses it).
func FuzzTagMakesAnyResourceSynthetic(f *testing.F) {
	for _, s := range []string{`{"resourceType":"Subscription"}`, `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Claim","contained":[{"resourceType":"Patient"}]}}]}`,
		`{"resourceType":"Parameters","parameter":[{"resource":{"resourceType":"Group","meta":{"tag":"x"}}}]}`, `{"meta":[1]}`, `{"a":{"b":[{"resourceType":7}]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var res map[string]any
		if json.Unmarshal(body, &res) != nil || res == nil {
			return
		}
		Tag(res)
		out, err := json.Marshal(res)
		if err != nil {
			t.Fatalf("a tagged resource does not encode: %v", err)
		}
		var back map[string]any
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		if depth(back) < 60 && !datascope.Synthetic(back) {
			t.Fatalf("tagged, but not synthetic: %s", out)
		}
		d := &decision.Decision{Input: decision.Input{API: "prior-auth-sandbox"}}
		if err := CheckAnswer(d, decision.Answer{Status: 200, Body: out}); err != nil && depth(back) < 60 {
			t.Fatalf("CheckAnswer refuses a tagged answer: %v", err)
		}
	})
}
