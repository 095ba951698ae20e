//go:build e2e

package e2e

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

// TestDiscoveryNamesTheOAuthEndpointsWithoutAToken: on both faces, SMART App Launch 2.2's discovery document and
// the CapabilityStatement's rest.security (oauth-uris) answer without a token and name the same authorization and
// token endpoints, with authorization_code and S256 (never plain).
func TestDiscoveryNamesTheOAuthEndpointsWithoutAToken(t *testing.T) {
	evidence.Proves(t, "SMART-01", "SMART-02")
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			r := send(t, "GET", m.base+"/.well-known/smart-configuration", "", nil, "")
			var sc struct {
				AuthorizationEndpoint string   `json:"authorization_endpoint"`
				TokenEndpoint         string   `json:"token_endpoint"`
				GrantTypes            []string `json:"grant_types_supported"`
				CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
				Capabilities          []string `json:"capabilities"`
			}
			if r.status != 200 || json.Unmarshal(r.body, &sc) != nil {
				t.Fatalf("smart-configuration: %d %.300s", r.status, r.body)
			}
			if sc.AuthorizationEndpoint == "" || sc.TokenEndpoint == "" || !slices.Contains(sc.GrantTypes, "authorization_code") ||
				!slices.Contains(sc.CodeChallengeMethods, "S256") || slices.Contains(sc.CodeChallengeMethods, "plain") || len(sc.Capabilities) == 0 {
				t.Errorf("smart-configuration lacks what SMART App Launch 2.2 requires: %+v", sc)
			}

			r = send(t, "GET", m.base+"/metadata", "", nil, "")
			var cs struct {
				ResourceType string
				Rest         []struct {
					Security struct {
						Extension []struct {
							URL       string
							Extension []struct{ URL, ValueURI string }
						}
					}
				}
			}
			if r.status != 200 || json.Unmarshal(r.body, &cs) != nil || cs.ResourceType != "CapabilityStatement" || len(cs.Rest) == 0 {
				t.Fatalf("metadata: %d %.300s", r.status, r.body)
			}
			uris := map[string]string{}
			for _, e := range cs.Rest[0].Security.Extension {
				if e.URL == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris" {
					for _, u := range e.Extension {
						uris[u.URL] = u.ValueURI
					}
				}
			}
			if uris["authorize"] != sc.AuthorizationEndpoint || uris["token"] != sc.TokenEndpoint {
				t.Errorf("rest.security oauth-uris %v do not name the discovery endpoints (%s, %s)", uris, sc.AuthorizationEndpoint, sc.TokenEndpoint)
			}
		})
	}
}
