package config

import (
	"strings"
	"testing"
)

func TestCORSOriginsMustBeOriginsExactlyAsBrowsersSendThem(t *testing.T) {
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://app.example", true},
		{"http://127.0.0.1:9300", true},
		{"*", false},
		{"https://app.example/", false},
		{"https://app.example/path", false},
		{"app.example", false},
		{"https://*.example", false},
		{"null", false},
	} {
		errs := CORS{AllowedOrigins: []string{tc.origin}}.validate(0)
		if (len(errs) == 0) != tc.ok {
			t.Errorf("%q: ok=%v, errors %v", tc.origin, tc.ok, errs)
		}
		if !tc.ok && len(errs) > 0 && !strings.Contains(errs[0].Error(), "apis[0].cors.allowed_origins[0]") {
			t.Errorf("%q: error does not name the key: %v", tc.origin, errs[0])
		}
	}
}

func TestExampleConfigAdmitsTheDemoBrowserApp(t *testing.T) {
	c, err := Load("fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range c.APIs {
		if a.Name == "patient-access" && len(a.CORS.AllowedOrigins) == 0 {
			t.Fatal("patient-access admits no browser origin")
		}
	}
}
