//go:build e2e

package adversarial

import (
	"math/rand/v2"
	"regexp"
	"testing"
)

// containsWord must answer exactly as the regexp `\b` + QuoteMeta(s) + `\b` it replaces.
func TestContainsWordAgreesWithTheRegexp(t *testing.T) {
	cases := [][2]string{
		{`{"id":"member-01"}`, "member-01"}, {`member-012`, "member-01"}, {`xmember-01`, "member-01"},
		{`-member-01-`, "-member-01"}, {`a-b`, "-b"}, {`ab`, "b"}, {`member-01 member-01x`, "member-01"},
		{`foo member-01x member-01`, "member-01"}, {`(555) 010-0101`, "(555) 010-0101"}, {`x(555)`, "(555)"},
	}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := "ab-_ 1(."
	for range 5000 {
		text, s := make([]byte, r.IntN(12)), make([]byte, 1+r.IntN(3))
		for i := range text {
			text[i] = alphabet[r.IntN(len(alphabet))]
		}
		for i := range s {
			s[i] = alphabet[r.IntN(len(alphabet))]
		}
		cases = append(cases, [2]string{string(text), string(s)})
	}
	for _, c := range cases {
		want := regexp.MustCompile(`\b` + regexp.QuoteMeta(c[1]) + `\b`).MatchString(c[0])
		if got := containsWord(c[0], c[1]); got != want {
			t.Fatalf("containsWord(%q, %q) = %v, the regexp says %v", c[0], c[1], got, want)
		}
	}
}
