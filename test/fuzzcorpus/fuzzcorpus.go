// Package fuzzcorpus reads the inputs of Go fuzz corpus files (testdata/fuzz/<Target>/*), so a test can run
// one target's findings through another check.
package fuzzcorpus

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Bytes returns the []byte inputs of every corpus file matching glob (e.g. testdata/fuzz/FuzzApply/*).
func Bytes(tb testing.TB, glob string) [][]byte {
	tb.Helper()
	files, err := filepath.Glob(glob)
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if q, ok := strings.CutPrefix(line, "[]byte("); ok {
				if s, err := strconv.Unquote(strings.TrimSuffix(q, ")")); err == nil {
					out = append(out, []byte(s))
				}
			}
		}
	}
	return out
}
