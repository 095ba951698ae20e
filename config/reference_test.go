package config_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/config/internal/refgen"
)

var updateReference = flag.Bool("update", false, "rewrite docs/config-reference.md from the config types")

const referencePath = "../docs/config-reference.md"

func generateReference(t *testing.T) []byte {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := refgen.Generate(refgen.Input{Root: root, Defaults: config.Defaults()})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestConfigReference fails when docs/config-reference.md no longer says what the config types and their
// defaults say: regenerate with go test ./config -run TestConfigReference -update.
func TestConfigReference(t *testing.T) {
	got := generateReference(t)
	if *updateReference {
		if err := os.WriteFile(referencePath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatalf("%v: generate it with go test ./config -run TestConfigReference -update", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/config-reference.md is stale: regenerate it with go test ./config -run TestConfigReference -update")
	}
}

// TestConfigReferenceNamesEveryDefaultedKey proves the walk reaches every key that has a default: a key
// with a default but no row would be a setting the reference hides (or a default for a key that no
// longer exists).
func TestConfigReferenceNamesEveryDefaultedKey(t *testing.T) {
	ref := string(generateReference(t))
	for key, v := range config.Defaults() {
		if !strings.Contains(ref, "| `"+key+"` |") {
			t.Errorf("key %s (default %v) has no row in the reference", key, v)
		}
	}
}

// TestEveryConfigKeyIsDescribed keeps the reference a reference: a new key needs a doc comment (on the
// field, above a block of fields, or on its type).
func TestEveryConfigKeyIsDescribed(t *testing.T) {
	for _, line := range strings.Split(string(generateReference(t)), "\n") {
		if strings.HasPrefix(line, "| `") && strings.HasSuffix(line, "|   |") {
			t.Errorf("no description: %s", line)
		}
	}
}
