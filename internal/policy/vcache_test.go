package policy

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// TestVirtualCacheAnswersAsOPAsOwn runs one random sequence of Put, Get, Push and Pop against vcache and
// topdown's cache, reusing the key buffer as topdown does, and wants the same answer to every Get and Keys.
func TestVirtualCacheAnswersAsOPAsOwn(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	refs := []ast.Ref{
		ast.MustParseRef("data.fhirwall.api.patient_access.type"),
		ast.MustParseRef("data.fhirwall.api.patient_access.linking"),
		ast.MustParseRef("data.fhirwall.api.provider_access.type"),
		// function calls are cached under the function's ref followed by the arguments
		ast.MustParseRef("data.fhirwall.params.config_params").Append(ast.StringTerm("patient-access")).Append(ast.StringTerm("Observation")),
		ast.MustParseRef("data.fhirwall.params.config_params").Append(ast.StringTerm("patient-access")).Append(ast.StringTerm("Patient")),
		ast.MustParseRef("data.fhirwall.smart.needed_permission"),
	}
	values := []*ast.Term{nil, ast.StringTerm("ExplanationOfBenefit"), ast.BooleanTerm(true), ast.SetTerm(ast.StringTerm("patient"))}
	ours, theirs := getVCache(nil, nil), topdown.NewVirtualCache()
	defer ours.release()
	depth := 0
	buf := make(ast.Ref, 0, 8)
	for i := range 20000 {
		ref := refs[rng.IntN(len(refs))]
		buf = append(buf[:0], ref...)
		switch op := rng.IntN(10); {
		case op < 4:
			v := values[rng.IntN(len(values))]
			ours.Put(buf, v)
			theirs.Put(buf, v)
			buf[len(buf)-1] = ast.StringTerm("overwritten") // topdown reuses its buffers
		case op < 8:
			gv, gu := ours.Get(buf)
			wv, wu := theirs.Get(buf)
			if gu != wu || (gv == nil) != (wv == nil) || (gv != nil && !gv.Equal(wv)) {
				t.Fatalf("op %d: Get(%v) = %v, %v; OPA's cache says %v, %v", i, ref, gv, gu, wv, wu)
			}
		case op == 8 && depth < 3:
			ours.Push()
			theirs.Push()
			depth++
		case op == 9 && depth > 0:
			ours.Pop()
			theirs.Pop()
			depth--
		}
		if i%500 == 0 {
			if got, want := sortedRefs(ours.Keys()), sortedRefs(theirs.Keys()); !slices.Equal(got, want) {
				t.Fatalf("op %d: Keys() = %v; OPA's cache says %v", i, got, want)
			}
		}
	}
}

func sortedRefs(refs []ast.Ref) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.String()
	}
	slices.Sort(out)
	return out
}
