// Command compartmentpaths generates internal/fhir's PatientCompartmentPaths: for each R4 resource type in the
// Patient compartment, the element paths that hold the references linking it to a patient. It reads the
// Patient CompartmentDefinition (profiles-resources.xml) and the R4 SearchParameter bundle
// (sp/search-parameters.json) that HAPI FHIR ships in hapi-fhir-validation-resources-r4, and turns each
// compartment parameter's FHIRPath expression into element paths. It is run by `go generate` in internal/fhir.
package main

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

const (
	profilesPath = "org/hl7/fhir/r4/model/profile/profiles-resources.xml"
	paramsPath   = "org/hl7/fhir/r4/model/sp/search-parameters.json"
	// DefaultJar is the jar's place below the user's home directory.
	DefaultJar = ".m2/repository/ca/uhn/hapi/fhir/hapi-fhir-validation-resources-r4/8.8.0/hapi-fhir-validation-resources-r4-8.8.0.jar"
)

func main() {
	home, _ := os.UserHomeDir()
	jar := flag.String("jar", filepath.Join(home, DefaultJar), "the hapi-fhir-validation-resources-r4 jar")
	out := flag.String("out", "patient_compartment_paths_gen.go", "the Go file to write")
	pkg := flag.String("package", "fhir", "the Go package of the generated file")
	flag.Parse()
	if err := run(*jar, *out, *pkg); err != nil {
		fmt.Fprintln(os.Stderr, "compartmentpaths:", err)
		os.Exit(1)
	}
}

func run(jar, out, pkg string) error {
	zr, err := zip.OpenReader(jar)
	if err != nil {
		return err
	}
	defer zr.Close()
	compartment, err := readCompartment(&zr.Reader)
	if err != nil {
		return err
	}
	params, err := readParams(&zr.Reader)
	if err != nil {
		return err
	}
	paths, err := resolve(compartment, params)
	if err != nil {
		return err
	}
	src, err := render(pkg, filepath.Base(jar), paths)
	if err != nil {
		return err
	}
	return os.WriteFile(out, src, 0o644)
}

type compartmentDefinition struct {
	Code     valueAttr `xml:"code"`
	Resource []struct {
		Code  valueAttr   `xml:"code"`
		Param []valueAttr `xml:"param"`
	} `xml:"resource"`
}

type valueAttr struct {
	Value string `xml:"value,attr"`
}

type compartmentResource struct {
	typ    string
	params []string
}

func readCompartment(zr *zip.Reader) ([]compartmentResource, error) {
	f, err := zr.Open(profilesPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("no Patient CompartmentDefinition")
		}
		if err != nil {
			return nil, err
		}
		start, ok := tok.(xml.StartElement)
		if !ok || start.Name.Local != "CompartmentDefinition" {
			continue
		}
		var cd compartmentDefinition
		if err := dec.DecodeElement(&cd, &start); err != nil {
			return nil, err
		}
		if cd.Code.Value != "Patient" {
			continue
		}
		var out []compartmentResource
		for _, r := range cd.Resource {
			cr := compartmentResource{typ: r.Code.Value}
			for _, p := range r.Param {
				cr.params = append(cr.params, p.Value)
			}
			if len(cr.params) > 0 {
				out = append(out, cr)
			}
		}
		return out, nil
	}
}

type searchParameter struct {
	Code       string   `json:"code"`
	Base       []string `json:"base"`
	Expression string   `json:"expression"`
}

// readParams indexes the SearchParameters by "Type.code".
func readParams(zr *zip.Reader) (map[string]string, error) {
	f, err := zr.Open(paramsPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b struct {
		Entry []struct {
			Resource searchParameter `json:"resource"`
		} `json:"entry"`
	}
	if err := json.NewDecoder(f).Decode(&b); err != nil {
		return nil, fmt.Errorf("%s: %w", paramsPath, err)
	}
	m := map[string]string{}
	for _, e := range b.Entry {
		for _, base := range e.Resource.Base {
			m[base+"."+e.Resource.Code] = e.Resource.Expression
		}
	}
	return m, nil
}

func resolve(compartment []compartmentResource, params map[string]string) (map[string][][]string, error) {
	out := map[string][][]string{}
	for _, cr := range compartment {
		for _, p := range cr.params {
			expr, ok := params[cr.typ+"."+p]
			if !ok || expr == "" {
				return nil, fmt.Errorf("%s: no SearchParameter %q with an expression", cr.typ, p)
			}
			paths, err := Paths(cr.typ, expr)
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", cr.typ, p, err)
			}
			for _, path := range paths {
				if !slices.ContainsFunc(out[cr.typ], func(q []string) bool { return slices.Equal(q, path) }) {
					out[cr.typ] = append(out[cr.typ], path)
				}
			}
		}
	}
	return out, nil
}

var (
	whereRe  = regexp.MustCompile(`\.where\([^()]*(\([^()]*\)[^()]*)*\)`)
	ofTypeRe = regexp.MustCompile(`\.ofType\([A-Za-z]+\)`)
	asRe     = regexp.MustCompile(`\s+as\s+[A-Za-z]+`)
	elemRe   = regexp.MustCompile(`^[a-z][A-Za-z0-9]*$`)
)

// Paths turns one SearchParameter expression into the element paths below typ that it reads. Unions are
// split and filtered by the type's prefix (shared parameters like clinical-patient name many types);
// .where(...), ofType(...) and "as X" only narrow which references count, so the element path is kept whole.
func Paths(typ, expr string) ([][]string, error) {
	var out [][]string
	for _, part := range strings.Split(expr, "|") {
		part = strings.TrimSpace(part)
		part = whereRe.ReplaceAllString(part, "")
		part = ofTypeRe.ReplaceAllString(part, "")
		part = asRe.ReplaceAllString(part, "")
		part = strings.TrimSpace(strings.Trim(part, "() "))
		if !strings.HasPrefix(part, typ+".") {
			continue
		}
		segs := strings.Split(part[len(typ)+1:], ".")
		for _, s := range segs {
			if !elemRe.MatchString(s) {
				return nil, fmt.Errorf("cannot read %q in %q", s, expr)
			}
		}
		out = append(out, segs)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no path for %s in %q", typ, expr)
	}
	return out, nil
}

func render(pkg, source string, paths map[string][][]string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by gen/compartmentpaths from %s (%s, %s); DO NOT EDIT.\n\n", source, profilesPath, paramsPath)
	fmt.Fprintf(&b, "package %s\n\n", pkg)
	b.WriteString("// PatientCompartmentPaths maps each R4 resource type in the Patient compartment to the element paths (segments\n")
	b.WriteString("// below the resource) of the references that put it in a patient's compartment: the expressions of the\n")
	b.WriteString("// compartment's search parameters, without their where()/as/ofType() narrowing.\n")
	b.WriteString("var PatientCompartmentPaths = map[string][][]string{\n")
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		var ps []string
		for _, p := range paths[k] {
			q := make([]string, len(p))
			for i, s := range p {
				q[i] = fmt.Sprintf("%q", s)
			}
			ps = append(ps, "{"+strings.Join(q, ", ")+"}")
		}
		fmt.Fprintf(&b, "\t%q: {%s},\n", k, strings.Join(ps, ", "))
	}
	b.WriteString("}\n")
	return format.Source(b.Bytes())
}
