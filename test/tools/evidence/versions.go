package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
)

// pin is where a stack script pins a component's version: a file under the repository, a pattern whose first
// group is the version, and the environment variable the script lets override it.
type pin struct {
	name, file, pattern, env string
}

var pins = []pin{
	{"Envoy", "test/stack/envoy.sh", `(?m)^ENVOY_VERSION=\$\{ENVOY_VERSION:-([^}]+)\}`, "ENVOY_VERSION"},
	{"HAPI FHIR", "test/stack/hapi/pom.xml", `<hapi\.version>([^<]+)</hapi\.version>`, ""},
	{"Keycloak", "test/stack/keycloak.sh", `(?m)^KC_VERSION=\$\{KEYCLOAK_VERSION:-([^}]+)\}`, "KEYCLOAK_VERSION"},
	{"Kafka", "test/stack/kafka/pom.xml", `<kafka\.version>([^<]+)</kafka\.version>`, ""},
	{"PostgreSQL", "test/stack/postgres.sh", `(?m)^BIN=\$\{PG_BIN:-/usr/lib/postgresql/([0-9]+)/bin\}`, ""},
}

// stackVersions reads the versions the stack scripts pin (what `make stack-up` runs), saying where each came
// from; a pin that cannot be read is "unknown (why)", never a guess.
func stackVersions(root string) map[string]string {
	v := map[string]string{}
	for _, p := range pins {
		if p.env != "" && os.Getenv(p.env) != "" {
			v[p.name] = os.Getenv(p.env) + " ($" + p.env + ")"
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, p.file))
		if err != nil {
			v[p.name] = "unknown (" + p.file + " unreadable)"
			continue
		}
		m := regexp.MustCompile(p.pattern).FindSubmatch(b)
		if m == nil {
			v[p.name] = "unknown (no pin found in " + p.file + ")"
			continue
		}
		v[p.name] = strings.TrimSpace(string(m[1])) + " (pinned in " + p.file + ")"
	}
	return v
}

// fhirwallCommit is the checkout's commit, marked dirty when the work tree has changes, or "unknown".
func fhirwallCommit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += " (dirty)"
	}
	return c
}

func versions(root string, overrides []string) (map[string]string, error) {
	v := stackVersions(root)
	v["fhirwall"] = fhirwallCommit(root)
	v["Go"] = runtime.Version()
	for _, kv := range overrides {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("-version %q: want NAME=VERSION, e.g. -version Envoy=1.40.0", kv)
		}
		v[strings.TrimSpace(k)] = strings.TrimSpace(val)
	}
	return v, nil
}
