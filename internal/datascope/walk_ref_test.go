package datascope

import (
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/test/fuzzcorpus"
)

// applyWalking is Apply as it was before transform learned withheld's finding (issue 18): every transform
// walks the whole tree again. Apply is held to it: same keep, same changed, the same resource left.
func applyWalking(scope string, resource map[string]any, now time.Time) (keep, changed bool) {
	s, ok := scopes[scope]
	if !ok {
		return false, false
	}
	if s.passAll {
		return true, false
	}
	if w, _ := s.withheld(resource, now); w {
		return false, false
	}
	return true, s.transform(resource, true)
}

func checkApplyMatchesWalk(t *testing.T, body []byte) {
	t.Helper()
	names := make([]string, 0, len(scopes)+1)
	for name := range scopes {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range append(names, "no such scope") {
		got, want := decodeNumbers(body), decodeNumbers(body)
		if got == nil {
			return
		}
		keep, changed := Apply(name, got, decisionTime)
		wantKeep, wantChanged := applyWalking(name, want, decisionTime)
		if keep != wantKeep || changed != wantChanged || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s %s: keep %v changed %v, walking keep %v changed %v\n%s\n%s", name, body, keep, changed,
				wantKeep, wantChanged, mustMarshal(t, got), mustMarshal(t, want))
		}
	}
}

// walkSeeds: FuzzApply's seeds and corpus, and resources holding resources (contained, nested in an
// element), where transform still walks.
func walkSeeds(tb testing.TB) [][]byte {
	seeds := fuzzApplySeeds(tb)
	seeds = append(seeds, fuzzcorpus.Bytes(tb, filepath.Join("testdata", "fuzz", "FuzzApply", "*"))...)
	for _, s := range []string{
		`{"resourceType":"ExplanationOfBenefit","use":"claim","billablePeriod":{"start":"2024-01-01"},"text":{"div":"$1"},"payment":{"amount":{"value":1}},` +
			`"contained":[{"resourceType":"ExplanationOfBenefit","use":"claim","billablePeriod":{"start":"2024-01-01"},"text":{"div":"$2"},"payment":{"amount":{"value":2}},"total":[{"amount":{"value":3}}]}]}`,
		`{"resourceType":"Coverage","text":{"div":"x"},"costToBeneficiary":[{"valueMoney":{"value":5}}],"extension":[{"valueReference":{"resourceType":"ClaimResponse","payment":{"amount":{"value":1}},"text":{"div":"y"}}}]}`,
		`{"resourceType":"Parameters","parameter":[{"resource":{"resourceType":"ExplanationOfBenefit","use":"claim","created":"2024-01-01","payment":{"amount":{"value":1}}}}]}`,
		`{"resourceType":"ClaimResponse","text":{"div":"z"},"payment":{"amount":{"value":1}},"created":"2024-01-01"}`,
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

func TestApplyMatchesWalk(t *testing.T) {
	for _, raw := range walkSeeds(t) {
		checkApplyMatchesWalk(t, raw)
	}
}

// FuzzApplyMatchesWalk: go test ./internal/datascope -run '^$' -fuzz FuzzApplyMatchesWalk
func FuzzApplyMatchesWalk(f *testing.F) {
	for _, raw := range walkSeeds(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkApplyMatchesWalk(t, body) })
}
