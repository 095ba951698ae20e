package main

import (
	"embed"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Templates are small, trimmed copies of IG examples (US Core 6.1.0, CARIN BB 2.0.0, PDex 2.0.0) with
// ${NAME} placeholders. A string value that is exactly "${NAME}" is replaced by the Go value bound to
// NAME (any JSON-able type: number, object, array); a placeholder inside a longer string is replaced
// by its string form. The top-level "_source" key names the IG example the template was cut from and
// is removed from the output.
//
//go:embed testdata/templates/*.json
var templateFS embed.FS

var placeholderRe = regexp.MustCompile(`\$\{([A-Z0-9_]+)\}`)

type vars map[string]any

// fill instantiates template name (file name without .json) with v. Every placeholder must be bound
// and every binding must be used: both mistakes are errors, so a typo cannot leave "${X}" in the data.
func fill(name string, v vars) (map[string]any, error) {
	raw, err := templateFS.ReadFile("testdata/templates/" + name + ".json")
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	delete(doc, "_source")
	used := map[string]bool{}
	out, err := substitute(doc, v, used)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var unused []string
	for k := range v {
		if !used[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		return nil, fmt.Errorf("template %s: unused bindings %s", name, strings.Join(unused, ", "))
	}
	return out.(map[string]any), nil
}

func substitute(node any, v vars, used map[string]bool) (any, error) {
	switch n := node.(type) {
	case map[string]any:
		for k, child := range n {
			c, err := substitute(child, v, used)
			if err != nil {
				return nil, err
			}
			n[k] = c
		}
		return n, nil
	case []any:
		for i, child := range n {
			c, err := substitute(child, v, used)
			if err != nil {
				return nil, err
			}
			n[i] = c
		}
		return n, nil
	case string:
		if m := placeholderRe.FindStringSubmatch(n); m != nil && m[0] == n {
			val, ok := v[m[1]]
			if !ok {
				return nil, fmt.Errorf("placeholder ${%s} not bound", m[1])
			}
			used[m[1]] = true
			return normalize(val)
		}
		var missing error
		s := placeholderRe.ReplaceAllStringFunc(n, func(p string) string {
			key := p[2 : len(p)-1]
			val, ok := v[key]
			if !ok {
				missing = fmt.Errorf("placeholder ${%s} not bound", key)
				return p
			}
			used[key] = true
			return fmt.Sprint(val)
		})
		return s, missing
	default:
		return n, nil
	}
}

// normalize turns a Go value into the generic JSON tree (map[string]any, []any, float64, string, bool)
// so that later walks (reference checks, tests) see one representation.
func normalize(val any) (any, error) {
	switch val.(type) {
	case string, bool, float64, nil:
		return val, nil
	}
	b, err := json.Marshal(val)
	if err != nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}
