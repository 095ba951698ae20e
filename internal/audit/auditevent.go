package audit

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// AuditEvent export: one access Record as a FHIR R4 AuditEvent (http://hl7.org/fhir/R4/auditevent.html) shaped
// after IHE Basic Audit Log Patterns (BALP 1.1.x, https://profiles.ihe.net/ITI/BALP/), "BALP" below; section
// numbers are those of BALP Volume 3 (content.html).
//
// meta.profile is left out. BALP's package (ihe.iti.balp) is not among the packages the validator has offline,
// and HAPI's validator reports a meta.profile it cannot resolve as an error, so claiming the profiles would make
// every event fail validation. Nor could we honestly claim them all: the BALP profiles fix outcome to 0
// (success; "failures are recorded differently"), the Patient* profiles allow exactly one patient entity, and
// BALP does not profile history, operations, batch or capabilities (BALP issue 6). The shape still follows
// the profiles: for a successful read, search, create, update or delete with one patient the event has the
// agents and entities of IHE.BasicAudit.PatientRead / PatientQuery / PatientCreate / PatientUpdate /
// PatientDelete, and of IHE.BasicAudit.Read / Query / Create / Update / Delete without one.

// ErrNotAccess is returned for an entry that is not an access record (a checkpoint, an admin entry): it has no
// AuditEvent here, and an exporter walking the log skips it. An admin entry could be rendered as a DICOM
// "Security Alert" AuditEvent, but BALP profiles no administrative event, and its before/after objects would
// have to be carried as entity details; `fhirwall audit query -kind admin` gives the entries as written.
var ErrNotAccess = errors.New("not an access record")

// AuditEventOptions says who recorded the events: the fhirwall instance doing the export.
type AuditEventOptions struct {
	// Observer names this fhirwall instance (source.observer, and the server agent). Required.
	Observer string
	// Site is the enterprise or deployment the observer belongs to (source.site). Optional.
	Site string
	// Server is how clients address fhirwall: its FHIR base URL or host name (the server agent's network
	// address). Defaults to Observer.
	Server string
}

// Code systems (R4 terminology; BALP's own for the X-Request-Id entity and the OAuth user agent).
const (
	csAuditEventType   = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	csRestful          = "http://hl7.org/fhir/restful-interaction"
	csDCM              = "http://dicom.nema.org/resources/ontology/DCM"
	csParticipation    = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	csProvenanceAgent  = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
	csSourceType       = "http://terminology.hl7.org/CodeSystem/security-source-type"
	csEntityType       = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	csObjectRole       = "http://terminology.hl7.org/CodeSystem/object-role"
	csBALPEntityType   = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
	csBALPUserAgent    = "https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes"
	jtiURNPrefix       = "urn:ietf:params:oauth:jti:"
	networkMachineName = "1"
	networkIP          = "2"
	networkURI         = "5"
)

var (
	codeRest         = aeCoding{System: csAuditEventType, Code: "rest", Display: "RESTful Operation"}
	codeApplication  = aeCoding{System: csDCM, Code: "110150", Display: "Application"}
	codeDestination  = aeCoding{System: csDCM, Code: "110152", Display: "Destination Role ID"}
	codeSource       = aeCoding{System: csDCM, Code: "110153", Display: "Source Role ID"}
	codeCustodian    = aeCoding{System: csProvenanceAgent, Code: "custodian", Display: "Custodian"}
	codeRecipient    = aeCoding{System: csParticipation, Code: "IRCP", Display: "information recipient"}
	codeAuthor       = aeCoding{System: csParticipation, Code: "AUT", Display: "author (originator)"}
	codeOAuthUser    = aeCoding{System: csBALPUserAgent, Code: "UserOauthAgent", Display: "User OAuth Agent participant"}
	codeAppServer    = aeCoding{System: csSourceType, Code: "4", Display: "Application Server"}
	codePerson       = aeCoding{System: csEntityType, Code: "1", Display: "Person"}
	codeSystemObject = aeCoding{System: csEntityType, Code: "2", Display: "System Object"}
	codeOther        = aeCoding{System: csEntityType, Code: "4", Display: "Other"}
	codeRolePatient  = aeCoding{System: csObjectRole, Code: "1", Display: "Patient"}
	codeRoleResource = aeCoding{System: csObjectRole, Code: "4", Display: "Domain Resource"}
	codeRoleSecurity = aeCoding{System: csObjectRole, Code: "13", Display: "Security Resource"}
	codeRoleQuery    = aeCoding{System: csObjectRole, Code: "24", Display: "Query"}
	codeXRequestID   = aeCoding{System: csBALPEntityType, Code: "XrequestId"}
	fhirID           = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`) // R4 §2.24.0.1 id
)

const (
	instantMillisUTC  = "2006-01-02T15:04:05.000Z07:00"
	noResponseOutcome = "no response reached the client"
)

// interactionShape is how BALP renders one of fhirwall's interactions (fhir.Interaction values).
type interactionShape struct {
	subtype string // R4 restful-interaction code; "" when the interaction is not a FHIR one
	action  string // AuditEvent.action: C R U D E
	// Agent types of the client and the server. BALP 3:5.7.3: for create, update and query the client is the
	// Source Role ID and the server the Destination Role ID; for read, where the client receives the data, the
	// roles swap; for delete the client is the Application and the server the Custodian.
	client, server aeCoding
	user           aeCoding // BALP Read/Query: IRCP; Create/Update/Delete: one of DataSources (AUT)
	query          bool     // BALP Query entity[query]: the request itself is the object
}

var (
	readShape   = interactionShape{action: "R", client: codeDestination, server: codeSource, user: codeRecipient}
	queryShape  = interactionShape{action: "E", client: codeSource, server: codeDestination, user: codeRecipient, query: true}
	writeShape  = interactionShape{client: codeSource, server: codeDestination, user: codeAuthor}
	deleteShape = interactionShape{action: "D", client: codeApplication, server: codeCustodian, user: codeAuthor}
)

func shapeOf(interaction string) interactionShape {
	with := func(s interactionShape, subtype, action string) interactionShape {
		s.subtype = subtype
		if action != "" {
			s.action = action
		}
		return s
	}
	switch interaction {
	case "read", "vread": // IHE.BasicAudit.Read / PatientRead
		return with(readShape, interaction, "")
	case "search-type", "search-system": // IHE.BasicAudit.Query / PatientQuery
		return with(queryShape, interaction, "")
	case "search-compartment", "paging":
		// R4's restful-interaction has no compartment-search or paging code; both continue a search, and BALP
		// Query accepts the general "search".
		return with(queryShape, "search", "")
	case "create": // IHE.BasicAudit.Create / PatientCreate
		return with(writeShape, "create", "C")
	case "update", "patch": // BALP 3:5.7.3 table: Update covers update and patch
		return with(writeShape, interaction, "U")
	case "delete": // IHE.BasicAudit.Delete / PatientDelete
		return with(deleteShape, "delete", "")
	// Not profiled by BALP (its issue 6): the closest R4 codes, with the same agent pattern as the profiled
	// interaction each resembles.
	case "history-instance":
		return with(readShape, interaction, "")
	case "history-type", "history-system":
		return with(queryShape, interaction, "R")
	case "capabilities":
		return with(readShape, interaction, "")
	case "smart-configuration": // not a FHIR interaction: no subtype
		return readShape
	case "operation", "batch", "transaction":
		return with(queryShape, interaction, "")
	}
	// Refused before it was classified: keep the request as received (entity[query]), as BALP keeps searches
	// "including possibly malicious patterns".
	s := queryShape
	s.action = ""
	return s
}

// AuditEvent renders an access record as the JSON of one FHIR R4 AuditEvent whose id is the record's id.
// A checkpoint or an admin entry returns ErrNotAccess.
func AuditEvent(r Record, o AuditEventOptions) ([]byte, error) {
	// Schema 1 predates kind: every schema-1 entry is an access record.
	if r.Kind != KindAccess && !(r.Kind == "" && r.Schema == "1") {
		return nil, fmt.Errorf("audit event for %q entry %s: %w", r.Kind, r.ID, ErrNotAccess)
	}
	if o.Observer == "" {
		return nil, errors.New("audit event: AuditEventOptions.Observer is required")
	}
	if !fhirID.MatchString(r.ID) {
		return nil, fmt.Errorf("audit event: record id %q is not a FHIR id", r.ID)
	}
	if r.Time.IsZero() {
		return nil, fmt.Errorf("audit event: record %s has no time", r.ID)
	}
	s := shapeOf(r.Interaction)
	ev := aeResource{
		ResourceType: "AuditEvent",
		ID:           r.ID,
		Type:         codeRest, // BALP 3:5.7.3: every RESTful profile fixes type = rest
		Action:       s.action,
		Recorded:     r.Time.UTC().Format(instantMillisUTC),
		Outcome:      outcome(r.Status),
		OutcomeDesc:  outcomeDesc(r),
		Agent:        agents(r, o, s),
		Source: aeSource{
			Site:     o.Site,
			Observer: aeReference{Display: o.Observer},
			Type:     []aeCoding{codeAppServer},
		},
		Entity: entities(r, s),
	}
	if s.subtype != "" {
		ev.Subtype = []aeCoding{{System: csRestful, Code: s.subtype, Display: s.subtype}}
	}
	return json.Marshal(ev)
}

// outcome maps the status the client received to R4's audit-event-outcome. A record with status 0 saw no
// response at all (the exchange was reset): not a success, and not the client's doing.
func outcome(status int) string {
	switch {
	case status >= 200 && status < 400:
		return "0" // success
	case status >= 400 && status < 500:
		return "4" // minor failure: refused or a bad request
	}
	return "8" // serious failure: 5xx, or no response
}

// outcomeDesc carries the decision's reasons: R4's one free-text element about the outcome. They are also
// details of the decision entity, one each, for machines.
func outcomeDesc(r Record) string {
	desc := strings.Join(r.Reasons, "; ")
	if r.Status == 0 {
		if desc != "" {
			return noResponseOutcome + "; " + desc
		}
		return noResponseOutcome
	}
	return desc
}

func agents(r Record, o AuditEventOptions, s interactionShape) []aeAgent {
	hasUser := r.Subject != "" || r.FHIRUser != ""
	// BALP 3:5.7.5.4: client_id is agent[client].who.identifier.value. The client agent also carries DCM
	// Application, the client slice of the OAuth token patterns.
	client := aeAgent{Type: concept(s.client, codeApplication), Requestor: !hasUser}
	if r.ClientID != "" {
		client.Who = &aeReference{Identifier: &aeIdentifier{Value: r.ClientID}}
	} else {
		client.Who = &aeReference{Display: "unauthenticated client"} // BALP: who 1..1 even when unknown
	}
	if r.SourceIP != "" {
		client.Network = &aeNetwork{Address: r.SourceIP, Type: networkIP}
	}
	server := aeAgent{Type: concept(s.server), Who: &aeReference{Display: o.Observer}}
	addr, kind := o.Server, networkMachineName
	if addr == "" {
		addr = o.Observer
	} else if strings.Contains(addr, "://") {
		kind = networkURI
	}
	server.Network = &aeNetwork{Address: addr, Type: kind}

	jti := jtiPolicy(r.TokenJTI)
	if !hasUser {
		// A token without sub or fhirUser: its jti still has to be findable (R4's `policy` search parameter
		// covers every agent's policy).
		client.Policy = jti
		return []aeAgent{client, server}
	}
	// BALP 3:5.7.5.4 (OAuth Minimal): sub is agent[user].who.identifier.value and jti agent[user].policy, prefixed
	// urn:ietf:params:oauth:jti:; the user is the requestor and has no network.
	user := aeAgent{Type: concept(s.user, codeOAuthUser), Requestor: true, Policy: jti, Who: &aeReference{}}
	if r.Subject != "" {
		user.Who.Identifier = &aeIdentifier{Value: r.Subject}
	}
	if r.FHIRUser != "" {
		if isAgentReference(r.FHIRUser) {
			user.Who.Reference = r.FHIRUser
		} else {
			user.Who.Display = r.FHIRUser // e.g. a Person, which R4's agent.who may not reference
		}
	}
	return []aeAgent{client, user, server}
}

func jtiPolicy(jti string) []string {
	if jti == "" {
		return nil
	}
	if strings.ContainsFunc(jti, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		jti = url.PathEscape(jti) // R4 uri is \S*: only a jti with blanks is escaped, others stay searchable as is
	}
	return []string{jtiURNPrefix + jti}
}

// isAgentReference: fhirUser is [base/]Type/id, and R4 AuditEvent.agent.who may reference Type.
func isAgentReference(ref string) bool {
	segs := strings.Split(ref, "/")
	if len(segs) < 2 || !fhirID.MatchString(segs[len(segs)-1]) {
		return false
	}
	switch segs[len(segs)-2] {
	case "Practitioner", "PractitionerRole", "Organization", "Device", "Patient", "RelatedPerson":
		return true
	}
	return false
}

func entities(r Record, s interactionShape) []aeEntity {
	var out []aeEntity
	// BALP Query: the raw request, base64, so that malformed or malicious requests are kept exactly: the
	// method, the path below the API's base and the query string (access tokens redacted).
	if s.query {
		out = append(out, aeEntity{
			Type:  &codeSystemObject,
			Role:  &codeRoleQuery,
			Query: base64.StdEncoding.EncodeToString([]byte(requestLine(r))),
		})
	}
	if what := resourceTarget(r); what != nil {
		// BALP Read/Create/Update/Delete entity[data]: the resource acted on (for a create, only its type: the
		// new id is not in the record).
		out = append(out, aeEntity{What: what, Type: &codeSystemObject, Role: &codeRoleResource})
	}
	// BALP Patient* entity[patient]; fhirwall renders one per patient the response carried (BALP itself would
	// write one AuditEvent per patient; with several the event still fits the non-patient profile).
	for _, p := range r.Patients {
		what := &aeReference{Reference: "Patient/" + p}
		if !fhirID.MatchString(p) {
			what = &aeReference{Identifier: &aeIdentifier{Value: p}}
		}
		out = append(out, aeEntity{What: what, Type: &codePerson, Role: &codeRolePatient})
	}
	if r.RequestID != "" { // BALP 3:5.7.3.1: the X-Request-Id, fhirwall's own per-request id
		out = append(out, aeEntity{What: &aeReference{Identifier: &aeIdentifier{Value: r.RequestID}}, Type: &codeXRequestID})
	}
	return append(out, decisionEntity(r))
}

// resourceTarget is the resource the interaction named, from the path: Type/id[/_history/vid], or the type
// alone for a create. Searches have none (the query entity describes them).
func resourceTarget(r Record) *aeReference {
	switch r.Interaction {
	case "read", "vread", "update", "patch", "delete", "history-instance", "operation":
	case "create":
		if r.ResourceType != "" {
			return &aeReference{Type: r.ResourceType}
		}
		return nil
	default:
		return nil
	}
	segs := strings.Split(strings.Trim(r.Path, "/"), "/")
	if r.ResourceType == "" || len(segs) < 2 || segs[0] != r.ResourceType || !fhirID.MatchString(segs[1]) {
		return nil
	}
	ref := segs[0] + "/" + segs[1]
	if r.Interaction == "vread" && len(segs) == 4 && segs[2] == "_history" && fhirID.MatchString(segs[3]) {
		ref += "/_history/" + segs[3]
	}
	return &aeReference{Reference: ref}
}

// decisionEntity is fhirwall's authorisation decision. BALP has no slot for it, so it is an entity of a type
// no BALP slice matches (audit-entity-type Other, object-role Security Resource), its facts as R4
// entity.detail (type + valueString).
func decisionEntity(r Record) aeEntity {
	verdict := "deny"
	if r.Allow {
		verdict = "allow"
	}
	e := aeEntity{Type: &codeOther, Role: &codeRoleSecurity, Description: "fhirwall decision: " + verdict}
	if r.DecisionID != "" {
		e.What = &aeReference{Identifier: &aeIdentifier{Value: r.DecisionID}}
	}
	add := func(typ string, values ...string) {
		for _, v := range values {
			if v != "" {
				e.Detail = append(e.Detail, aeDetail{Type: typ, ValueString: v})
			}
		}
	}
	add("decision", verdict)
	add("api", r.API)
	add("policy_revision", r.PolicyRevision)
	add("reason", r.Reasons...)
	add("scope", r.Scopes...)
	add("data_category", r.DataCategories...)
	if r.Status != 0 {
		add("http_status", strconv.Itoa(r.Status))
	}
	return e
}

func concept(codings ...aeCoding) *aeCodeableConcept {
	out := &aeCodeableConcept{}
	for _, c := range codings {
		if len(out.Coding) == 0 || out.Coding[len(out.Coding)-1] != c {
			out.Coding = append(out.Coding, c)
		}
	}
	return out
}

// The R4 AuditEvent elements fhirwall fills, in R4's element order.
type (
	aeResource struct {
		ResourceType string     `json:"resourceType"`
		ID           string     `json:"id"`
		Type         aeCoding   `json:"type"`
		Subtype      []aeCoding `json:"subtype,omitempty"`
		Action       string     `json:"action,omitempty"`
		Recorded     string     `json:"recorded"`
		Outcome      string     `json:"outcome"`
		OutcomeDesc  string     `json:"outcomeDesc,omitempty"`
		Agent        []aeAgent  `json:"agent"`
		Source       aeSource   `json:"source"`
		Entity       []aeEntity `json:"entity,omitempty"`
	}
	aeCoding struct {
		System  string `json:"system,omitempty"`
		Code    string `json:"code,omitempty"`
		Display string `json:"display,omitempty"`
	}
	aeCodeableConcept struct {
		Coding []aeCoding `json:"coding"`
	}
	aeIdentifier struct {
		Value string `json:"value"`
	}
	aeReference struct {
		Reference  string        `json:"reference,omitempty"`
		Type       string        `json:"type,omitempty"`
		Identifier *aeIdentifier `json:"identifier,omitempty"`
		Display    string        `json:"display,omitempty"`
	}
	aeAgent struct {
		Type      *aeCodeableConcept `json:"type,omitempty"`
		Who       *aeReference       `json:"who,omitempty"`
		Requestor bool               `json:"requestor"` // 1..1 in R4
		Policy    []string           `json:"policy,omitempty"`
		Network   *aeNetwork         `json:"network,omitempty"`
	}
	aeNetwork struct {
		Address string `json:"address"`
		Type    string `json:"type"`
	}
	aeSource struct {
		Site     string      `json:"site,omitempty"`
		Observer aeReference `json:"observer"`
		Type     []aeCoding  `json:"type,omitempty"`
	}
	aeEntity struct {
		What        *aeReference `json:"what,omitempty"`
		Type        *aeCoding    `json:"type,omitempty"`
		Role        *aeCoding    `json:"role,omitempty"`
		Description string       `json:"description,omitempty"`
		Query       string       `json:"query,omitempty"`
		Detail      []aeDetail   `json:"detail,omitempty"`
	}
	aeDetail struct {
		Type        string `json:"type"`
		ValueString string `json:"valueString"`
	}
)

func requestLine(r Record) string {
	if r.Query == "" {
		return r.Method + " " + r.Path
	}
	return r.Method + " " + r.Path + "?" + r.Query
}
