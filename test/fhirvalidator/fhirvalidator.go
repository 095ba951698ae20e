// Package fhirvalidator runs HAPI's FHIR validator (test/tools/fhir-validator) from Go tests.
package fhirvalidator

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/test/require"
)

func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// PackageDir is the folder of IG package files: $FHIR_PACKAGES, else the repository's own copy
// (test/fixtures/fhir-packages, provenance in its README.md).
func PackageDir() string {
	if dir := os.Getenv("FHIR_PACKAGES"); dir != "" {
		return dir
	}
	return filepath.Join(root(), "test", "fixtures", "fhir-packages")
}

// Packages resolves IG package files by name in PackageDir; a missing one fails t.
func Packages(t testing.TB, names ...string) []string {
	t.Helper()
	dir := PackageDir()
	var out []string
	for _, n := range names {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("IG package missing (set FHIR_PACKAGES): %v", err)
		}
		out = append(out, p)
	}
	return out
}

// Validate validates files against the packages (none: base R4) and returns the ERROR and FATAL lines; other
// lines are logged. Without the validator built it skips, or fails under FHIRWALL_REQUIRE_ALL (`make test`
// and `make e2e` build it). It fails t when the validator did not run, or said nothing about a file (every
// resource gets at least the narrative warning: a file never named was never validated).
func Validate(t testing.TB, packages, files []string) []string {
	t.Helper()
	tool := filepath.Join(root(), "test", "tools", "fhir-validator", "target")
	jar := filepath.Join(tool, "fhir-validator-0.1.0.jar")
	if _, err := os.Stat(jar); err != nil {
		require.Missing(t, "validator not built: cd test/tools/fhir-validator && mvn -q package")
	}
	if len(files) == 0 {
		t.Fatal("no resources to validate")
	}
	args := append([]string{"-cp", jar + ":" + filepath.Join(tool, "lib", "*"), "fhirwall.Validate"}, packages...)
	args = append(append(args, "--"), files...)
	out, err := exec.Command("java", args...).CombinedOutput()
	// The validator exits 1 when a resource has errors (returned below); anything else means it did not run.
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		t.Fatalf("validator did not run: %v\n%s", err, out)
	}
	for _, f := range files {
		if !strings.Contains(string(out), filepath.Base(f)) {
			t.Errorf("the validator said nothing about %s:\n%s", filepath.Base(f), out)
		}
	}
	var errs []string
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "ERROR "), strings.HasPrefix(line, "FATAL "):
			errs = append(errs, line)
		case line != "" && !strings.HasPrefix(line, "SLF4J"):
			t.Log(line)
		}
	}
	if err != nil && len(errs) == 0 {
		t.Errorf("the validator failed without an ERROR line:\n%s", out)
	}
	return errs
}
