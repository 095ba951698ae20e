// Command evidence turns `go test -json` streams of the end-to-end suites into the compliance matrix.
//
//	go test -json ... | go run ./test/tools/evidence tee -json FILE
//	    copies the stream to FILE and prints it as go test -v would, as it streams (CI logs stay readable)
//	go run ./test/tools/evidence build -out DIR [-version NAME=V]... [-strict] FILE.json...
//	    writes DIR/matrix.md, matrix.html and matrix.json from every test that called evidence.Proves
//
// Versions: fhirwall's commit (git, or "unknown"), the Go toolchain, and Envoy, HAPI FHIR, Keycloak, Kafka and
// PostgreSQL as the stack scripts under test/stack pin them; -version NAME=V overrides or adds one.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

const usage = "usage: evidence tee -json FILE < go-test-json | evidence build -out DIR [-title T] [-scope S] [-version NAME=V]... [-strict] FILE.json..."

func main() {
	code, err := run(os.Args[1:], os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "evidence:", err)
	}
	os.Exit(code)
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// run is main without the process: exit 2 for bad usage, 1 for a failure (or, with -strict, a row not met).
func run(args []string, stdin io.Reader, stdout io.Writer) (int, error) {
	if len(args) == 0 {
		return 2, errors.New(usage)
	}
	switch args[0] {
	case "tee":
		fs := flag.NewFlagSet("tee", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		out := fs.String("json", "", "file to keep the go test -json stream in")
		if err := fs.Parse(args[1:]); err != nil || *out == "" || fs.NArg() != 0 {
			return 2, errors.New("tee: -json FILE is required and nothing else: go test -json ./... | evidence tee -json e2e.json")
		}
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return 1, err
		}
		f, err := os.Create(*out)
		if err != nil {
			return 1, err
		}
		terr := newResults().tee(stdin, f, stdout)
		if err := f.Close(); terr == nil {
			terr = err
		}
		if terr != nil {
			return 1, terr
		}
		return 0, nil
	case "build":
		fs := flag.NewFlagSet("build", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		out := fs.String("out", "", "directory for matrix.md, matrix.html, matrix.json")
		title := fs.String("title", "fhirwall compliance matrix", "the matrix's title")
		scope := fs.String("scope", "make evidence (end-to-end suites against the real stack)", "what was run")
		root := fs.String("root", "", "repository root (default: the go.mod above the working directory)")
		strict := fs.Bool("strict", false, "exit 1 unless every requirement is met")
		var vers multiFlag
		fs.Var(&vers, "version", "NAME=VERSION to add or override (repeatable)")
		if err := fs.Parse(args[1:]); err != nil || *out == "" || fs.NArg() == 0 {
			return 2, errors.New("build: -out DIR and at least one go test -json file are required: evidence build -out .fhirwall/artifacts/evidence e2e.json faults.json")
		}
		if *root == "" {
			r, err := findRoot()
			if err != nil {
				return 2, err
			}
			*root = r
		}
		v, err := versions(*root, vers)
		if err != nil {
			return 2, err
		}
		res := newResults()
		for _, name := range fs.Args() {
			f, err := os.Open(name)
			if err != nil {
				return 1, fmt.Errorf("%w (run the suites first: make e2e)", err)
			}
			err = res.read(f)
			f.Close()
			if err != nil {
				return 1, fmt.Errorf("%s: %w", name, err)
			}
		}
		m := evidence.Build(*title, *scope, evidence.Requirements(), res.checks(), v, time.Now())
		if err := write(*out, m); err != nil {
			return 1, err
		}
		n := m.Counts()
		fmt.Fprintf(stdout, "evidence: %d requirements: %d met, %d failed, %d gap -> %s\n", len(m.Rows), n[evidence.Met], n[evidence.Failed], n[evidence.Gap], *out)
		if *strict && n[evidence.Met] != len(m.Rows) {
			return 1, fmt.Errorf("%d requirements are not met (see %s)", len(m.Rows)-n[evidence.Met], filepath.Join(*out, "matrix.md"))
		}
		return 0, nil
	}
	return 2, errors.New(usage)
}

func write(dir string, m evidence.Matrix) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j, err := m.JSON()
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"matrix.md": m.Markdown(), "matrix.html": m.HTML(), "matrix.json": j} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: give -root")
		}
		dir = parent
	}
}
