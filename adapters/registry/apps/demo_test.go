package apps_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/adapters/registry/file"
	"github.com/fhirwall/fhirwall/adapters/registry/keycloak"
	"github.com/fhirwall/fhirwall/config"
)

// TestStackDemoAppsPassThePolicyOnALaterUpdate: the stack's demo apps, config/clients.yaml imported
// (postgres.Import, which the policy does not judge) and then adopted from the realm file's clients
// (keycloak.Adopt), pass the registration policy once a contact is added, as a reviewer's first update
// through the admin API must: their scopes suit their launches, their keys are inline, their redirect URIs
// loopback ones, their names plain.
func TestStackDemoAppsPassThePolicyOnALaterUpdate(t *testing.T) {
	cfg, err := config.LoadFor("../../../config/fhirwall.yaml", config.ForXDS)
	if err != nil {
		t.Fatal(err)
	}
	offered := cfg.OfferedScopes()
	raw, err := os.ReadFile("../../../config/keycloak/fhirwall-realm.json")
	if err != nil {
		t.Fatal(err)
	}
	var realm struct {
		Clients []keycloak.Client `json:"clients"`
	}
	if err := json.Unmarshal(raw, &realm); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../../config/clients.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range offered {
		names = append(names, name)
	}
	parsed, err := file.Parse(data, names)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, kc := range realm.Clients {
		fc, ok := parsed[kc.ClientID]
		if !ok {
			continue // the realm's own clients (registry, portal) are not the registry's
		}
		checked++
		state := apps.StateActive
		if !fc.Active {
			state = apps.StateSuspended
		}
		// As postgres.Import registers it.
		imported := apps.App{ClientID: fc.ID, Name: fc.Name, RequestedAPIs: fc.APIs, RequestedScopes: fc.Scopes,
			ApprovedAPIs: fc.APIs, ApprovedScopes: fc.Scopes, Environment: apps.Production, State: state, Tier: fc.Tier,
			ProviderOrg: fc.Org, NotifyHosts: fc.NotifyHosts, Owner: "import"}
		updated := keycloak.Adopt(imported, kc)
		updated.Contacts = []apps.Contact{{Email: "ops@fhirwall.test"}}
		if err := apps.ValidateRegistration(updated, offered); err != nil {
			t.Errorf("%s: a later update of the adopted demo app is refused:\n%v", fc.ID, err)
		}
	}
	if checked != 6 {
		t.Errorf("checked %d demo apps, want the six of clients.yaml that the realm has", checked)
	}
}
