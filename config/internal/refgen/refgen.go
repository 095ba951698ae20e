// Package refgen writes docs/config-reference.md from the config package's source: every key (the
// mapstructure tags, walked from config.Config), its type, its default (config.Defaults, viper's) and the
// field's doc comment, so the reference cannot say what the code does not.
package refgen

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Module is the import path prefix whose packages are read from the module's own source.
const Module = "github.com/fhirwall/fhirwall/"

// Input is what Generate reads.
type Input struct {
	// Root is the module's root directory; the config package is Root/config.
	Root string
	// Defaults are config.Defaults(): dotted key → default value.
	Defaults map[string]any
}

// pkg is one parsed package: its types by name, with their docs.
type pkg struct {
	fset    *token.FileSet
	types   map[string]*doc.Type
	imports map[string]map[string]string // type name → its file's import name → path
}

type generator struct {
	root  string
	pkgs  map[string]*pkg // by directory below root
	rows  []row
	intro map[string]string // top-level key → its type's doc
	errs  []error
}

type row struct {
	key, typ, def, doc string
	top                string
}

// Generate renders the reference.
func Generate(in Input) ([]byte, error) {
	g := &generator{root: in.Root, pkgs: map[string]*pkg{}, intro: map[string]string{}}
	cfg, err := g.typeSpec("config", "Config")
	if err != nil {
		return nil, err
	}
	g.walkStruct("config", cfg, "", "")
	xdsKeys, err := xdsSections(filepath.Join(in.Root, "cmd", "xds"))
	if err != nil {
		g.errs = append(g.errs, err)
	}
	if err := errors.Join(g.errs...); err != nil {
		return nil, err
	}
	return g.render(in.Defaults, xdsKeys), nil
}

func (g *generator) load(dir string) (*pkg, error) {
	if p, ok := g.pkgs[dir]; ok {
		return p, nil
	}
	fset := token.NewFileSet()
	full := filepath.Join(g.root, dir)
	ents, err := os.ReadDir(full)
	if err != nil {
		return nil, fmt.Errorf("refgen: %w", err)
	}
	var files []*ast.File
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(full, n), nil, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("refgen: %w", err)
		}
		files = append(files, f)
	}
	imports := map[string]map[string]string{}
	for _, f := range files {
		names := map[string]string{}
		for _, im := range f.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			name := path[strings.LastIndex(path, "/")+1:]
			if im.Name != nil {
				name = im.Name.Name
			}
			names[name] = path
		}
		for _, d := range f.Decls {
			if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.TYPE {
				for _, sp := range gd.Specs {
					imports[sp.(*ast.TypeSpec).Name.Name] = names
				}
			}
		}
	}
	d, err := doc.NewFromFiles(fset, files, Module+dir, doc.PreserveAST)
	if err != nil {
		return nil, fmt.Errorf("refgen: %s: %w", dir, err)
	}
	p := &pkg{types: map[string]*doc.Type{}, imports: imports, fset: fset}
	for _, t := range d.Types {
		p.types[t.Name] = t
	}
	g.pkgs[dir] = p
	return p, nil
}

// typeSpec finds a struct type's declaration and returns its doc type.
func (g *generator) typeSpec(dir, name string) (*doc.Type, error) {
	p, err := g.load(dir)
	if err != nil {
		return nil, err
	}
	t, ok := p.types[name]
	if !ok {
		return nil, fmt.Errorf("refgen: type %s not found in %s", name, dir)
	}
	return t, nil
}

func structOf(t *doc.Type) *ast.StructType {
	for _, s := range t.Decl.Specs {
		if ts, ok := s.(*ast.TypeSpec); ok && ts.Name.Name == t.Name {
			if st, ok := ts.Type.(*ast.StructType); ok {
				return st
			}
		}
	}
	return nil
}

// walkStruct adds a row for every tagged field of t below prefix (a dotted key, "" at the root).
func (g *generator) walkStruct(dir string, t *doc.Type, prefix, top string) {
	st := structOf(t)
	if st == nil {
		g.errs = append(g.errs, fmt.Errorf("refgen: %s.%s is not a struct", dir, t.Name))
		return
	}
	p := g.pkgs[dir]
	imports := p.imports[t.Name]
	// A doc comment above a block of adjacent fields (Timeout, ConnectTimeout, LookupTimeout) describes the
	// block: the fields after the first point at it.
	// It must name the field, or the field is undescribed.
	var groupKey, groupDoc string
	var groupEnd int
	for _, f := range st.Fields.List {
		if f.Tag == nil || len(f.Names) == 0 {
			continue // unexported state (Config.role), never read from the file
		}
		tag, _ := strconv.Unquote(f.Tag.Value)
		key := reflect.StructTag(tag).Get("mapstructure")
		if key == "" || key == "-" || strings.Contains(key, ",") {
			if f.Names[0].IsExported() {
				g.errs = append(g.errs, fmt.Errorf("refgen: %s.%s.%s has no plain mapstructure key (%q): teach refgen", dir, t.Name, f.Names[0].Name, key))
			}
			continue
		}
		full := join(prefix, key)
		fieldTop := top
		if fieldTop == "" {
			fieldTop = key
			if prefix == "" {
				// A top-level section's introduction is its type's doc.
				if sdir, stype, ok := g.namedStruct(dir, imports, f.Type); ok {
					if sub, err := g.typeSpec(sdir, stype); err == nil {
						g.intro[key] = oneLine(sub.Doc)
					}
				}
			}
		}
		line := p.fset.Position(f.Pos()).Line
		see := ""
		switch {
		case f.Doc != nil:
			groupKey, groupDoc = full, f.Doc.Text()
		case f.Comment == nil && groupKey != "" && line == groupEnd+1:
			if mentions(groupDoc, f.Names[0].Name) {
				see = "Described with `" + groupKey + "`."
			}
		default:
			groupKey = ""
		}
		groupEnd = p.fset.Position(f.End()).Line
		g.field(dir, imports, f, full, fieldTop, see)
	}
}

// field adds the row of one field, then walks into it when it is a struct, a list of structs or a map of structs.
func (g *generator) field(dir string, imports map[string]string, f *ast.Field, key, top, see string) {
	text := oneLine(strings.TrimSpace(f.Doc.Text() + " " + f.Comment.Text()))
	if text == "" {
		text = see
	}
	typ, inner, innerKey := g.describe(dir, imports, f.Type)
	var sub *doc.Type
	if inner != nil {
		var err error
		if sub, err = g.typeSpec(inner[0], inner[1]); err != nil {
			g.errs = append(g.errs, err)
			return
		}
		if text == "" {
			text = oneLine(sub.Doc) // a field without a comment of its own: what its type is
		}
	}
	// A top-level section's object row would repeat its heading and introduction.
	if !(key == top && typ == "object") {
		g.rows = append(g.rows, row{key: key, typ: typ, doc: text, top: top})
	}
	if sub != nil {
		g.walkStruct(inner[0], sub, key+innerKey, top)
	}
}

// describe names a field's type for readers and, when the value holds a struct of fhirwall's, says where
// to walk: the struct's package directory and name, and the key suffix ("", "[]", ".<name>").
func (g *generator) describe(dir string, imports map[string]string, e ast.Expr) (string, []string, string) {
	switch t := e.(type) {
	case *ast.StarExpr:
		s, in, k := g.describe(dir, imports, t.X)
		return s + " (optional)", in, k
	case *ast.ArrayType:
		if sdir, name, ok := g.namedStruct(dir, imports, t.Elt); ok {
			return "list of objects", []string{sdir, name}, "[]"
		}
		s, _, _ := g.describe(dir, imports, t.Elt)
		return "list of " + s, nil, ""
	case *ast.MapType:
		if sdir, name, ok := g.namedStruct(dir, imports, t.Value); ok {
			return "map of name → object", []string{sdir, name}, ".<name>"
		}
		s, _, _ := g.describe(dir, imports, t.Value)
		return "map of name → " + s, nil, ""
	}
	if sdir, name, ok := g.namedStruct(dir, imports, e); ok {
		return "object", []string{sdir, name}, ""
	}
	switch s := exprString(e); s {
	case "time.Duration":
		return "duration (e.g. 1500ms, 30s, 5m)", nil, ""
	case "time.Time":
		return "time (RFC 3339)", nil, ""
	default:
		return s, nil, ""
	}
}

// namedStruct reports whether e names a struct type of this module (this package or an import below Module).
func (g *generator) namedStruct(dir string, imports map[string]string, e ast.Expr) (string, string, bool) {
	var sdir, name string
	switch t := e.(type) {
	case *ast.Ident:
		sdir, name = dir, t.Name
	case *ast.SelectorExpr:
		x, ok := t.X.(*ast.Ident)
		if !ok {
			return "", "", false
		}
		path, ok := imports[x.Name]
		if !ok || !strings.HasPrefix(path, Module) {
			return "", "", false
		}
		sdir, name = strings.TrimPrefix(path, Module), t.Sel.Name
	default:
		return "", "", false
	}
	dt, err := g.typeSpec(sdir, name)
	if err != nil || structOf(dt) == nil {
		return "", "", false
	}
	return sdir, name, true
}

func exprString(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.Ident:
		return t.Name
	case *ast.SelectorExpr:
		return exprString(t.X) + "." + t.Sel.Name
	}
	return fmt.Sprintf("%T", e)
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// mentions reports whether text names the Go identifier name as a word.
func mentions(text, name string) bool {
	for _, w := range strings.FieldsFunc(text, func(r rune) bool {
		return !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) {
		if w == name {
			return true
		}
	}
	return false
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// xdsSections are the top-level keys fhirwall-xds reads: the Config fields cmd/xds selects on a variable
// of type *config.Config (its parameters and what config.LoadFor returns).
func xdsSections(dir string) (map[string]bool, error) {
	fset := token.NewFileSet()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("refgen: %w", err)
	}
	fields := map[string]bool{}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, 0)
		if err != nil {
			return nil, fmt.Errorf("refgen: %w", err)
		}
		vars := map[string]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			switch t := n.(type) {
			case *ast.Field:
				if s, ok := t.Type.(*ast.StarExpr); ok && exprString(s.X) == "config.Config" {
					for _, id := range t.Names {
						vars[id.Name] = true
					}
				}
			case *ast.AssignStmt:
				if len(t.Rhs) == 1 {
					if c, ok := t.Rhs[0].(*ast.CallExpr); ok && (exprString(c.Fun) == "config.LoadFor" || exprString(c.Fun) == "config.Load") {
						if id, ok := t.Lhs[0].(*ast.Ident); ok {
							vars[id.Name] = true
						}
					}
				}
			}
			return true
		})
		ast.Inspect(f, func(n ast.Node) bool {
			if s, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := s.X.(*ast.Ident); ok && vars[id.Name] {
					fields[s.Sel.Name] = true
				}
			}
			return true
		})
	}
	return fields, nil
}

func (g *generator) render(defaults map[string]any, xdsFields map[string]bool) []byte {
	// The Go field names cmd/xds selects map to their keys through Config's tags.
	xdsKeys := map[string]bool{}
	if cfg, err := g.typeSpec("config", "Config"); err == nil {
		for _, f := range structOf(cfg).Fields.List {
			if f.Tag == nil || len(f.Names) == 0 || !xdsFields[f.Names[0].Name] {
				continue
			}
			tag, _ := strconv.Unquote(f.Tag.Value)
			xdsKeys[reflect.StructTag(tag).Get("mapstructure")] = true
		}
	}
	var b bytes.Buffer
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("<!-- Generated from config/*.go by config/internal/refgen; do not edit. Regenerate with\n")
	b.WriteString("     go test ./config -run TestConfigReference -update -->\n\n")
	b.WriteString("Both binaries read one YAML file (`-config path`; commented example: `config/fhirwall.yaml`). Every key can\n")
	b.WriteString("be set from the environment as `FHIRWALL_<KEY>`, dots as underscores (`FHIRWALL_FHIR_SERVER_URL`); a\n")
	b.WriteString("list from the environment is comma-separated. Unknown keys and bad values are refused at start, every\n")
	b.WriteString("problem named. Relative file paths are taken relative to the configuration file.\n\n")
	b.WriteString("- **fhirwall-proxy** (`cmd/proxy`) reads every section and checks every one it uses.\n")
	var xs []string
	for k := range xdsKeys {
		xs = append(xs, "`"+k+"`")
	}
	sort.Strings(xs)
	fmt.Fprintf(&b, "- **fhirwall-xds** (`cmd/xds`, `config.LoadFor(path, config.ForXDS)`) reads %s to build Envoy's\n  configuration (`cmd/xds/config.go`); it needs no database and no decision keys. Sections marked (xds) below.\n\n", strings.Join(xs, ", "))
	b.WriteString("A default of `—` means none: the key is empty or zero unless set (what zero means is in its description).\n")
	b.WriteString("`[]` in a key is any element of a list, `<name>` any key of a map.\n")
	var tops []string
	seen := map[string]bool{}
	for _, r := range g.rows {
		if !seen[r.top] {
			seen[r.top] = true
			tops = append(tops, r.top)
		}
	}
	for _, top := range tops {
		mark := ""
		if xdsKeys[top] {
			mark = " (xds)"
		}
		fmt.Fprintf(&b, "\n## `%s`%s\n\n", top, mark)
		if d := g.intro[top]; d != "" {
			b.WriteString(d + "\n\n")
		}
		b.WriteString("| key | type | default | description |\n|---|---|---|---|\n")
		for _, r := range g.rows {
			if r.top != top {
				continue
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.key, cell(r.typ), defaultCell(defaults, r.key), cell(r.doc))
		}
	}
	return b.Bytes()
}

func defaultCell(defaults map[string]any, key string) string {
	v, ok := defaults[key]
	if !ok {
		return "—"
	}
	var s string
	switch t := v.(type) {
	case string:
		if t == "" {
			return "—"
		}
		s = t
	case []string:
		if len(t) == 0 {
			return "—"
		}
		s = strings.Join(t, ",")
	default:
		s = fmt.Sprint(t)
	}
	return "`" + s + "`"
}

func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	if s == "" {
		return " "
	}
	return s
}
