package extproc

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Envoy forwards ext_proc only ForwardedHeaders (internal/xds forward_rules), so a header this server reads
// and the list lacks would always read as absent. Every header read in this file, and every upstream header
// decision.AnswerHeaders reads through the getter it is given, must be in the list.
func TestReadsOnlyForwardedHeaders(t *testing.T) {
	const decisionHeader = "x-fhirwall-decision-id"
	forwarded := ForwardedHeaders(decisionHeader)
	literal := func(e ast.Expr) (string, bool) {
		if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
			s, err := strconv.Unquote(b.Value)
			return s, err == nil
		}
		return "", false
	}
	reads := 0
	check := func(file, fn string, nameArg int, allowed func(ast.Expr) bool) {
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != fn || len(call.Args) <= nameArg {
				return true
			}
			reads++
			arg := call.Args[nameArg]
			if name, ok := literal(arg); ok {
				if !slices.Contains(forwarded, strings.ToLower(name)) {
					t.Errorf("%s reads header %q, which Envoy does not forward (ForwardedHeaders)", file, name)
				}
				return true
			}
			if !allowed(arg) {
				t.Errorf("%s reads a header named by an expression this test cannot check: teach it", file)
			}
			return true
		})
	}
	check("extproc.go", "header", 1, func(e ast.Expr) bool {
		switch e := e.(type) {
		case *ast.SelectorExpr: // s.DecisionHeader
			return e.Sel.Name == "DecisionHeader"
		case *ast.CallExpr: // strings.ToLower(name): AnswerHeaders's getter, checked below
			return len(e.Args) == 1
		}
		return false
	})
	check("../../internal/decision/headers.go", "upstream", 0, func(ast.Expr) bool { return false })
	if reads < 10 {
		t.Fatalf("found %d header reads: the scan no longer sees them", reads)
	}
}
