// Command seed loads fhirwall's deterministic demo data into a FHIR server (HAPI FHIR JPA R4).
//
//	go run ./test/seed -fhir http://127.0.0.1:8090/fhir
//
// It builds a few `transaction` Bundles of PUT entries with client-assigned ids (same input, same
// bytes: no clock, no randomness), POSTs them in dependency order, names any entry the server
// rejects, then checks resource counts with searches. See test/seed/README.md for the data and the
// ids/codes other components rely on.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

func main() {
	def := os.Getenv("FHIRWALL_FHIR_URL")
	if def == "" {
		def = "http://127.0.0.1:8090/fhir"
	}
	fhir := flag.String("fhir", def, "FHIR base URL (env FHIRWALL_FHIR_URL)")
	out := flag.String("out", "", "also write the transaction Bundles as JSON files into this directory")
	dry := flag.Bool("dry-run", false, "generate (and write with -out) only; do not contact the server")
	noVerify := flag.Bool("no-verify", false, "skip the count searches after loading")
	timeout := flag.Duration("timeout", 5*time.Minute, "overall deadline")
	flag.Parse()

	if err := run(*fhir, *out, *dry, !*noVerify, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "seed: "+err.Error())
		os.Exit(1)
	}
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func run(base, outDir string, dry, verify bool, timeout time.Duration) error {
	rs, err := Generate()
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	counts := Counts(rs)
	types := make([]string, 0, len(counts))
	for t := range counts {
		types = append(types, t)
	}
	sort.Strings(types)
	logf("generated %d resources:", len(rs))
	for _, t := range types {
		logf("  %-22s %4d", t, counts[t])
	}
	if outDir != "" {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return err
		}
		for _, b := range Bundles(rs) {
			data, err := MarshalBundle(b)
			if err != nil {
				return err
			}
			p := filepath.Join(outDir, b["id"].(string)+".json")
			if err := os.WriteFile(p, append(data, '\n'), 0o644); err != nil {
				return err
			}
			logf("wrote %s", p)
		}
	}
	if dry {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := newClient(base, 2*time.Minute)
	logf("loading into %s", c.base)
	if err := Load(ctx, c, rs, logf); err != nil {
		return err
	}
	if !verify {
		return nil
	}
	logf("verifying:")
	if err := Verify(ctx, c, rs, logf); err != nil {
		return err
	}
	logf("seed loaded and verified")
	return nil
}
