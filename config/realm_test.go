package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestTheRealmAcceptsALaunchForEveryFHIRBaseTheConfigServes: Keycloak refuses a SMART launch whose aud is
// not in the realm attribute fhirwall.smart.fhirBases (config/keycloak/clientauth); every base the example
// config serves, through Envoy (public_url) and standalone (proxy.public_url), must be there, or apps of
// that API could not launch. Changing an API or a public URL means changing the realm file too.
func TestTheRealmAcceptsALaunchForEveryFHIRBaseTheConfigServes(t *testing.T) {
	cfg, err := Load("fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join("keycloak", "fhirwall-realm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var realm struct {
		Attributes map[string]string `json:"attributes"`
	}
	if err := json.Unmarshal(raw, &realm); err != nil {
		t.Fatal(err)
	}
	bases := strings.Fields(realm.Attributes["fhirwall.smart.fhirBases"])
	if len(bases) == 0 {
		t.Fatal("the realm names no FHIR base: every launch would be refused")
	}
	for _, api := range cfg.APIs {
		for _, public := range []string{cfg.PublicURL, cfg.Proxy.PublicURL} {
			if base := public + api.Prefix; !slices.Contains(bases, base) {
				t.Errorf("%s is served but the realm refuses launches for it (fhirwall.smart.fhirBases: %v)", base, bases)
			}
		}
	}
}

// TestMemberAppsCannotObtainPriorAuthorizationScopes: Prior Authorization is for providers (CMS-0057-F);
// a client that launches for a member (it may ask for launch/patient) is offered no scope that $submit,
// $inquire or a Subscription would accept, so the IdP never issues one to a member's app.
func TestMemberAppsCannotObtainPriorAuthorizationScopes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("keycloak", "fhirwall-realm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var realm struct {
		Clients []struct {
			ClientID             string   `json:"clientId"`
			DefaultClientScopes  []string `json:"defaultClientScopes"`
			OptionalClientScopes []string `json:"optionalClientScopes"`
		} `json:"clients"`
	}
	if err := json.Unmarshal(raw, &realm); err != nil {
		t.Fatal(err)
	}
	members := 0
	for _, c := range realm.Clients {
		scopes := append(slices.Clone(c.DefaultClientScopes), c.OptionalClientScopes...)
		if !slices.Contains(scopes, "launch/patient") {
			continue
		}
		members++
		for _, s := range scopes {
			if strings.HasPrefix(s, "user/") || strings.HasPrefix(s, "system/") || strings.Contains(s, "/Claim.") || strings.Contains(s, "/Subscription.") {
				t.Errorf("member app %s may obtain %s", c.ClientID, s)
			}
		}
	}
	if members == 0 {
		t.Fatal("no member app in the realm: the test checks nothing")
	}
}
