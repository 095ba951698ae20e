package datascope

import (
	"encoding/json"
	"testing"
)

// BenchmarkApplyProviderAccess: one inpatient claim through every Provider Access rule (each iteration
// decodes a fresh copy, as the enforcer does; BenchmarkDecode is that share).
func BenchmarkApplyProviderAccess(b *testing.B) {
	raw := seedEOBJSON(b, "eob-member-02-3")
	for b.Loop() {
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		if keep, changed := Apply(ProviderAccess, m, decisionTime); !keep || !changed {
			b.Fatal("claim not kept and changed")
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	raw := seedEOBJSON(b, "eob-member-02-3")
	for b.Loop() {
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
	}
}

func seedEOBJSON(b *testing.B, id string) []byte {
	eob, ok := seedEOBs(b)[id]
	if !ok {
		b.Fatalf("%s not in testdata", id)
	}
	raw, err := json.Marshal(eob)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}
