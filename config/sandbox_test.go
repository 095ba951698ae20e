package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestExampleSandboxesInheritTheirBaseAPI(t *testing.T) {
	c, err := Load("fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{"patient-access", "provider-access"} {
		s, ok := c.Sandbox(base)
		if !ok || s.Name != base+SandboxSuffix || s.Prefix != "/"+base+"-sandbox/fhir" {
			t.Fatalf("sandbox of %s: %+v %v", base, s.Name, ok)
		}
		var b API
		for _, a := range c.APIs {
			if a.Name == base {
				b = a
			}
		}
		if !reflect.DeepEqual(s.Resources, b.Resources) || !reflect.DeepEqual(s.SMART, b.SMART) ||
			!reflect.DeepEqual(s.Operations, b.Operations) || !reflect.DeepEqual(s.Interactions, b.Interactions) {
			t.Errorf("%s does not serve what %s serves", s.Name, base)
		}
		if c.PolicyData()["apis"].(map[string]any)[s.Name].(map[string]any)["sandbox_of"] != base {
			t.Errorf("the policies are not told %s is %s's sandbox", s.Name, base)
		}
	}
}

func TestSandboxMisconfigurationsAreRefused(t *testing.T) {
	base := func() *Config {
		c := validConfig(t)
		c.APIs = []API{{Name: "patient-access", Prefix: "/pa"}, {Name: "provider-access", Prefix: "/pv"}}
		return c
	}
	for _, tc := range []struct {
		name string
		api  API
		want string
	}{
		{"base not configured", API{Name: "provider-access-sandbox", Prefix: "/s", SandboxOf: "payer-to-payer"}, "not one of apis[].name"},
		{"named otherwise", API{Name: "provider-access-sandbox", Prefix: "/s", SandboxOf: "patient-access"}, `must be named "patient-access-sandbox"`},
		{"sandbox without sandbox_of", API{Name: "patient-access-sandbox", Prefix: "/s"}, "needs sandbox_of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			c.APIs = append(c.APIs, tc.api)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
	c := base()
	c.APIs = append(c.APIs, API{Name: "patient-access-sandbox", Prefix: "/s", SandboxOf: "patient-access"},
		API{Name: "patient-access-sandbox-sandbox", Prefix: "/ss", SandboxOf: "patient-access-sandbox"})
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "is itself a sandbox") {
		t.Fatalf("a sandbox of a sandbox: %v", err)
	}
	c = base()
	c.APIs = append(c.APIs, API{Name: "patient-access-sandbox", Prefix: "/s", SandboxOf: "patient-access"})
	if err := c.Validate(); err != nil {
		t.Fatalf("a good sandbox refused: %v", err)
	}
}

// validConfig is the example configuration, which validates; tests change what they are about.
func validConfig(t *testing.T) *Config {
	t.Helper()
	c, err := Load("fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Notices = nil
	return c
}
