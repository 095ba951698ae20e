// Package r4jar reads the published FHIR R4 definitions HAPI FHIR ships in hapi-fhir-validation-resources-r4,
// for internal/fhir's generators: the Patient CompartmentDefinition, the concrete resource types, and the
// R4 SearchParameter bundle.
package r4jar

import (
	"archive/zip"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

const (
	// DefaultJar is the jar's place below the user's home directory.
	DefaultJar = ".m2/repository/ca/uhn/hapi/fhir/hapi-fhir-validation-resources-r4/8.8.0/hapi-fhir-validation-resources-r4-8.8.0.jar"
	// ProfilesPath holds the resource StructureDefinitions and the CompartmentDefinitions.
	ProfilesPath = "org/hl7/fhir/r4/model/profile/profiles-resources.xml"
	// SearchParamsPath holds the R4 SearchParameter bundle.
	SearchParamsPath = "org/hl7/fhir/r4/model/sp/search-parameters.json"
)

// DefaultPath is DefaultJar below the user's home directory.
func DefaultPath() string {
	home, _ := os.UserHomeDir()
	return filepath.Join(home, DefaultJar)
}

// CompartmentResource is one resource type of the Patient compartment with the search parameters that link it
// to the patient (none for types that are listed without a parameter).
type CompartmentResource struct {
	Type   string
	Params []string
}

// Definitions is what profiles-resources.xml says that the generators need.
type Definitions struct {
	PatientCompartment []CompartmentResource // in the CompartmentDefinition's order
	Types              []string              // concrete R4 resource types, sorted
	// Elements are each concrete type's top-level elements (Type.name, inherited ones included), in the
	// snapshot's order.
	Elements map[string][]Element
}

// Element is one top-level element of a resource type: its name as the definition writes it ("value[x]" for
// a choice), whether it is mandatory (min ≥ 1) and whether it is part of the summary (isSummary, R4
// §3.1.1.5.8 _summary=true).
type Element struct {
	Name      string
	Mandatory bool
	Summary   bool
}

// ReadFile returns one file of the jar.
func ReadFile(jar, name string) ([]byte, error) {
	zr, err := zip.OpenReader(jar)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	f, err := zr.Open(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", jar, err)
	}
	defer f.Close()
	return io.ReadAll(f)
}

// The elements of the R4 XML needed here; everything else in the bundle is skipped.
type compartmentDefinition struct {
	Code     valueAttr `xml:"code"`
	Resource []struct {
		Code  valueAttr   `xml:"code"`
		Param []valueAttr `xml:"param"`
	} `xml:"resource"`
}

type structureDefinition struct {
	Kind       valueAttr `xml:"kind"`
	Abstract   valueAttr `xml:"abstract"`
	Derivation valueAttr `xml:"derivation"`
	Type       valueAttr `xml:"type"`
	Snapshot   struct {
		Element []struct {
			Path      valueAttr `xml:"path"`
			Min       valueAttr `xml:"min"`
			IsSummary valueAttr `xml:"isSummary"`
		} `xml:"element"`
	} `xml:"snapshot"`
}

type valueAttr struct {
	Value string `xml:"value,attr"`
}

// Read reads the Patient CompartmentDefinition and the concrete resource types from the jar.
func Read(jar string) (Definitions, error) {
	zr, err := zip.OpenReader(jar)
	if err != nil {
		return Definitions{}, err
	}
	defer zr.Close()
	f, err := zr.Open(ProfilesPath)
	if err != nil {
		return Definitions{}, fmt.Errorf("%s: %w", jar, err)
	}
	defer f.Close()
	return Decode(f)
}

// Decode reads a profiles-resources.xml bundle.
func Decode(r io.Reader) (Definitions, error) {
	var d Definitions
	dec := xml.NewDecoder(r)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return d, err
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch start.Name.Local {
		case "CompartmentDefinition":
			var cd compartmentDefinition
			if err := dec.DecodeElement(&cd, &start); err != nil {
				return d, err
			}
			if cd.Code.Value != "Patient" {
				continue
			}
			for _, r := range cd.Resource {
				cr := CompartmentResource{Type: r.Code.Value}
				for _, p := range r.Param {
					cr.Params = append(cr.Params, p.Value)
				}
				d.PatientCompartment = append(d.PatientCompartment, cr)
			}
		case "StructureDefinition":
			var sd structureDefinition
			if err := dec.DecodeElement(&sd, &start); err != nil {
				return d, err
			}
			// Concrete resources only: Resource and DomainResource are abstract, profiles are constraints.
			if sd.Kind.Value == "resource" && sd.Abstract.Value == "false" && sd.Derivation.Value == "specialization" {
				t := sd.Type.Value
				d.Types = append(d.Types, t)
				if d.Elements == nil {
					d.Elements = map[string][]Element{}
				}
				for _, e := range sd.Snapshot.Element {
					name, ok := strings.CutPrefix(e.Path.Value, t+".")
					if !ok || strings.Contains(name, ".") {
						continue
					}
					d.Elements[t] = append(d.Elements[t], Element{Name: name,
						Mandatory: e.Min.Value != "" && e.Min.Value != "0", Summary: e.IsSummary.Value == "true"})
				}
			}
		}
	}
	if len(d.PatientCompartment) == 0 || len(d.Types) == 0 {
		return d, errors.New("no Patient CompartmentDefinition or no resource StructureDefinitions in the bundle")
	}
	slices.Sort(d.Types)
	return d, nil
}

// Main is the whole of a generator's main: it reads -jar, -out and -package, renders the definitions with
// render (source is the jar's file name, for the generated header) and writes the file; on error it exits 1.
func Main(name, defaultOut string, render func(pkg, source string, d Definitions) ([]byte, error)) {
	jar := flag.String("jar", DefaultPath(), "the hapi-fhir-validation-resources-r4 jar")
	out := flag.String("out", defaultOut, "the Go file to write")
	pkg := flag.String("package", "fhir", "the Go package of the generated file")
	flag.Parse()
	err := func() error {
		defs, err := Read(*jar)
		if err != nil {
			return err
		}
		src, err := render(*pkg, filepath.Base(*jar), defs)
		if err != nil {
			return err
		}
		return os.WriteFile(*out, src, 0o644)
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
