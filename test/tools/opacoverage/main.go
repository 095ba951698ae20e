// Command opacoverage reads `opa test --coverage --format=json` on stdin and fails when the policy files
// (not their tests) are covered below -min percent, naming the uncovered lines.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

func main() {
	min := flag.Float64("min", 100, "minimum coverage percent of each policy file")
	flag.Parse()
	var report struct {
		Files map[string]struct {
			NotCovered []struct {
				Start struct{ Row int } `json:"start"`
			} `json:"not_covered"`
			Coverage float64 `json:"coverage"`
		} `json:"files"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&report); err != nil {
		fmt.Fprintln(os.Stderr, "opacoverage: cannot read opa coverage JSON:", err)
		os.Exit(2)
	}
	names := make([]string, 0, len(report.Files))
	for n := range report.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	failed := false
	for _, n := range names {
		if strings.HasSuffix(n, "_test.rego") {
			continue
		}
		f := report.Files[n]
		var rows []int
		for _, nc := range f.NotCovered {
			rows = append(rows, nc.Start.Row)
		}
		fmt.Printf("%-40s %6.1f%%\n", n, f.Coverage)
		if f.Coverage < *min {
			failed = true
			fmt.Printf("  below %.0f%%; lines not covered by any test: %v\n", *min, rows)
		}
	}
	if failed {
		os.Exit(1)
	}
}
