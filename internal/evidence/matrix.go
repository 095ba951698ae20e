package evidence

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"sort"
	"strings"
	"time"
)

// Outcome is one check's result.
type Outcome string

const (
	Pass Outcome = "pass"
	Fail Outcome = "fail"
	Skip Outcome = "skip"
)

// Check is one test or self-test check and what it claims.
type Check struct {
	Name         string   `json:"name"` // e.g. "github.com/fhirwall/fhirwall/test/e2e.TestX/sub" or a selftest check name
	Requirements []string `json:"requirements"`
	Outcome      Outcome  `json:"outcome"`
	Detail       string   `json:"detail,omitempty"` // why it failed or skipped (one line), empty when it passed
}

// Status is a requirement's standing in the matrix.
type Status string

const (
	Met    Status = "met"    // at least one passing check, none failing
	Failed Status = "failed" // a check failed
	Gap    Status = "gap"    // no passing check: never shown as met
)

// Row is one requirement and the checks that claim it.
type Row struct {
	Requirement
	Status Status  `json:"status"`
	Checks []Check `json:"checks"`
}

// Matrix is the compliance matrix.
type Matrix struct {
	Title     string            `json:"title"`
	Scope     string            `json:"scope"`
	Generated time.Time         `json:"generated"`
	Versions  map[string]string `json:"versions"`
	Rows      []Row             `json:"rows"`
}

// Build gives every requirement in reqs exactly one row, in reqs' order; checks naming ids outside reqs are
// ignored. A check naming an id twice counts once.
func Build(title, scope string, reqs []Requirement, checks []Check, versions map[string]string, now time.Time) Matrix {
	byID := make(map[string][]Check, len(reqs))
	for _, c := range checks {
		seen := map[string]bool{}
		for _, id := range c.Requirements {
			if seen[id] {
				continue
			}
			seen[id] = true
			byID[id] = append(byID[id], c)
		}
	}
	m := Matrix{Title: title, Scope: scope, Generated: now.UTC(), Versions: map[string]string{}}
	for k, v := range versions {
		m.Versions[k] = v
	}
	for _, r := range reqs {
		row := Row{Requirement: r, Status: Gap, Checks: append([]Check{}, byID[r.ID]...)}
		passed, failed := false, false
		for _, c := range row.Checks {
			switch c.Outcome {
			case Pass:
				passed = true
			case Fail:
				failed = true
			}
		}
		switch {
		case failed:
			row.Status = Failed
		case passed:
			row.Status = Met
		}
		m.Rows = append(m.Rows, row)
	}
	return m
}

// Counts returns how many rows have each status.
func (m Matrix) Counts() map[Status]int {
	n := map[Status]int{Met: 0, Failed: 0, Gap: 0}
	for _, r := range m.Rows {
		n[r.Status]++
	}
	return n
}

func (m Matrix) versionKeys() []string {
	keys := make([]string, 0, len(m.Versions))
	for k := range m.Versions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// mdEscaper makes text inert inside a Markdown table cell: CommonMark lets any ASCII punctuation be
// backslash-escaped, so the characters that open emphasis, code, links, HTML or end a cell are; a newline
// would end the row, so it becomes a space.
var mdEscaper = strings.NewReplacer(
	`\`, `\\`, "`", "\\`", `*`, `\*`, `_`, `\_`, `[`, `\[`, `]`, `\]`, `<`, `\<`, `>`, `\>`,
	`|`, `\|`, `&`, `\&`, `~`, `\~`, `!`, `\!`, `#`, `\#`, "\r\n", " ", "\n", " ", "\r", " ",
)

func md(s string) string { return mdEscaper.Replace(s) }

// Markdown renders the matrix as a GitHub-flavoured Markdown document.
func (m Matrix) Markdown() []byte {
	var b bytes.Buffer
	n := m.Counts()
	fmt.Fprintf(&b, "# %s\n\n", md(m.Title))
	fmt.Fprintf(&b, "Scope: %s  \nGenerated: %s  \n", md(m.Scope), m.Generated.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "Requirements: %d — met %d, failed %d, gap %d\n\n", len(m.Rows), n[Met], n[Failed], n[Gap])
	if len(m.Versions) > 0 {
		b.WriteString("| component | version |\n|---|---|\n")
		for _, k := range m.versionKeys() {
			fmt.Fprintf(&b, "| %s | %s |\n", md(k), md(m.Versions[k]))
		}
		b.WriteString("\n")
	}
	b.WriteString("| id | requirement | source | status | checks |\n|---|---|---|---|---|\n")
	for _, r := range m.Rows {
		var cs []string
		for _, c := range r.Checks {
			s := md(c.Name) + " (" + md(string(c.Outcome))
			if c.Detail != "" {
				s += ": " + md(c.Detail)
			}
			cs = append(cs, s+")")
		}
		checks := "none"
		if len(cs) > 0 {
			checks = strings.Join(cs, "<br>")
		}
		fmt.Fprintf(&b, "| %s | **%s**: %s | %s | %s | %s |\n",
			md(r.ID), md(r.Title), md(r.Text), md(r.Source), statusMark(r.Status), checks)
	}
	return b.Bytes()
}

func statusMark(s Status) string {
	switch s {
	case Met:
		return "met"
	case Failed:
		return "**FAILED**"
	default:
		return "**GAP**"
	}
}

var htmlTemplate = template.Must(template.New("matrix").Funcs(template.FuncMap{
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{.M.Title}}</title>
<style>
body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px 8px;vertical-align:top;text-align:left}
.met{background:#dfd}.failed{background:#fcc}.gap{background:#fec}ul{margin:0;padding-left:1.2em}
</style></head><body>
<h1>{{.M.Title}}</h1>
<p>Scope: {{.M.Scope}}<br>Generated: {{rfc3339 .M.Generated}}<br>
Requirements: {{len .M.Rows}} — met {{.Met}}, failed {{.Failed}}, gap {{.Gap}}</p>
{{if .M.Versions}}<table><tr><th>component</th><th>version</th></tr>
{{range .Keys}}<tr><td>{{.}}</td><td>{{index $.M.Versions .}}</td></tr>
{{end}}</table>{{end}}
<h2>Requirements</h2>
<table><tr><th>id</th><th>requirement</th><th>source</th><th>status</th><th>checks</th></tr>
{{range .M.Rows}}<tr class="{{.Status}}"><td>{{.ID}}</td><td><b>{{.Title}}</b>: {{.Text}}</td><td>{{.Source}}</td><td>{{.Status}}</td>
<td>{{if .Checks}}<ul>{{range .Checks}}<li>{{.Name}} ({{.Outcome}}{{if .Detail}}: {{.Detail}}{{end}})</li>{{end}}</ul>{{else}}none{{end}}</td></tr>
{{end}}</table>
</body></html>
`))

// HTML renders the matrix as one self-contained page; every value is escaped by html/template.
func (m Matrix) HTML() []byte {
	n := m.Counts()
	var b bytes.Buffer
	err := htmlTemplate.Execute(&b, map[string]any{
		"M": m, "Keys": m.versionKeys(), "Met": n[Met], "Failed": n[Failed], "Gap": n[Gap],
	})
	if err != nil {
		// The template is fixed and the data plain strings: a failure here is a programming error.
		panic("evidence: rendering HTML: " + err.Error())
	}
	return b.Bytes()
}

// JSON is the matrix as indented JSON.
func (m Matrix) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("evidence: encoding matrix: %w", err)
	}
	return append(b, '\n'), nil
}
