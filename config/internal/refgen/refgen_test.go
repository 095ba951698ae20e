package refgen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tree writes a module tree with config/config.go holding src and an empty cmd/xds, for Generate.
func tree(t *testing.T, src string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"config", "cmd/xds"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "config", "config.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestAKeyRefgenCannotReadIsAnErrorNotAGap(t *testing.T) {
	root := tree(t, "package config\n\ntype Config struct {\n\tA Inner `mapstructure:\",squash\"`\n}\n\ntype Inner struct{ B string `mapstructure:\"b\"` }\n")
	if _, err := Generate(Input{Root: root}); err == nil || !strings.Contains(err.Error(), "Config.A") {
		t.Fatalf("want an error naming Config.A, got %v", err)
	}
}

func TestABlockCommentDescribesOnlyTheFieldsItNames(t *testing.T) {
	root := tree(t, `package config

import "time"

type Config struct {
	// Timeout bounds a call; ConnectTimeout a connection.
	Timeout        time.Duration `+"`mapstructure:\"timeout\"`"+`
	ConnectTimeout time.Duration `+"`mapstructure:\"connect_timeout\"`"+`
	Other          string        `+"`mapstructure:\"other\"`"+`
}
`)
	out, err := Generate(Input{Root: root, Defaults: map[string]any{"timeout": "30s"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| `timeout` | duration (e.g. 1500ms, 30s, 5m) | `30s` | Timeout bounds a call; ConnectTimeout a connection. |",
		"| `connect_timeout` | duration (e.g. 1500ms, 30s, 5m) | — | Described with `timeout`. |",
		"| `other` | string | — |   |",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing row %s in:\n%s", want, out)
		}
	}
}
