// Package evidence holds the requirement table and builds the compliance matrix from the checks that prove it.
package evidence

import (
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// Requirement is one row of requirements.yaml.
type Requirement struct {
	ID     string   `json:"id" yaml:"id"`
	Title  string   `json:"title" yaml:"title"`
	Source string   `json:"source" yaml:"source"`
	Text   string   `json:"text" yaml:"text"`
	APIs   []string `json:"apis,omitempty" yaml:"apis"`
}

//go:embed requirements.yaml
var requirementsYAML []byte

var idPattern = regexp.MustCompile(`^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$`)

// knownAPIs are the API names a requirement may be scoped to (config's API names).
var knownAPIs = map[string]bool{
	"patient-access": true, "provider-access": true, "payer-to-payer": true, "prior-auth": true,
}

// parseRequirements decodes and validates a requirement table whole: every problem is reported, not only the first.
func parseRequirements(b []byte) ([]Requirement, error) {
	var reqs []Requirement
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&reqs); err != nil {
		return nil, fmt.Errorf("requirements: %w", err)
	}
	var errs []error
	seen := map[string]bool{}
	for i, r := range reqs {
		where := fmt.Sprintf("requirements[%d] %q", i, r.ID)
		if !idPattern.MatchString(r.ID) {
			errs = append(errs, fmt.Errorf("%s: id must look like ABC-12 (upper case, dash-separated)", where))
		}
		if seen[r.ID] {
			errs = append(errs, fmt.Errorf("%s: duplicate id", where))
		}
		seen[r.ID] = true
		if strings.TrimSpace(r.Title) == "" || strings.TrimSpace(r.Source) == "" || strings.TrimSpace(r.Text) == "" {
			errs = append(errs, fmt.Errorf("%s: title, source and text are required", where))
		}
		for _, a := range r.APIs {
			if !knownAPIs[a] {
				errs = append(errs, fmt.Errorf("%s: unknown api %q", where, a))
			}
		}
	}
	if len(reqs) == 0 {
		errs = append(errs, errors.New("requirements: the table is empty"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return reqs, nil
}

// table parses the embedded table once; it is constant data, so a bad table is a build defect that
// TestRequirementTableIsValid catches, and Requirements panics rather than run with no table.
var table = sync.OnceValues(func() ([]Requirement, error) { return parseRequirements(requirementsYAML) })

// Requirements returns the table in file order (a copy: callers may change it).
func Requirements() []Requirement {
	reqs, err := table()
	if err != nil {
		panic("evidence: embedded requirements.yaml is invalid: " + err.Error())
	}
	out := make([]Requirement, len(reqs))
	for i, r := range reqs {
		r.APIs = append([]string(nil), r.APIs...)
		out[i] = r
	}
	return out
}

// Lookup finds a requirement by id.
func Lookup(id string) (Requirement, bool) {
	for _, r := range Requirements() {
		if r.ID == id {
			return r, true
		}
	}
	return Requirement{}, false
}

// T is what Proves needs from *testing.T (no "testing" import in this package).
type T interface {
	Helper()
	Log(args ...any)
	Fatalf(format string, args ...any)
}

// ProvesPrefix starts the one log line Proves writes; the matrix builder finds it in go test -json output.
const ProvesPrefix = "evidence: proves "

// Proves marks the running test as evidence for these requirement ids. An unknown id fails the test at once,
// so a renamed requirement cannot leave tests silently proving nothing.
func Proves(t T, ids ...string) {
	t.Helper()
	if len(ids) == 0 {
		t.Fatalf("evidence.Proves: no requirement id given")
		return
	}
	for _, id := range ids {
		if _, ok := Lookup(id); !ok {
			t.Fatalf("evidence.Proves: unknown requirement id %q (add it to internal/evidence/requirements.yaml or fix the id)", id)
			return
		}
	}
	t.Log(ProvesPrefix + strings.Join(ids, ","))
}

// ParseProvesLine returns the ids of a line written by Proves (test output, with or without the file:line
// prefix go test adds); ok is false for any other line.
func ParseProvesLine(line string) (ids []string, ok bool) {
	i := strings.Index(line, ProvesPrefix)
	if i < 0 {
		return nil, false
	}
	rest := strings.TrimSpace(line[i+len(ProvesPrefix):])
	if rest == "" {
		return nil, false
	}
	for _, id := range strings.Split(rest, ",") {
		if !idPattern.MatchString(id) {
			return nil, false
		}
		ids = append(ids, id)
	}
	return ids, true
}
