package decision

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestRecordedInputIsEncodingJSONs: the hand encoder of policy inputs writes encoding/json's bytes (sorted keys,
// HTML and control escapes), and leaves what it does not know to encoding/json.
func TestRecordedInputIsEncodingJSONs(t *testing.T) {
	inputs := map[string]map[string]any{
		"empty":     {},
		"escapes":   {"q": "<b>&\u2028\x00\"\\é\xff", "z": nil, "a": []any{true, false, nil, "x", []any{}, map[string]any{}}},
		"nil lists": {"l": []any(nil), "m": map[string]any(nil), "s": []string(nil), "t": []string{"a", "<"}},
		"unknown":   {"n": 1.5, "i": 3},
		"policy input": policyInput("patient-access", carryDecisions(t)["sandbox"].Identity,
			carryDecisions(t)["patient access search with shape and notices"].Request),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			want, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			got, truncated := recordedInput(in)
			if truncated || !bytes.Equal(got, want) {
				t.Fatalf("recorded %s (truncated %v)\nencoding/json %s", got, truncated, want)
			}
		})
	}
}

// TestRecordedInputRedactsAccessTokens: a token sent as a query parameter (in any case, with a modifier, in a
// batch entry or a granular scope) never reaches the record; everything else of the input stays.
func TestRecordedInputRedactsAccessTokens(t *testing.T) {
	c := providerCore(t, 10)
	for _, q := range []string{"patient=member-000001&access_token=SECRET-1", "ACCESS_TOKEN=SECRET-1&patient=member-000001",
		"patient=member-000001&access_token:exact=SECRET-1"} {
		d := c.Decide(context.Background(), Input{API: "provider-access", Method: "GET", Path: "/Observation",
			RawQuery: q, Authorization: []string{"Bearer org-a"}})
		if d.PolicyInput == nil {
			t.Fatalf("%s: no input recorded (%v)", q, d.Reasons)
		}
		if bytes.Contains(d.PolicyInput, []byte("SECRET-1")) || !bytes.Contains(d.PolicyInput, []byte(redacted)) {
			t.Fatalf("%s: recorded %s", q, d.PolicyInput)
		}
		if !bytes.Contains(d.PolicyInput, []byte(`"member-000001"`)) {
			t.Fatalf("%s: redaction took more than the token: %s", q, d.PolicyInput)
		}
	}
	nested := map[string]any{"entries": []any{map[string]any{"params": []any{map[string]any{"name": "Access_Token", "values": []any{"SECRET-2"}}}}},
		"identity": map[string]any{"scopes": []any{map[string]any{"params": map[string]any{"access_token": []any{"SECRET-3"}}}}}}
	got, _ := recordedInput(nested)
	if bytes.Contains(got, []byte("SECRET")) {
		t.Fatalf("recorded %s", got)
	}
}

// TestRecordedInputOverTheBoundIsTruncatedNotCut: an input past audit.MaxPolicyInput is left out whole and
// the record says so; it is never cut into invalid JSON.
func TestRecordedInputOverTheBoundIsTruncatedNotCut(t *testing.T) {
	got, truncated := recordedInput(map[string]any{"big": strings.Repeat("x", 16<<10)})
	if got != nil || !truncated {
		t.Fatalf("recorded %d bytes, truncated %v", len(got), truncated)
	}
	d := &Decision{PolicyInputTruncated: true}
	d.Policy.Status, d.Policy.Revision = 403, "r"
	pv := d.policyVerdict()
	if pv == nil || !pv.Truncated || pv.Input != nil || pv.Reasons == nil {
		t.Fatalf("verdict %+v", pv)
	}
}

// TestRecordCarriesThePolicyInputAndVerdictOnlyWhenThePolicyRan: an allowed and a policy-refused decision
// record the input the policy was given (which evaluates to the recorded verdict again) and the policy's own
// reasons; a request refused before the policy ran (a client the registry does not know) records no policy member.
func TestRecordCarriesThePolicyInputAndVerdictOnlyWhenThePolicyRan(t *testing.T) {
	c := providerCore(t, 100)
	sink := &fakeKeepingSink{}
	c.Audit = sink
	ctx := context.Background()
	allowed := providerSearch(c, "member-000005")
	refused := providerSearch(c, "member-000099") // opted out
	unregistered := c.Decide(ctx, Input{API: "provider-access", Method: "GET", Path: "/Observation", Authorization: []string{"Bearer stranger"}})
	if !allowed.Allow || refused.Allow || unregistered.Allow {
		t.Fatalf("allow %v %v %v", allowed.Allow, refused.Allow, unregistered.Allow)
	}
	for _, d := range []*Decision{allowed, refused, unregistered} {
		if err := c.Record(ctx, d, 200, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	for i, d := range []*Decision{allowed, refused} {
		pv := sink.records[i].Policy
		if pv == nil || pv.Truncated || pv.Allow != d.Allow || pv.Status != d.Policy.Status || pv.Revision != c.Policy.Revision() {
			t.Fatalf("decision %d: policy member %+v", i, pv)
		}
		var in map[string]any
		if err := json.Unmarshal(pv.Input, &in); err != nil {
			t.Fatal(err)
		}
		again, err := c.Policy.Decide(ctx, in)
		if err != nil || again.Allow != pv.Allow || strings.Join(again.Reasons, ",") != strings.Join(pv.Reasons, ",") {
			t.Fatalf("decision %d: the recorded input decides %+v (%v), recorded %+v", i, again, err, pv)
		}
		line, err := json.Marshal(sink.records[i])
		if err != nil || bytes.Contains(line, []byte("Bearer")) {
			t.Fatalf("record %s (%v)", line, err)
		}
	}
	if pv := sink.records[2].Policy; pv != nil {
		t.Fatalf("a request refused before the policy ran records %+v", pv)
	}
}

// FuzzRecordedInput: for any parameter name and value, the recorded input is encoding/json's bytes of the
// input, except that a parameter named access_token keeps none of its values.
// go test ./internal/decision -run '^$' -fuzz FuzzRecordedInput
func FuzzRecordedInput(f *testing.F) {
	f.Add("patient", "member-01")
	f.Add("access_token", "eyJhbGciOi")
	f.Add("Access_Token:exact", "<&>\u2028\xff")
	f.Add("_has:Observation:patient:code", "")
	f.Fuzz(func(t *testing.T, name, value string) {
		in := map[string]any{"api": value, "request": map[string]any{"params": []any{
			map[string]any{"key": name, "name": name, "values": []any{value, "x"}}}}}
		got, truncated := recordedInput(in)
		if truncated || !json.Valid(got) {
			t.Fatalf("recorded %q (truncated %v)", got, truncated)
		}
		if !isTokenParam(name) && !containsFold(got, "access_token") {
			want, _ := json.Marshal(in)
			if !bytes.Equal(got, want) {
				t.Fatalf("recorded %s\nencoding/json %s", got, want)
			}
			return
		}
		var back struct {
			Request struct {
				Params []struct {
					Name   string   `json:"name"`
					Values []string `json:"values"`
				} `json:"params"`
			} `json:"request"`
		}
		if err := json.Unmarshal(got, &back); err != nil || len(back.Request.Params) != 1 {
			t.Fatalf("recorded %s: %v", got, err)
		}
		if p := back.Request.Params[0]; isTokenParam(p.Name) && (len(p.Values) != 2 || p.Values[0] != redacted || p.Values[1] != redacted) {
			t.Fatalf("token parameter recorded as %s", got)
		}
	})
}
