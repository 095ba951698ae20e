package fhir

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

func TestSummaryKeepsTheElementsR4MarksAsSummary(t *testing.T) {
	obs := `{"resourceType":"Observation","id":"o1","meta":{"versionId":"2"},"text":{"status":"generated","div":"<div/>"},
"status":"final","category":[{"text":"lab"}],"code":{"text":"HbA1c"},"subject":{"reference":"Patient/p1"},
"effectiveDateTime":"2025-01-01","_effectiveDateTime":{"extension":[]},"valueQuantity":{"value":5.7},"note":[{"text":"fasting"}],
"interpretation":[{"text":"high"}],"modifierExtension":[{"url":"x","valueBoolean":true}]}`
	for form, want := range map[string][]string{
		SummaryTrue: {"_effectiveDateTime", "code", "effectiveDateTime", "id", "meta", "modifierExtension", "resourceType", "status", "subject", "valueQuantity"},
		SummaryText: {"code", "id", "meta", "modifierExtension", "resourceType", "status", "text"},
		"data":      {"_effectiveDateTime", "category", "code", "effectiveDateTime", "id", "interpretation", "meta", "modifierExtension", "note", "resourceType", "status", "subject", "text", "valueQuantity"},
	} {
		var m map[string]any
		if err := json.Unmarshal([]byte(obs), &m); err != nil {
			t.Fatal(err)
		}
		changed := Summarize(m, form)
		var got []string
		for k := range m {
			got = append(got, k)
		}
		slices.Sort(got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("_summary=%s kept %v, want %v", form, got, want)
		}
		if changed != (form != "data") {
			t.Errorf("_summary=%s changed=%v", form, changed)
		}
	}
}

func TestSummaryOfAnUnknownTypeKeepsOnlyWhatEveryResourceHas(t *testing.T) {
	m := map[string]any{"resourceType": "NotAType", "id": "x", "secret": "y"}
	Summarize(m, SummaryTrue)
	if _, ok := m["secret"]; ok || m["id"] != "x" {
		t.Fatalf("got %v", m)
	}
}
