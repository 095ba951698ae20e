package capability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/capability"
	"github.com/fhirwall/fhirwall/internal/capability/capabilitytest"
)

var update = flag.Bool("update", false, "rewrite testdata golden files from the current generator")

// keycloakDiscovery is the part of Keycloak 26's discovery document for the demo realm that matters here.
const keycloakDiscovery = `{
  "issuer": "http://127.0.0.1:8180/realms/fhirwall",
  "authorization_endpoint": "http://127.0.0.1:8180/realms/fhirwall/protocol/openid-connect/auth",
  "token_endpoint": "http://127.0.0.1:8180/realms/fhirwall/protocol/openid-connect/token",
  "jwks_uri": "http://127.0.0.1:8180/realms/fhirwall/protocol/openid-connect/certs",
  "revocation_endpoint": "http://127.0.0.1:8180/realms/fhirwall/protocol/openid-connect/revoke",
  "introspection_endpoint": "http://127.0.0.1:8180/realms/fhirwall/protocol/openid-connect/token/introspect",
  "grant_types_supported": ["authorization_code", "client_credentials", "implicit", "refresh_token", "password"],
  "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "client_secret_post", "tls_client_auth", "client_secret_jwt"],
  "code_challenge_methods_supported": ["plain", "S256"]
}`

// exampleAPIs are config/fhirwall.yaml's APIs as Envoy's face serves them.
func exampleAPIs(t *testing.T) []capability.API {
	t.Helper()
	apis, _ := capabilitytest.Example(t, false)
	return apis
}

// fakeDiscovery answers with a fixed document or error and counts calls; for handler tests only.
type fakeDiscovery struct {
	ep    *capability.Endpoints
	err   error
	calls atomic.Int32
}

func (f *fakeDiscovery) Discover(_ context.Context, issuer string) (*capability.Endpoints, error) {
	f.calls.Add(1)
	return f.ep, f.err
}

func keycloak(t *testing.T) *capability.Endpoints {
	t.Helper()
	var ep capability.Endpoints
	if err := json.Unmarshal([]byte(keycloakDiscovery), &ep); err != nil {
		t.Fatal(err)
	}
	return &ep
}

func newHandler(t *testing.T, apis []capability.API, d capability.Discovery) *capability.Handler {
	t.Helper()
	h, err := capability.New(apis, d, capability.Options{Date: "2026-01-01"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(t *testing.T, h http.Handler, path string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestExampleConfigDocumentsMatchGoldenFiles(t *testing.T) {
	h := newHandler(t, exampleAPIs(t), &fakeDiscovery{ep: keycloak(t)})
	for path, golden := range map[string]string{
		"/patient-access/fhir/metadata":                         "patient-access.metadata.json",
		"/patient-access/fhir/.well-known/smart-configuration":  "patient-access.smart-configuration.json",
		"/provider-access/fhir/metadata":                        "provider-access.metadata.json",
		"/provider-access/fhir/.well-known/smart-configuration": "provider-access.smart-configuration.json",
		"/prior-auth/fhir/metadata":                             "prior-auth.metadata.json",
		"/prior-auth/fhir/.well-known/smart-configuration":      "prior-auth.smart-configuration.json",
	} {
		w := get(t, h, path, nil)
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		file := filepath.Join("testdata", golden)
		if *update {
			if err := os.WriteFile(file, w.Body.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (run go test ./internal/capability -update)", err)
		}
		if !bytes.Equal(w.Body.Bytes(), want) {
			t.Errorf("%s differs from %s; run go test ./internal/capability -update and review the diff\n%s", path, file, w.Body)
		}
	}
}

// r4Types is every concrete R4 resource type (hl7.fhir.r4.core 4.0.1), kept apart from the package's own
// table so a typo there cannot hide here.
var r4Types = strings.Fields(`Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse
AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry
ChargeItem ChargeItemDefinition Claim ClaimResponse ClinicalImpression CodeSystem Communication CommunicationRequest
CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement
DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest
EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable ExampleScenario ExplanationOfBenefit
FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice Library Linkage List Location
Measure MeasureReport Media Medication MedicationAdministration MedicationDispense MedicationKnowledge MedicationRequest
MedicationStatement MedicinalProduct MedicinalProductAuthorization MedicinalProductContraindication
MedicinalProductIndication MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect MessageDefinition MessageHeader
MolecularSequence NamingSystem NutritionOrder Observation ObservationDefinition OperationDefinition OperationOutcome
Organization OrganizationAffiliation Parameters Patient PaymentNotice PaymentReconciliation Person PlanDefinition
Practitioner PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson RequestGroup
ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment RiskEvidenceSynthesis Schedule
SearchParameter ServiceRequest Slot Specimen SpecimenDefinition StructureDefinition StructureMap Subscription Substance
SubstanceNucleicAcid SubstancePolymer SubstanceProtein SubstanceReferenceInformation SubstanceSourceMaterial
SubstanceSpecification SupplyDelivery SupplyRequest Task TerminologyCapabilities TestReport TestScript ValueSet
VerificationResult VisionPrescription`)

// TestPriorAuthCapabilityStatementNamesThePASOperationsAndRestHookSubscriptions: PAS 2.0.1's
// IntermediaryCapabilities: Claim with $submit and $inquire by their PAS canonicals, Subscription created,
// read and deleted (rest-hook only, said in its documentation), PAS 2.0.1 as the guide, SMART security; and
// nothing read or searched.
func TestPriorAuthCapabilityStatementNamesThePASOperationsAndRestHookSubscriptions(t *testing.T) {
	h := newHandler(t, exampleAPIs(t), &fakeDiscovery{ep: keycloak(t)})
	var cs struct {
		ImplementationGuide []string
		Rest                []struct {
			Security struct {
				Service []struct{ Coding []struct{ Code string } }
			}
			Resource []struct {
				Type             string
				SupportedProfile []string
				Interaction      []struct{ Code string }
				Operation        []struct{ Name, Definition string }
				Documentation    string
			}
		}
	}
	w := get(t, h, "/prior-auth/fhir/metadata", nil)
	if err := json.Unmarshal(w.Body.Bytes(), &cs); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cs.ImplementationGuide, []string{"http://hl7.org/fhir/us/davinci-pas/ImplementationGuide/hl7.fhir.us.davinci-pas|2.0.1"}) {
		t.Errorf("implementationGuide %v", cs.ImplementationGuide)
	}
	if len(cs.Rest) != 1 || cs.Rest[0].Security.Service[0].Coding[0].Code != "SMART-on-FHIR" {
		t.Fatalf("rest %+v", cs.Rest)
	}
	got := map[string][]string{}
	for _, r := range cs.Rest[0].Resource {
		for _, i := range r.Interaction {
			got[r.Type] = append(got[r.Type], i.Code)
		}
		for _, o := range r.Operation {
			got[r.Type] = append(got[r.Type], "$"+o.Name+" "+o.Definition)
		}
		if r.Type == "Subscription" && !strings.Contains(r.Documentation, "rest-hook channels only") {
			t.Errorf("Subscription documentation %q does not say only rest-hook is served", r.Documentation)
		}
		if r.Type == "Claim" && !slices.Contains(r.SupportedProfile, "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-claim") {
			t.Errorf("Claim supportedProfile %v", r.SupportedProfile)
		}
	}
	want := map[string][]string{
		"Subscription": {"read", "delete", "create"},
		"Claim": {"$submit http://hl7.org/fhir/us/davinci-pas/OperationDefinition/Claim-submit",
			"$inquire http://hl7.org/fhir/us/davinci-pas/OperationDefinition/Claim-inquiry"},
	}
	if len(got) != len(want) || !slices.Equal(got["Subscription"], want["Subscription"]) || !slices.Equal(got["Claim"], want["Claim"]) {
		t.Errorf("resources %v, want %v", got, want)
	}
}

func TestPatientAccessCapabilityStatementIsReadOnlyAndWellFormed(t *testing.T) {
	h := newHandler(t, exampleAPIs(t), &fakeDiscovery{ep: keycloak(t)})
	w := get(t, h, "/patient-access/fhir/metadata", nil)
	if ct := w.Header().Get("Content-Type"); ct != "application/fhir+json" {
		t.Fatalf("content type %q", ct)
	}
	var cs struct {
		ResourceType, Kind, FHIRVersion, Status, Date string
		Format                                        []string
		Implementation                                struct{ URL string }
		Rest                                          []struct {
			Mode        string
			Interaction []struct{ Code string }
			Security    struct {
				Service []struct {
					Coding []struct{ System, Code string }
				}
				Extension []struct {
					URL       string
					Extension []struct{ URL, ValueURI string }
				}
			}
			Resource []struct {
				Type        string
				Interaction []struct{ Code string }
				SearchParam []struct{ Name, Type, Definition string }
			}
		}
	}
	if err := json.Unmarshal(w.Body.Bytes(), &cs); err != nil {
		t.Fatal(err)
	}
	if cs.ResourceType != "CapabilityStatement" || cs.Kind != "instance" || cs.FHIRVersion != "4.0.1" || cs.Status != "active" ||
		cs.Date == "" || !slices.Equal(cs.Format, []string{"json"}) ||
		cs.Implementation.URL != "http://127.0.0.1:10000/patient-access/fhir" {
		t.Fatalf("header elements: %+v", cs)
	}
	if len(cs.Rest) != 1 || cs.Rest[0].Mode != "server" || len(cs.Rest[0].Interaction) != 0 {
		t.Fatalf("rest: want one server entry without system interactions, got %+v", cs.Rest)
	}
	r := cs.Rest[0]
	if len(r.Security.Service) != 1 || r.Security.Service[0].Coding[0].Code != "SMART-on-FHIR" ||
		r.Security.Service[0].Coding[0].System != "http://terminology.hl7.org/CodeSystem/restful-security-service" {
		t.Fatalf("security.service: %+v", r.Security.Service)
	}
	uris := map[string]string{}
	for _, e := range r.Security.Extension {
		if e.URL == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris" {
			for _, x := range e.Extension {
				uris[x.URL] = x.ValueURI
			}
		}
	}
	if !strings.HasSuffix(uris["authorize"], "/openid-connect/auth") || !strings.HasSuffix(uris["token"], "/openid-connect/token") {
		t.Fatalf("oauth-uris: %v", uris)
	}
	if len(r.Resource) == 0 {
		t.Fatal("no resources")
	}
	for _, res := range r.Resource {
		if !slices.Contains(r4Types, res.Type) {
			t.Errorf("%s is not an R4 resource type", res.Type)
		}
		for _, i := range res.Interaction {
			if !slices.Contains([]string{"read", "vread", "history-instance", "search-type"}, i.Code) {
				t.Errorf("%s: %s on a read-only API", res.Type, i.Code)
			}
		}
		for _, p := range res.SearchParam {
			if p.Name == "" || p.Definition == "" || !slices.Contains([]string{"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}, p.Type) {
				t.Errorf("%s: search param %+v", res.Type, p)
			}
		}
	}
}

func TestSMARTConfigurationFollowsTheIssuerAndNeverOffersPlainPKCE(t *testing.T) {
	ep := keycloak(t)
	ep.TokenEndpointAuthMethodsSupported = []string{"client_secret_basic"} // an IdP without private_key_jwt
	apis := exampleAPIs(t)
	s := &apis[0].SMART
	s.Capabilities = append(s.Capabilities, "client-confidential-symmetric")
	s.TokenEndpointAuthMethods = []string{"private_key_jwt", "client_secret_basic"}
	h := newHandler(t, apis, &fakeDiscovery{ep: ep})
	w := get(t, h, "/patient-access/fhir/.well-known/smart-configuration", nil)
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", w.Code, w.Header().Get("Content-Type"))
	}
	var sc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &sc); err != nil {
		t.Fatal(err)
	}
	strs := func(k string) []string {
		var out []string
		for _, v := range sc[k].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	if got := strs("code_challenge_methods_supported"); !slices.Equal(got, []string{"S256"}) {
		t.Errorf("code_challenge_methods_supported %v", got)
	}
	if got := strs("token_endpoint_auth_methods_supported"); !slices.Equal(got, []string{"client_secret_basic"}) {
		t.Errorf("token_endpoint_auth_methods_supported %v: must be what the IdP supports", got)
	}
	if slices.Contains(strs("capabilities"), "client-confidential-asymmetric") {
		t.Error("claims client-confidential-asymmetric although the IdP has no private_key_jwt")
	}
	if got := strs("grant_types_supported"); !slices.Equal(got, []string{"authorization_code", "client_credentials"}) {
		t.Errorf("grant_types_supported %v", got)
	}
	if sc["issuer"] != ep.Issuer || sc["jwks_uri"] != ep.JWKSURI {
		t.Errorf("sso-openid-connect without issuer/jwks_uri: %v %v", sc["issuer"], sc["jwks_uri"])
	}
	if !slices.Contains(strs("scopes_supported"), "patient/ExplanationOfBenefit.rs") {
		t.Errorf("scopes_supported lacks the per-type scope: %v", strs("scopes_supported"))
	}
}

func TestHandlerAnswersOnlyItsTwoPathsPerAPI(t *testing.T) {
	h := newHandler(t, exampleAPIs(t), &fakeDiscovery{ep: keycloak(t)})
	for _, p := range []string{"/metadata", "/patient-access/fhir", "/patient-access/fhir/Patient", "/patient-access/fhir/metadata/x",
		"/patient-access/fhirmetadata", "/patient-access/fhir/.well-known/openid-configuration", "/payer-exchange/fhir/metadata",
		"/patient-access/fhir/%6detadata"} {
		if w := get(t, h, p, nil); w.Code != 404 || !strings.Contains(w.Body.String(), "OperationOutcome") {
			t.Errorf("%s: want 404 OperationOutcome, got %d %s", p, w.Code, w.Body)
		}
	}
	req := httptest.NewRequest("POST", "/patient-access/fhir/metadata", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
}

func TestIssuerDiscoveryFailureIsA503AndNoDocument(t *testing.T) {
	d := &fakeDiscovery{err: capability.ErrDiscovery}
	h := newHandler(t, exampleAPIs(t), d)
	for _, p := range []string{"/patient-access/fhir/metadata", "/patient-access/fhir/.well-known/smart-configuration"} {
		w := get(t, h, p, nil)
		if w.Code != 503 || w.Header().Get("Content-Type") != "application/fhir+json" || !strings.Contains(w.Body.String(), `"transient"`) {
			t.Fatalf("%s: want 503 OperationOutcome, got %d %s", p, w.Code, w.Body)
		}
	}
	// Recovered: served, and rendered from the new document.
	d.ep, d.err = keycloak(t), nil
	if w := get(t, h, "/patient-access/fhir/metadata", nil); w.Code != 200 {
		t.Fatalf("after recovery: %d", w.Code)
	}
}

func TestUnchangedDocumentIsServedWithTheSameETagAnd304(t *testing.T) {
	h := newHandler(t, exampleAPIs(t), &fakeDiscovery{ep: keycloak(t)})
	w1 := get(t, h, "/patient-access/fhir/metadata", nil)
	etag := w1.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	w2 := get(t, h, "/patient-access/fhir/metadata", http.Header{"If-None-Match": {etag}})
	if w2.Code != http.StatusNotModified || w2.Body.Len() != 0 {
		t.Fatalf("If-None-Match: %d", w2.Code)
	}
}

func TestOverridesNeedNoIssuer(t *testing.T) {
	apis := exampleAPIs(t)
	s := &apis[0].SMART
	s.AuthorizationEndpoint, s.TokenEndpoint, s.JWKSURI = "https://idp.example/authorize", "https://idp.example/token", "https://idp.example/jwks"
	d := &fakeDiscovery{err: errors.New("must not be asked")}
	h := newHandler(t, apis, d)
	w := get(t, h, "/patient-access/fhir/.well-known/smart-configuration", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"token_endpoint": "https://idp.example/token"`) || d.calls.Load() != 0 {
		t.Fatalf("%d %s (discovery calls %d)", w.Code, w.Body, d.calls.Load())
	}
}

func TestBadConfigurationIsRefusedWithEveryProblem(t *testing.T) {
	apis := exampleAPIs(t)
	a := &apis[0]
	a.Resources = append(a.Resources,
		capability.Resource{Type: "Patients"},
		capability.Resource{Type: "Observation", SearchParams: []string{"_include"}},
		capability.Resource{Type: "Claim", SearchParams: []string{"no-such-param"}, Include: []string{"Patient:x"}})
	a.SMART.Capabilities = append(a.SMART.Capabilities, "launch-magic")
	a.SMART.GrantTypes = []string{"password"}
	_, err := capability.New(apis, &fakeDiscovery{}, capability.Options{Date: "2026-01-01"}, slog.New(slog.DiscardHandler))
	for _, want := range []string{`"Patients" is not an R4 resource type`, "Observation listed twice", "include/revinclude",
		`unknown search parameter "no-such-param"`, `include "Patient:x"`, "launch-magic", `grant type "password"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
	if !errors.Is(err, capability.ErrInvalid) {
		t.Errorf("not ErrInvalid: %v", err)
	}
}

func TestOIDCDiscoveryCachesChecksTheIssuerAndFailsClosed(t *testing.T) {
	var calls atomic.Int32
	var body atomic.Value
	body.Store(keycloakDiscovery)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path != "/realms/fhirwall/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, strings.ReplaceAll(body.Load().(string), "http://127.0.0.1:8180", "http://"+r.Host))
	}))
	defer idp.Close()
	now := time.Unix(0, 0)
	d := &capability.OIDCDiscovery{Client: idp.Client(), TTL: time.Minute, RetryAfter: 5 * time.Second, Now: func() time.Time { return now }}
	issuer := idp.URL + "/realms/fhirwall"
	ep1, err := d.Discover(context.Background(), issuer)
	if err != nil || ep1.TokenEndpoint != issuer+"/protocol/openid-connect/token" {
		t.Fatalf("%+v %v", ep1, err)
	}
	ep2, _ := d.Discover(context.Background(), issuer)
	if ep2 != ep1 || calls.Load() != 1 {
		t.Fatalf("not cached: %d calls", calls.Load())
	}
	now = now.Add(2 * time.Minute)
	if ep3, _ := d.Discover(context.Background(), issuer); ep3 != ep1 || calls.Load() != 2 {
		t.Fatalf("refetch of an unchanged document must keep the pointer (calls %d)", calls.Load())
	}
	// A document naming another issuer (here: the same one without the trailing slash) is refused (OIDC
	// Discovery §4.3).
	if _, err := d.Discover(context.Background(), issuer+"/"); !errors.Is(err, capability.ErrDiscovery) || !strings.Contains(err.Error(), "names issuer") {
		t.Fatalf("wrong issuer accepted: %v", err)
	}
	idp.Close()
	now = now.Add(2 * time.Minute)
	if _, err := d.Discover(context.Background(), issuer); !errors.Is(err, capability.ErrDiscovery) {
		t.Fatalf("IdP down, want ErrDiscovery, got %v", err)
	}
}

// portalOptions are the documents' options with the developer portal (and its DCR) on.
var portalOptions = capability.Options{Date: "2026-01-01", PortalURL: "https://127.0.0.1:9443/", DCR: true}

func TestPortalDocumentsMatchGoldenFiles(t *testing.T) {
	h, err := capability.New(exampleAPIs(t), &fakeDiscovery{ep: keycloak(t)}, portalOptions, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for path, golden := range map[string]string{
		"/patient-access/fhir/metadata":                        "patient-access.portal.metadata.json",
		"/patient-access/fhir/.well-known/smart-configuration": "patient-access.portal.smart-configuration.json",
	} {
		w := get(t, h, path, nil)
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		file := filepath.Join("testdata", golden)
		if *update {
			if err := os.WriteFile(file, w.Body.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (run go test ./internal/capability -update)", err)
		}
		if !bytes.Equal(w.Body.Bytes(), want) {
			t.Errorf("%s differs from %s; run go test ./internal/capability -update and review the diff\n%s", path, file, w.Body)
		}
	}
}

// A token revoked only at the issuer still passes a gateway that verifies JWTs locally: with the portal on,
// apps are sent to fhirwall's revocation endpoint, and the issuer's is named nowhere.
func TestWithThePortalOnAppsRevokeAndRegisterAtFhirwallNeverAtTheIssuer(t *testing.T) {
	for _, tc := range []struct {
		name             string
		opts             capability.Options
		revoke, register string
	}{
		{"portal off", capability.Options{Date: "2026-01-01"}, "http://127.0.0.1:8180/realms/fhirwall/protocol/openid-connect/revoke", ""},
		{"portal without DCR", capability.Options{Date: "2026-01-01", PortalURL: "https://portal.example"}, "https://portal.example/oauth/revoke", ""},
		{"portal with DCR", portalOptions, "https://127.0.0.1:9443/oauth/revoke", "https://127.0.0.1:9443/register"},
	} {
		ep := keycloak(t)
		ep.RevocationEndpoint = "http://127.0.0.1:8180/realms/fhirwall/protocol/openid-connect/revoke"
		h, err := capability.New(exampleAPIs(t), &fakeDiscovery{ep: ep}, tc.opts, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		var sc struct {
			Revocation   string `json:"revocation_endpoint"`
			Registration string `json:"registration_endpoint"`
		}
		smart := get(t, h, "/patient-access/fhir/.well-known/smart-configuration", nil)
		if err := json.Unmarshal(smart.Body.Bytes(), &sc); err != nil {
			t.Fatal(err)
		}
		if sc.Revocation != tc.revoke || sc.Registration != tc.register {
			t.Errorf("%s: smart-configuration revocation %q registration %q; want %q, %q", tc.name, sc.Revocation, sc.Registration, tc.revoke, tc.register)
		}
		meta := get(t, h, "/patient-access/fhir/metadata", nil).Body.String()
		if !strings.Contains(meta, `"valueUri": "`+tc.revoke+`"`) || (tc.register != "") != strings.Contains(meta, `"url": "register"`) {
			t.Errorf("%s: CapabilityStatement oauth-uris do not name revoke %q / register %q:\n%s", tc.name, tc.revoke, tc.register, meta)
		}
		if tc.opts.PortalURL != "" && strings.Contains(smart.Body.String()+meta, "openid-connect/revoke") {
			t.Errorf("%s: the issuer's revocation endpoint is still published", tc.name)
		}
	}
}

func TestBadPortalURLIsRefusedAtStart(t *testing.T) {
	for _, opts := range []capability.Options{
		{Date: "2026-01-01", PortalURL: "portal.example"},
		{Date: "2026-01-01", PortalURL: "ftp://portal.example"},
		{Date: "2026-01-01", PortalURL: "https://portal.example/?x=1"},
		{Date: "2026-01-01", DCR: true},
	} {
		if _, err := capability.New(exampleAPIs(t), &fakeDiscovery{ep: keycloak(t)}, opts, slog.New(slog.DiscardHandler)); !errors.Is(err, capability.ErrInvalid) {
			t.Errorf("%+v: %v; want ErrInvalid", opts, err)
		}
	}
}

func TestDocumentsAreWhatServeHTTPAnswers(t *testing.T) {
	h := newHandler(t, exampleAPIs(t), &fakeDiscovery{ep: keycloak(t)})
	meta, smart, err := h.Documents(context.Background(), "patient-access")
	if err != nil {
		t.Fatal(err)
	}
	if w := get(t, h, "/patient-access/fhir/metadata", nil); w.Body.String() != string(meta) {
		t.Errorf("metadata differs from the served one")
	}
	if w := get(t, h, "/patient-access/fhir/.well-known/smart-configuration", nil); w.Body.String() != string(smart) {
		t.Errorf("smart configuration differs from the served one")
	}
	if _, _, err := h.Documents(context.Background(), "no-such-api"); err == nil {
		t.Error("an unknown API: no error")
	}
	failing := newHandler(t, exampleAPIs(t), &fakeDiscovery{err: capability.ErrDiscovery})
	if _, _, err := failing.Documents(context.Background(), "patient-access"); err == nil {
		t.Error("discovery down: no error")
	}
}
