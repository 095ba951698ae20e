package gateway

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizePathLikeEnvoy(t *testing.T) {
	cases := map[string]string{
		"/patient-access/fhir/Patient/member-01":          "/patient-access/fhir/Patient/member-01",
		"/patient-access/fhir/Patient/x/../member-02":     "/patient-access/fhir/Patient/member-02",
		"/patient-access/fhir/Patient/%2e%2e/Observation": "/patient-access/fhir/Observation",
		"/patient-access//fhir///Patient":                 "/patient-access/fhir/Patient",
		"/patient-access/fhir/./Patient/":                 "/patient-access/fhir/Patient/",
		"/patient-access/fhir/%50atient":                  "/patient-access/fhir/Patient",
		"/../../etc/passwd":                               "/etc/passwd",
		"/patient-access/fhir/Patient/a%3Bb":              "/patient-access/fhir/Patient/a%3Bb", // reserved: left encoded
	}
	for in, want := range cases {
		got, err := normalizePath(in)
		if err != nil || got != want {
			t.Errorf("%s: got %q %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"/patient-access/fhir/Patient%2Fmember-02", "/patient-access/fhir/Patient%5cx", "/a%2f"} {
		if _, err := normalizePath(in); !errors.Is(err, errEscapedSlash) {
			t.Errorf("%s: want errEscapedSlash, got %v", in, err)
		}
	}
}

func FuzzNormalizePath(f *testing.F) {
	f.Add("/patient-access/fhir/Patient/x/../y")
	f.Add("/%2e%2e//%2E./a")
	f.Fuzz(func(t *testing.T, in string) {
		out, err := normalizePath(in)
		if err != nil {
			return
		}
		if strings.Contains(out, "//") || strings.Contains(out, "/../") || strings.Contains(out, "/./") || strings.HasSuffix(out, "/..") {
			t.Fatalf("%q normalised to %q", in, out)
		}
		if again, _ := normalizePath(out); again != out && !strings.Contains(out, "%") {
			t.Fatalf("not idempotent: %q → %q → %q", in, out, again)
		}
	})
}
