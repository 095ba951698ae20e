package datascope

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// FuzzApply: whatever a FHIR server answers, nothing money-shaped leaves for a provider or another payer (at
// any depth, contained resources and extensions included) but, in a prior auth returned as such, the
// amounts leakedMoney allows (submitted and eligible: neither enrollee cost-sharing nor provider remittance,
// CMS-0057-F; table.go); a prior auth that still claims PDex has every amount PDex's slices require; and
// applying the scope again changes nothing more. Payer-to-Payer keeps nothing Provider Access would not, and leaves what it keeps exactly as Provider
// Access does. Sensitive never panics, and a resource nested in another keeps its label.
// Seeds: the testdata resources, a few Payer-to-Payer shapes and testdata/fuzz/FuzzApply.
func FuzzApply(f *testing.F) {
	for _, raw := range fuzzApplySeeds(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		res := decodeNumbers(body)
		if res == nil {
			return
		}
		payerToPayer(t, body)
		keep, changed := Apply(ProviderAccess, res, decisionTime)
		if !keep {
			return
		}
		if paths := leakedMoney(res); len(paths) > 0 {
			t.Fatalf("money left at %v in %s", paths, mustMarshal(t, res))
		}
		if isPriorAuthEOB(res) {
			priorAuthConforms(t, res, changed)
		}
		once := mustMarshal(t, res)
		keep, changed = Apply(ProviderAccess, res, decisionTime)
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

// payerToPayer checks Payer-to-Payer and Sensitive on one fuzzed body.
func payerToPayer(t *testing.T, body []byte) {
	res := decodeNumbers(body)
	sensitive := Sensitive(res)
	wrapped := map[string]any{"resourceType": "Bundle", "entry": []any{map[string]any{"resource": decodeNumbers(body)}}}
	if sensitive && !Sensitive(wrapped) {
		t.Fatal("a sensitive resource lost its label inside a Bundle")
	}
	keep, changed := Apply(PayerToPayer, res, decisionTime)
	if !keep {
		return
	}
	if paths := leakedMoney(res); len(paths) > 0 {
		t.Fatalf("payer-to-payer: money left at %v in %s", paths, mustMarshal(t, res))
	}
	pa := decodeNumbers(body)
	if paKeep, paChanged := Apply(ProviderAccess, pa, decisionTime); !paKeep || paChanged != changed || !reflect.DeepEqual(pa, res) {
		t.Fatalf("payer-to-payer kept (changed %v) what provider access %s (keep %v, changed %v)\n%s\n%s",
			changed, "left otherwise", paKeep, paChanged, mustMarshal(t, res), mustMarshal(t, pa))
	}
	once := mustMarshal(t, res)
	keep, changed = Apply(PayerToPayer, res, decisionTime)
	if !keep || changed || mustMarshal(t, res) != once {
		t.Fatalf("payer-to-payer second pass: keep %v, changed %v\n%s\n→\n%s", keep, changed, once, mustMarshal(t, res))
	}
}

// fuzzApplySeeds: the testdata resources and a few Payer-to-Payer shapes (FuzzApply, FuzzApplyMatchesWalk).
func fuzzApplySeeds(f testing.TB) [][]byte {
	var seeds [][]byte
	for _, name := range []string{"pas-claim.json", "pas-claimresponse.json"} {
		raw, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, raw)
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
		seeds = append(seeds, []byte(e.Resource))
	}
	for _, s := range []string{
		`{"resourceType":"Encounter","status":"finished","period":{"start":"2021-11-27","end":"2021-11-27T10:00:00+01:00"}}`,
		`{"resourceType":"Condition","onsetPeriod":{"start":"2010"},"recordedDate":"2022-03","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"SUD"}]}}`,
		`{"resourceType":"Observation","effectiveTiming":{"event":["2024-01-01T00:00:00Z"]},"valueMoney":{"value":1,"currency":"USD"}}`,
		`{"resourceType":"Goal","startDate":"2025-01-01","target":[{"dueDate":"2026-01-01"}]}`,
		`{"resourceType":"ExplanationOfBenefit","status":"active","use":"preauthorization","outcome":"queued","created":"2026-01-01",
			"item":[{"adjudication":[{"category":{"coding":[{"code":"submitted"}]},"amount":{"value":1,"currency":"USD"},
			"extension":[{"url":"http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/extension-reviewAction","extension":[
			{"url":"http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/extension-reviewActionCode",
			"valueCodeableConcept":{"coding":[{"system":"https://codesystem.x12.org/005010/306","code":"A4"}]}}]}]}]}]}`,
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
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

// priorAuthConforms: a prior auth keeps no payment (remittance), and one the scope changed that still claims
// pdex-priorauthorization has an amount on every adjudication of a PDexAdjudication category
// (adjudicationamounttype.amount 1..1). What the server sent already broken is not the scope's doing.
func priorAuthConforms(t *testing.T, res map[string]any, changed bool) {
	t.Helper()
	if res["payment"] != nil {
		t.Fatalf("prior auth kept its payment: %s", mustMarshal(t, res))
	}
	if changed && claimsPDex(res) && !pdexAmountSlicesHold(res) {
		t.Fatalf("claims PDex without the amounts its slices require: %s", mustMarshal(t, res))
	}
}
