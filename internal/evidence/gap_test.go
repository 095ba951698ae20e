package evidence

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const importPath = "github.com/fhirwall/fhirwall/internal/evidence"

// provedIDs parses every *_test.go under root (build tags do not matter to the parser) and returns, for each
// string-literal id given to evidence.Proves, where it was named. Calls whose ids are not literals cannot be
// counted and are returned apart: the gap check can then only report too many gaps, never hide one.
func provedIDs(root string) (ids map[string][]string, nonLiteral []string, err error) {
	ids = map[string][]string{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		local := ""
		for _, im := range f.Imports {
			if p, _ := strconv.Unquote(im.Path.Value); p == importPath {
				local = "evidence"
				if im.Name != nil {
					local = im.Name.Name
				}
			}
		}
		if local == "" || local == "_" {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Proves" {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != local {
				return true
			}
			where := fmt.Sprintf("%s:%d", filepath.ToSlash(rel), fset.Position(call.Pos()).Line)
			for _, a := range call.Args[min(1, len(call.Args)):] {
				lit, ok := a.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING || call.Ellipsis.IsValid() {
					nonLiteral = append(nonLiteral, where)
					continue
				}
				id, _ := strconv.Unquote(lit.Value)
				ids[id] = append(ids[id], where)
			}
			return true
		})
		return nil
	})
	return ids, nonLiteral, err
}

// gaps compares the table with what the tests name: requirements no test names, and ids tests name that the
// table lacks (with where they are named).
func gaps(table []Requirement, proved map[string][]string) (untested, unknown []string) {
	inTable := map[string]bool{}
	for _, r := range table {
		inTable[r.ID] = true
		if len(proved[r.ID]) == 0 {
			untested = append(untested, r.ID)
		}
	}
	for id, where := range proved {
		if !inTable[id] {
			unknown = append(unknown, id+" ("+strings.Join(where, ", ")+")")
		}
	}
	slices.Sort(unknown)
	return untested, unknown
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the package directory")
		}
		dir = parent
	}
}

// TestEveryRequirementHasATestAndEveryTestIDIsInTheTable is the gap test: a requirement whose last test is
// deleted or retagged, or a test naming an id the table does not have, fails here, before any stack runs.
func TestEveryRequirementHasATestAndEveryTestIDIsInTheTable(t *testing.T) {
	proved, nonLiteral, err := provedIDs(moduleRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range nonLiteral {
		t.Logf("%s: evidence.Proves with ids that are not string literals; they are not counted here", w)
	}
	untested, unknown := gaps(Requirements(), proved)
	if len(untested) > 0 {
		t.Errorf("%d requirements no test names with evidence.Proves (write the test, or take the row out of requirements.yaml): %s",
			len(untested), strings.Join(untested, ", "))
	}
	if len(unknown) > 0 {
		t.Errorf("tests name ids requirements.yaml does not have: %s", strings.Join(unknown, "; "))
	}
}

// TestGapCheckFindsUntestedAndUnknownIDsInAFakeSourceTree proves the gap test can fail: fake module trees
// written here, with a fake table, must give exactly the expected untested and unknown ids.
func TestGapCheckFindsUntestedAndUnknownIDsInAFakeSourceTree(t *testing.T) {
	table := []Requirement{{ID: "R-01"}, {ID: "R-02"}}
	const header = "package p\n\nimport (\n\t\"testing\"\n\n\tev \"" + importPath + "\"\n)\n\n"
	cases := []struct {
		name              string
		files             map[string]string
		untested, unknown []string
		nonLiteral        int
	}{
		{name: "every id named once",
			files: map[string]string{"a/a_test.go": header + "func TestA(t *testing.T) { ev.Proves(t, \"R-01\", \"R-02\") }\n"}},
		{name: "a requirement lost its last test",
			files:    map[string]string{"a/a_test.go": header + "func TestA(t *testing.T) { ev.Proves(t, \"R-01\") }\n"},
			untested: []string{"R-02"}},
		{name: "a test names an id the table lacks",
			files:   map[string]string{"a/a_test.go": header + "func TestA(t *testing.T) { ev.Proves(t, \"R-01\", \"R-02\", \"R-09\") }\n"},
			unknown: []string{"R-09 (a/a_test.go:9)"}},
		{name: "a subtest counts",
			files: map[string]string{"a/a_test.go": header + "func TestA(t *testing.T) {\n\tev.Proves(t, \"R-01\")\n\tt.Run(\"x\", func(t *testing.T) { ev.Proves(t, \"R-02\") })\n}\n"}},
		{name: "ids in non-test files, testdata, hidden folders and comments do not count",
			files: map[string]string{
				"a/a.go":                  header + "func A(t *testing.T) { ev.Proves(t, \"R-02\") }\n",
				"a/testdata/x_test.go":    header + "func TestX(t *testing.T) { ev.Proves(t, \"R-02\") }\n",
				".hidden/x_test.go":       header + "func TestX(t *testing.T) { ev.Proves(t, \"R-02\") }\n",
				"a/a_test.go":             header + "// ev.Proves(t, \"R-02\")\nfunc TestA(t *testing.T) { ev.Proves(t, \"R-01\") }\n",
				"b/other_pkg_test.go":     "package b\n\nimport \"testing\"\n\nfunc TestB(t *testing.T) { evidence.Proves(t, \"R-02\") }\n",
				"c/shadowed_name_test.go": "package c\n\nimport (\n\t\"testing\"\n\tevidence \"example.com/other\"\n)\n\nfunc TestC(t *testing.T) { evidence.Proves(t, \"R-02\") }\n",
			},
			untested: []string{"R-02"}},
		{name: "ids that are not literals are set apart, not counted",
			files:    map[string]string{"a/a_test.go": header + "var ids = []string{\"R-02\"}\n\nfunc TestA(t *testing.T) { ev.Proves(t, \"R-01\"); ev.Proves(t, ids...) }\n"},
			untested: []string{"R-02"}, nonLiteral: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			for name, src := range c.files {
				p := filepath.Join(root, filepath.FromSlash(name))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			proved, nonLiteral, err := provedIDs(root)
			if err != nil {
				t.Fatal(err)
			}
			untested, unknown := gaps(table, proved)
			if !slices.Equal(untested, c.untested) || !slices.Equal(unknown, c.unknown) || len(nonLiteral) != c.nonLiteral {
				t.Errorf("untested %q unknown %q non-literal %q; want %q %q %d", untested, unknown, nonLiteral, c.untested, c.unknown, c.nonLiteral)
			}
		})
	}
}
