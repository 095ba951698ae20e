package decision

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/fhir"
)

func TestRouteFindsTheAPIAndRefusesAbnormalPaths(t *testing.T) {
	apis := []API{{Name: "patient-access", Prefix: "/patient-access/fhir"}}
	a, rest, err := Route(apis, "/patient-access/fhir/Patient/member-01")
	if err != nil || a.Name != "patient-access" || rest != "/Patient/member-01" {
		t.Fatalf("got %v %q %v", a, rest, err)
	}
	for _, p := range []string{
		"/patient-access/fhirx/Patient", "/provider-access/fhir/Patient", "/patient-access/fhir/../x",
		"/patient-access/fhir//Patient", "/patient-access/fhir/Patient%2Fmember-02", "/patient-access/fhir/%2e%2e/x",
		"patient-access/fhir/Patient", "/patient-access/fhir/./Patient",
	} {
		if _, _, err := Route(apis, p); !errors.Is(err, ErrNoAPI) {
			t.Errorf("%s: want ErrNoAPI, got %v", p, err)
		}
	}
}

func FuzzRoute(f *testing.F) {
	apis := []API{{Name: "patient-access", Prefix: "/patient-access/fhir"}}
	f.Add("/patient-access/fhir/Patient/1")
	f.Add("/patient-access/fhir/%2e%2e/admin")
	f.Fuzz(func(t *testing.T, p string) {
		a, rest, err := Route(apis, p)
		if err != nil {
			return
		}
		if a.Prefix+rest != p || hasDotSegment(rest) {
			t.Fatalf("%q routed to %q + %q", p, a.Prefix, rest)
		}
	})
}

func TestLinksNameTheBaseTheClientUsed(t *testing.T) {
	page := []byte(`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"http://127.0.0.1:8090/fhir?_getpages=p1&_getpagesoffset=20"}]}`)
	for _, tc := range []struct{ name, inputBase, want string }{
		{"through Envoy: public_url", "", "https://api.example/patient-access/fhir?_getpages=p1&_getpagesoffset=20"},
		{"standalone: the proxy's own base", "http://127.0.0.1:8080/patient-access/fhir", "http://127.0.0.1:8080/patient-access/fhir?_getpages=p1&_getpagesoffset=20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decisionFor("member-01")
			d.Input.PublicBase = tc.inputBase
			e, err := newEnforcingCore().EnforceResponse(context.Background(), d, 200, "application/fhir+json", page)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(e.Body), `"url":"`+tc.want+`"`) {
				t.Errorf("next link not rewritten to %s: %s", tc.want, e.Body)
			}
		})
	}
}

func TestBodyLimitIsTheOperationsOwnOnlyAtItsPath(t *testing.T) {
	a := API{Name: "payer-to-payer", Prefix: "/payer-to-payer/fhir", BodyLimits: map[string]int{"/Group/$bulk-member-match": 15 << 20}}
	for path, want := range map[string]int{
		"/Group/$bulk-member-match":   15 << 20,
		"/Patient/$member-match":      fhir.MaxBodyBytes,
		"/Group/x/$bulk-member-match": fhir.MaxBodyBytes,
		"":                            fhir.MaxBodyBytes,
	} {
		if got := a.BodyLimit(path); got != want {
			t.Errorf("%q: %d, want %d", path, got, want)
		}
	}
}
