package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

// event is one line of `go test -json` (cmd/test2json's TestEvent).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// testRun is what one stream says about one test.
type testRun struct {
	pkg, test string
	ids       []string
	outcome   evidence.Outcome // empty until the test's pass, fail or skip event
	lines     []string         // the test's own output, for a one-line detail
}

// results collects, across every stream read, the tests that logged an evidence.Proves line.
type results struct {
	tests    map[string]*testRun // package + "." + test
	order    []string
	pkgFail  map[string]bool
	nonJSON  int
	maxLines int
}

func newResults() *results {
	return &results{tests: map[string]*testRun{}, pkgFail: map[string]bool{}, maxLines: 40}
}

// tee copies a go test -json stream to jsonOut verbatim and writes its human-readable form (the output events'
// text, which is what go test -v prints, and any line that is not JSON) to human as it streams, so CI logs stay
// readable while the JSON is kept. It also collects results from what passes through.
func (r *results) tee(in io.Reader, jsonOut, human io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if _, err := jsonOut.Write(append(line, '\n')); err != nil {
			return fmt.Errorf("writing the JSON copy: %w", err)
		}
		if e, ok := r.add(line); ok {
			if e.Output != "" {
				io.WriteString(human, e.Output)
			}
		} else {
			fmt.Fprintf(human, "%s\n", line)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the go test -json stream: %w", err)
	}
	return nil
}

// read collects results from one recorded stream.
func (r *results) read(in io.Reader) error {
	return r.tee(in, io.Discard, io.Discard)
}

// add takes one line of the stream; ok is false for a line that is not a test event (build output printed
// before -json took over, a panic's text, an empty line).
func (r *results) add(line []byte) (event, bool) {
	var e event
	if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil || e.Action == "" {
		r.nonJSON++
		return e, false
	}
	if e.Test == "" {
		if e.Action == "fail" {
			r.pkgFail[e.Package] = true
		}
		return e, true
	}
	key := e.Package + "." + e.Test
	tr := r.tests[key]
	switch e.Action {
	case "output":
		if ids, ok := evidence.ParseProvesLine(e.Output); ok {
			if tr == nil {
				tr = &testRun{pkg: e.Package, test: e.Test}
				r.tests[key] = tr
			}
			if len(tr.ids) == 0 {
				r.order = append(r.order, key)
			}
			tr.ids = append(tr.ids, ids...)
			return e, true
		}
		if tr == nil {
			// Every test is tracked, Proves or not: a parent's failure decides its subtests' checks.
			tr = &testRun{pkg: e.Package, test: e.Test}
			r.tests[key] = tr
		}
		if t := detailLine(e.Output); t != "" && len(tr.lines) < r.maxLines {
			tr.lines = append(tr.lines, t)
		}
	case "pass", "fail", "skip":
		if tr == nil {
			tr = &testRun{pkg: e.Package, test: e.Test}
			r.tests[key] = tr
		}
		tr.outcome = evidence.Outcome(e.Action)
	}
	return e, true
}

// detailLine keeps a test's own messages and drops go test's framing lines.
func detailLine(out string) string {
	t := strings.TrimSpace(out)
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME", "--- PASS", "--- FAIL", "--- SKIP", "PASS", "FAIL", "ok "} {
		if strings.HasPrefix(t, p) {
			return ""
		}
	}
	return t
}

// checks turns what was read into the matrix's checks: one per test that logged a Proves line. A test fails
// when it or any parent failed, or when it has no result in a package that failed (a timeout or crash
// ends the binary before the test says anything); a test that logged Proves and then skipped is a skip.
func (r *results) checks() []evidence.Check {
	var out []evidence.Check
	for _, key := range r.order {
		tr := r.tests[key]
		if len(tr.ids) == 0 {
			continue
		}
		pkg, test := tr.pkg, tr.test
		c := evidence.Check{Name: key, Requirements: dedupe(tr.ids), Outcome: tr.outcome}
		switch {
		case tr.outcome == evidence.Fail:
			c.Detail = firstLine(tr.lines, "failed")
		case tr.outcome == "":
			c.Outcome = evidence.Fail
			c.Detail = "no result: the test binary ended before the test did (timeout or crash)"
			if !r.pkgFail[pkg] {
				c.Detail = "no result in the stream (truncated?)"
			}
		case tr.outcome == evidence.Skip:
			c.Detail = lastLine(tr.lines, "skipped")
		}
		if c.Outcome != evidence.Fail {
			for parent := parentOf(test); parent != ""; parent = parentOf(parent) {
				if p := r.tests[pkg+"."+parent]; p != nil && p.outcome == evidence.Fail {
					c.Outcome, c.Detail = evidence.Fail, "parent "+parent+" failed: "+firstLine(p.lines, "failed")
					break
				}
			}
		}
		out = append(out, c)
	}
	return out
}

func parentOf(test string) string {
	if i := strings.LastIndex(test, "/"); i >= 0 {
		return test[:i]
	}
	return ""
}

func firstLine(lines []string, def string) string {
	if len(lines) == 0 {
		return def
	}
	return clip(lines[0])
}

func lastLine(lines []string, def string) string {
	if len(lines) == 0 {
		return def
	}
	return clip(lines[len(lines)-1])
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

func dedupe(ids []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
