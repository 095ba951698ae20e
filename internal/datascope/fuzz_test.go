package datascope

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// FuzzApply: whatever a FHIR server answers, nothing money-shaped leaves for a provider (at any depth,
// contained resources and extensions included), and applying the scope again changes nothing more.
// Seeds: the testdata resources and testdata/fuzz/FuzzApply.
func FuzzApply(f *testing.F) {
	for _, name := range []string{"pas-claim.json", "pas-claimresponse.json"} {
		raw, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	raw, err := os.ReadFile("testdata/seed-eobs.json")
	if err != nil {
		f.Fatal(err)
	}
	var b struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		f.Fatal(err)
	}
	for _, e := range b.Entry {
		f.Add([]byte(e.Resource))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		res := decodeNumbers(body)
		if res == nil {
			return
		}
		keep, _ := Apply(ProviderAccess, res, decisionTime)
		if !keep {
			return
		}
		for k, v := range res { // the resource itself is not money; what it holds may be
			paths := moneyPaths(v, "$."+k)
			if len(k) > 5 && strings.HasSuffix(k, "Money") {
				paths = append(paths, "$."+k)
			}
			if len(paths) > 0 {
				t.Fatalf("money left at %v in %s", paths, mustMarshal(t, res))
			}
		}
		once := mustMarshal(t, res)
		keep, changed := Apply(ProviderAccess, res, decisionTime)
		if !keep || changed || mustMarshal(t, res) != once {
			t.Fatalf("second pass: keep %v, changed %v\n%s\n→\n%s", keep, changed, once, mustMarshal(t, res))
		}
		// The patient's own API changes nothing at all.
		again := decodeNumbers(body)
		before := decodeNumbers(body)
		if keep, changed := Apply(PatientAccess, again, decisionTime); !keep || changed || !reflect.DeepEqual(again, before) {
			t.Fatalf("patient access: keep %v, changed %v", keep, changed)
		}
	})
}

// decodeNumbers decodes a resource the way the enforcer does (numbers kept as written); nil when body is
// not a JSON object with a resourceType.
func decodeNumbers(body []byte) map[string]any {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil || m == nil {
		return nil
	}
	if _, ok := m["resourceType"].(string); !ok {
		return nil
	}
	return m
}
