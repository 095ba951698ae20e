package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var updateExamples = flag.Bool("update", false, "rewrite docs/audit/examples from the code")

const (
	schemaPath     = "../../docs/audit/record.schema.json"
	examplesDir    = "../../docs/audit/examples"
	exampleLog     = examplesDir + "/chain.jsonl"
	exampleKeyFile = examplesDir + "/example-key.pub"
	exampleChain   = "5b1f0c9e6a2d4e8f9a3b7c1d2e4f6a8b"
)

// exampleKey is the documented test key: derived from a fixed seed so the examples are reproducible. It signs
// nothing but the examples.
func exampleKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("fhirwall audit example key: never use outside docs/audit/examples"))
	return ed25519.NewKeyFromSeed(seed[:])
}

// exampleRecords are the records of the examples (three access records, then an admin entry), in chain order.
func exampleRecords() []Record {
	at := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	member := Record{
		Schema: SchemaVersion, Kind: KindAccess, API: "patient-access", PolicyRevision: "9c41d07e2ab35f18",
		ClientID: "member-app", Subject: "member-01", FHIRUser: "Patient/member-01", TokenJTI: "6f0e2c1a-47d9-4b8e-a1c3-2f5d7e9b0a14",
		Scopes:   []string{"openid", "fhirUser", "launch/patient", "patient/ExplanationOfBenefit.rs", "patient/Patient.rs"},
		Patients: []string{"member-01"}, ResourceType: "ExplanationOfBenefit", Method: "GET", SourceIP: "203.0.113.7",
	}
	allowed := member
	allowed.ID, allowed.DecisionID = "0a7c3e51b2d94f6e8c1a5b7d9e2f4a60", "e4b1c9d27a3f4e5b8c6d0a1f2e3b4c5d"
	allowed.Time = at("2026-03-02T14:05:09.123456Z")
	allowed.Allow, allowed.Reasons = true, []string{"patient_scope"}
	allowed.Interaction, allowed.Path = "read", "/patient-access/fhir/ExplanationOfBenefit/eob-1001"
	allowed.RequestID = "1d6a8f0e-3b5c-4e7a-9d2f-8c1b0e4a6f3d"
	allowed.Status, allowed.DataCategories, allowed.UpstreamMillis, allowed.Bytes = 200, []string{"claims"}, 12.345, 4821
	allowed.Policy = &PolicyVerdict{
		Input: json.RawMessage(`{"api":"patient-access","authenticated":true,"client":{"apis":["patient-access"],"id":"member-app",` +
			`"name":"Member Health Companion","org":"","tier":"standard"},"identity":{"client_id":"member-app","dropped_scopes":[],` +
			`"fhir_user":"Patient/member-01","other_scopes":["openid","fhirUser","launch/patient"],"patient":"member-01",` +
			`"scopes":[{"context":"patient","permissions":{"c":false,"d":false,"r":true,"s":true,"u":false},` +
			`"raw":"patient/ExplanationOfBenefit.rs","resource_type":"ExplanationOfBenefit"},{"context":"patient",` +
			`"permissions":{"c":false,"d":false,"r":true,"s":true,"u":false},"raw":"patient/Patient.rs","resource_type":"Patient"}],` +
			`"subject":"member-01"},"request":{"conditional":false,"id":"eob-1001","interaction":"read","method":"GET","params":[],` +
			`"patient_params":["patient","beneficiary"],"resource_type":"ExplanationOfBenefit","version_id":""}}`),
		Allow: true, Status: 200, Reasons: []string{"patient_scope"}, Revision: "9c41d07e2ab35f18",
	}

	refused := member
	refused.ID, refused.DecisionID = "3c9e1f7a5b2d4c6e8a0f1b3d5e7a9c2b", "7d2a4f6c8e0b4a1c9e3f5b7d1a2c4e6f"
	refused.Time = at("2026-03-02T14:05:11.5Z")
	refused.Allow, refused.Reasons = false, []string{"not_this_patient"}
	refused.Interaction, refused.Path = "search-type", "/patient-access/fhir/ExplanationOfBenefit?patient=member-02"
	refused.RequestID = "9b3e5d7f-1a2c-4e6b-8d0f-2a4c6e8b0d1f"
	refused.Status, refused.DataCategories, refused.Bytes = 403, []string{}, 312
	refused.Policy = &PolicyVerdict{Truncated: true, Status: 403, Reasons: []string{"not_this_patient"}, Revision: "9c41d07e2ab35f18"}

	provider := Record{
		Schema: SchemaVersion, Kind: KindAccess, ID: "b8d0f2a4c6e84a1b9c3d5e7f0a2b4c6d", Time: at("2026-03-02T14:06:00Z"),
		API: "provider-access", DecisionID: "2f4a6c8e0b1d4f3a5c7e9b0d2f4a6c8e", Allow: true, Reasons: []string{"attributed"},
		PolicyRevision: "9c41d07e2ab35f18", ClientID: "clinic-ehr", Subject: "dr-lee", FHIRUser: "Practitioner/dr-lee",
		TokenJTI: "c2e4a6b8-d0f2-4a1c-8e3b-5d7f9a1c3e5b", Scopes: []string{"openid", "fhirUser", "user/Condition.rs"},
		Patients: []string{"member-01", "member-03"}, ResourceType: "Condition", Interaction: "search-type",
		Method: "GET", Path: "/provider-access/fhir/Condition?category=problem-list-item", SourceIP: "198.51.100.24",
		RequestID: "4e6a8c0e-2b4d-4f6a-8c0e-1b3d5f7a9c2e", Status: 200, DataCategories: []string{"clinical"},
		UpstreamMillis: 48.07, Bytes: 15873,
	}
	return []Record{allowed, refused, provider, exampleAdmin()}
}

// exampleApp is the app registry's App as its JSON (adapters/registry/apps), written out here because
// internal/audit does not import adapters.
const exampleApp = `{"client_id":"member-app","name":"Member Health Companion","developer_org":"Example Health Apps Inc.",` +
	`"contacts":[{"name":"Sam Ortiz","email":"security@apps.example","role":"security"}],` +
	`"client_uri":"https://apps.example/companion","policy_uri":"https://apps.example/privacy",` +
	`"redirect_uris":["https://apps.example/callback"],"launch_types":["standalone"],"token_endpoint_auth_method":"none",` +
	`"requested_apis":["patient-access"],"requested_scopes":["launch/patient","patient/ExplanationOfBenefit.rs","patient/Patient.rs"],` +
	`"approved_apis":["patient-access"],"approved_scopes":["launch/patient","patient/ExplanationOfBenefit.rs","patient/Patient.rs"],` +
	`"environment":"production","state":"%s","tier":"standard","created_at":"2026-01-12T09:30:00Z","updated_at":"%s","version":%d}`

// exampleAdmin is a reviewer suspending member-app (the app of the access records before it).
func exampleAdmin() Record {
	before := fmt.Sprintf(exampleApp, "active", "2026-01-14T16:02:41Z", 4)
	after := fmt.Sprintf(exampleApp, "suspended", "2026-03-02T14:06:00.125Z", 5)
	return Record{
		Schema: SchemaVersion, Kind: KindAdmin, ID: "6a8c0e2b4d6f4a8c0e2b4d6f8a0c2e4b",
		Time:  time.Date(2026, 3, 2, 14, 6, 0, 125_000_000, time.UTC),
		Actor: "admin:alice", Action: "suspend", Target: "member-app",
		Reason: "SEC-2231: the app's callback host changed hands; suspended until the developer confirms it",
		Before: json.RawMessage(before), After: json.RawMessage(after),
	}
}

// exampleLines seals the example records and a checkpoint into one chain, as the spool would.
func exampleLines(t *testing.T) [][]byte {
	t.Helper()
	var lines [][]byte
	prev := GenesisHash
	add := func(body []byte) {
		line, h, err := seal(body, exampleChain, uint64(len(lines)+1), prev)
		if err != nil {
			t.Fatal(err)
		}
		lines, prev = append(lines, line), h
	}
	for _, r := range exampleRecords() {
		add(schemaMarshal(t, r))
	}
	key := exampleKey()
	seq := uint64(len(lines) + 1)
	add(schemaMarshal(t, Checkpoint{
		Schema: SchemaVersion, Kind: KindCheckpoint, ID: "f1e3d5c7b9a04e2c8a6b4d2f0e1c3a5b",
		Time: time.Date(2026, 3, 2, 14, 6, 0, 250_000_000, time.UTC), Reason: "periodic",
		KeyID: KeyID(key.Public().(ed25519.PublicKey)), Signature: sign(key, CheckpointStatement(exampleChain, seq, prev)),
	}))
	return lines
}

func schemaMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func examplePublicKeyPEM(t *testing.T) []byte {
	der, err := x509.MarshalPKIXPublicKey(exampleKey().Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// TestAuditExamplesAreCurrentSealedAndSigned keeps docs/audit/examples in step with the code: the file must be
// what the code seals today (go test ./internal/audit -run Examples -update rewrites it), every line must pass
// ParseLine, the lines must form one chain, and the checkpoint must verify under example-key.pub.
func TestAuditExamplesAreCurrentSealedAndSigned(t *testing.T) {
	want := append(bytes.Join(exampleLines(t), []byte("\n")), '\n')
	if *updateExamples {
		if err := os.MkdirAll(examplesDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(exampleLog, want, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(exampleKeyFile, examplePublicKeyPEM(t), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(exampleLog)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what the code seals; rerun with -update and review the diff", exampleLog)
	}
	pub, err := LoadVerifyKey(exampleKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	prev, kinds := GenesisHash, map[string]int{}
	for i, line := range schemaReadLines(t, exampleLog) {
		e, err := ParseLine(line)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if e.Chain != exampleChain || e.Seq != uint64(i+1) || e.PrevHash != prev {
			t.Errorf("line %d: chain %q seq %d prev %s, want %q %d %s", i+1, e.Chain, e.Seq, e.PrevHash, exampleChain, i+1, prev)
		}
		if e.Kind == KindCheckpoint {
			if err := verifySig(Keys{pub}, e.KeyID, e.Signature, CheckpointStatement(e.Chain, e.Seq, e.PrevHash)); err != nil {
				t.Errorf("line %d: checkpoint: %v", i+1, err)
			}
		}
		kinds[e.Kind]++
		prev = e.Hash
	}
	if kinds[KindAccess] == 0 || kinds[KindAdmin] == 0 || kinds[KindCheckpoint] == 0 {
		t.Errorf("examples cover kinds %v, want all three", kinds)
	}
}

func schemaReadLines(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines [][]byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("record.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("record.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func schemaValidate(t *testing.T, s *jsonschema.Schema, line []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return s.Validate(v)
}

func TestAuditExamplesMatchSchema(t *testing.T) {
	s := compileSchema(t)
	for i, line := range schemaReadLines(t, exampleLog) {
		if err := schemaValidate(t, s, line); err != nil {
			t.Errorf("example line %d: %v", i+1, err)
		}
	}
}

// sealedRecord is r as the spool writes it: marshalled without chain members, then sealed.
func sealedRecord(t *testing.T, r Record) []byte {
	t.Helper()
	line, _, err := seal(schemaMarshal(t, r), exampleChain, 7, GenesisHash)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

func TestMarshalledEntriesMatchSchema(t *testing.T) {
	s := compileSchema(t)
	unauthenticated := Record{
		Schema: SchemaVersion, Kind: KindAccess, ID: NewID(), Time: time.Now().UTC(), API: "patient-access",
		DecisionID: NewID(), Reasons: []string{"no_token"}, Scopes: []string{}, Patients: []string{},
		Method: "GET", Path: "/patient-access/fhir/Patient", SourceIP: "192.0.2.1", RequestID: NewID(), Status: 401,
		DataCategories: DataCategories(""),
	}
	noResponse := unauthenticated
	noResponse.ID, noResponse.Status = NewID(), 0
	traced := unauthenticated
	traced.ID, traced.TraceID = NewID(), "4bf92f3577b34da6a3ce929d0e0e4736"
	records := append(exampleRecords(), unauthenticated, noResponse, traced)
	for _, r := range records {
		if err := schemaValidate(t, s, sealedRecord(t, r)); err != nil {
			t.Errorf("sealed record %s: %v", r.ID, err)
		}
		// The same record read back and marshalled with its chain members set (as a consumer re-emits it).
		r.Chain, r.Seq, r.PrevHash, r.Hash = exampleChain, 3, GenesisHash, strings.Repeat("ab", 32)
		if err := schemaValidate(t, s, schemaMarshal(t, r)); err != nil {
			t.Errorf("marshalled record %s: %v", r.ID, err)
		}
	}
}

// schemaProperties returns the property names of $defs[def] and its required list.
func schemaProperties(t *testing.T, def string) (props map[string]map[string]any, required []string) {
	t.Helper()
	b, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Defs map[string]struct {
			Properties map[string]map[string]any `json:"properties"`
			Required   []string                  `json:"required"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	d, ok := doc.Defs[def]
	if !ok {
		t.Fatalf("schema has no $defs/%s", def)
	}
	return d.Properties, d.Required
}

func jsonFields(typ reflect.Type) []string {
	var names []string
	for f := range typ.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// TestSchemaListsEveryField stops the schema falling behind the code: every JSON member of an access record,
// an admin entry and a checkpoint (plus the chain members a sealed line carries) is a required, described
// property of its definition, and the definition has no property the code does not write.
func TestSchemaListsEveryField(t *testing.T) {
	// An access record's only optional members: the split ones, policy, and trace_id (tracing on).
	optionalMembers := []string{"split_id", "part", "parts", "policy", "trace_id"}
	chainMembers := []string{"chain", "seq", "prev_hash", "hash"}
	adminFields := jsonFields(reflect.TypeFor[adminEntry]())
	commonAdmin := []string{"schema", "kind", "id", "time", "chain", "seq", "prev_hash", "hash"}
	// An access record is Record without the admin members (MarshalJSON leaves them out).
	accessFields := slices.DeleteFunc(jsonFields(reflect.TypeFor[Record]()), func(f string) bool {
		return slices.Contains(adminFields, f) && !slices.Contains(commonAdmin, f)
	})
	for _, c := range []struct {
		def    string
		fields []string
	}{
		{"access", accessFields},
		{"admin", adminFields},
		{"checkpoint", append(jsonFields(reflect.TypeFor[Checkpoint]()), chainMembers...)},
	} {
		props, required := schemaProperties(t, c.def)
		for _, f := range c.fields {
			if _, ok := props[f]; !ok {
				t.Errorf("$defs/%s lacks property %q", c.def, f)
			}
			if !slices.Contains(required, f) && !(c.def == "access" && slices.Contains(optionalMembers, f)) {
				t.Errorf("$defs/%s does not require %q", c.def, f)
			}
		}
		for p, sub := range props {
			if !slices.Contains(c.fields, p) {
				t.Errorf("$defs/%s has property %q that the code does not write", c.def, p)
			}
			if d, _ := sub["description"].(string); d == "" && sub["$ref"] == nil {
				t.Errorf("$defs/%s property %q has no description", c.def, p)
			}
		}
		if want := len(c.fields) - map[bool]int{true: len(optionalMembers)}[c.def == "access"]; len(required) != want {
			t.Errorf("$defs/%s requires %d members, the code always writes %d", c.def, len(required), want)
		}
	}
}

func TestSchemaRejectsMalformedEntries(t *testing.T) {
	s := compileSchema(t)
	lines := schemaReadLines(t, exampleLog)
	access, checkpoint := lines[0], lines[len(lines)-1]
	admin := lines[slices.IndexFunc(lines, func(l []byte) bool { return bytes.Contains(l, []byte(`"kind":"admin"`)) })]
	edit := func(line []byte, f func(m map[string]any)) []byte {
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(line))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatal(err)
		}
		f(m)
		return schemaMarshal(t, m)
	}
	cases := []struct {
		name string
		line []byte
	}{
		{"access record missing a field", edit(access, func(m map[string]any) { delete(m, "data_categories") })},
		{"access record missing its hash", edit(access, func(m map[string]any) { delete(m, "hash") })},
		{"access record with an extra field", edit(access, func(m map[string]any) { m["token"] = "eyJ..." })},
		{"access record with a checkpoint member", edit(access, func(m map[string]any) { m["signature"] = "x" })},
		{"time not in UTC", edit(access, func(m map[string]any) { m["time"] = "2026-03-02T15:05:09.123456+01:00" })},
		{"time not a date-time", edit(access, func(m map[string]any) { m["time"] = "2026-03-02 14:05:09Z" })},
		{"uppercase hash", edit(access, func(m map[string]any) { m["hash"] = strings.ToUpper(m["hash"].(string)) })},
		{"short prev_hash", edit(access, func(m map[string]any) { m["prev_hash"] = "00" })},
		{"seq 0", edit(access, func(m map[string]any) { m["seq"] = 0 })},
		{"status as a string", edit(access, func(m map[string]any) { m["status"] = "200" })},
		{"null patients", edit(access, func(m map[string]any) { m["patients"] = nil })},
		{"schema version 1", edit(access, func(m map[string]any) { m["schema"] = "1" })},
		{"unknown kind", edit(access, func(m map[string]any) { m["kind"] = "debug" })},
		{"access record with an admin member", edit(access, func(m map[string]any) { m["actor"] = "admin:alice" })},
		{"policy with both input and truncated", edit(access, func(m map[string]any) { m["policy"].(map[string]any)["truncated"] = true })},
		{"policy without its input", edit(access, func(m map[string]any) { delete(m["policy"].(map[string]any), "input") })},
		{"policy input not an object", edit(access, func(m map[string]any) { m["policy"].(map[string]any)["input"] = "{}" })},
		{"policy with an extra member", edit(access, func(m map[string]any) { m["policy"].(map[string]any)["token"] = "eyJ..." })},
		{"policy without its revision", edit(access, func(m map[string]any) { delete(m["policy"].(map[string]any), "revision") })},
		{"admin entry missing its actor", edit(admin, func(m map[string]any) { delete(m, "actor") })},
		{"admin entry with an empty target", edit(admin, func(m map[string]any) { m["target"] = "" })},
		{"admin entry without before", edit(admin, func(m map[string]any) { delete(m, "before") })},
		{"admin entry with a null after", edit(admin, func(m map[string]any) { m["after"] = nil })},
		{"admin entry with an access member", edit(admin, func(m map[string]any) { m["client_id"] = "member-app" })},
		{"admin entry with before a string", edit(admin, func(m map[string]any) { m["before"] = "{}" })},
		{"checkpoint missing its signature", edit(checkpoint, func(m map[string]any) { delete(m, "signature") })},
		{"checkpoint with an access member", edit(checkpoint, func(m map[string]any) { m["patients"] = []string{} })},
		{"checkpoint with an unknown reason", edit(checkpoint, func(m map[string]any) { m["reason"] = "manual" })},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := schemaValidate(t, s, c.line); err == nil {
				t.Errorf("schema accepts %s", c.line)
			}
		})
	}
}

func TestExampleKeyFileIsTheExampleKey(t *testing.T) {
	got, err := os.ReadFile(filepath.Clean(exampleKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, examplePublicKeyPEM(t)) {
		t.Errorf("%s is not the example key's public key; rerun with -update", exampleKeyFile)
	}
}
