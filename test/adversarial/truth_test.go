//go:build e2e

package adversarial

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fhirwall/fhirwall/test/stackenv"
)

// truth is what HAPI holds, read straight from it (never through fhirwall): the ground the markers are
// built on.
type truth struct {
	all []*held
	// past holds the older versions of every resource HAPI has more than one version of (a version may
	// name another patient than the current one: the fixture movedObservation does).
	past     []*held
	byID     map[string]*held // "Type/id"
	patients []string         // every Patient id
	// surface holds, per API, the resource types it serves with their search parameters and types, from
	// the API's own CapabilityStatement (what an attacker reads first).
	surface map[string]map[string][]searchParam
}

// held is one resource in HAPI and whose it is.
type held struct {
	typ, id  string
	version  string // meta.versionId
	json     string
	resource map[string]any
	patients []string // the patients it names (a Patient names itself)
}

type searchParam struct{ name, typ string }

// typesInHAPI are read for ground truth: every type the seed writes and every type an API serves.
var typesInHAPI = []string{"Patient", "Coverage", "ExplanationOfBenefit", "Condition", "Observation", "Consent",
	"Group", "Practitioner", "PractitionerRole", "Organization", "Location", "AllergyIntolerance", "Procedure",
	"Immunization", "MedicationRequest", "Encounter", "DiagnosticReport", "DocumentReference", "CarePlan",
	"CareTeam", "Goal", "Provenance", "Task", "PaymentReconciliation", "Claim", "ClaimResponse"}

// publicTypes carry no patient's data: their resources are never markers and may appear in any answer.
var publicTypes = map[string]bool{"Practitioner": true, "PractitionerRole": true, "Organization": true, "Location": true}

var (
	truthOnce sync.Once
	truthVal  *truth
	truthErr  error
)

func groundTruth(t *testing.T) *truth {
	t.Helper()
	truthOnce.Do(func() { truthVal, truthErr = loadTruth() })
	if truthErr != nil {
		t.Fatalf("ground truth from HAPI (%s): %v", stackenv.HAPIURL, truthErr)
	}
	return truthVal
}

var patientRef = regexp.MustCompile(`"Patient/([A-Za-z0-9\-.]{1,64})"`)

func loadTruth() (*truth, error) {
	tr := &truth{byID: map[string]*held{}, surface: map[string]map[string][]searchParam{}}
	for _, typ := range typesInHAPI {
		next := stackenv.HAPIURL + "/" + typ + "?_count=500"
		for next != "" {
			var b struct {
				Entry []struct {
					Resource json.RawMessage `json:"resource"`
				} `json:"entry"`
				Link []struct{ Relation, URL string } `json:"link"`
			}
			if err := getJSON(next, &b); err != nil {
				return nil, err
			}
			next = ""
			for _, l := range b.Link {
				if l.Relation == "next" {
					next = l.URL
				}
			}
			for _, e := range b.Entry {
				h := &held{json: string(e.Resource)}
				if err := json.Unmarshal(e.Resource, &h.resource); err != nil {
					return nil, err
				}
				h.name()
				if h.typ == "Patient" {
					tr.patients = append(tr.patients, h.id)
				}
				tr.all = append(tr.all, h)
				tr.byID[h.typ+"/"+h.id] = h
			}
		}
	}
	for _, h := range tr.all {
		if h.version == "" || h.version == "1" {
			continue
		}
		var b struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := getJSON(stackenv.HAPIURL+"/"+h.typ+"/"+h.id+"/_history?_count=100", &b); err != nil {
			return nil, err
		}
		for _, e := range b.Entry {
			v := &held{json: string(e.Resource)}
			if len(e.Resource) == 0 || json.Unmarshal(e.Resource, &v.resource) != nil {
				continue // a deletion
			}
			if v.name(); v.version != h.version {
				tr.past = append(tr.past, v)
			}
		}
	}
	tr.nameThroughReferences()
	if len(tr.patients) < 5 {
		return nil, fmt.Errorf("HAPI holds %d patients: is the seed loaded? (go run ./test/seed)", len(tr.patients))
	}
	for _, api := range []string{patientAccess, providerAccess, payerToPayer} {
		var cs struct {
			Rest []struct {
				Resource []struct {
					Type        string                        `json:"type"`
					SearchParam []struct{ Name, Type string } `json:"searchParam"`
				} `json:"resource"`
			} `json:"rest"`
		}
		if err := getJSON(stackenv.StandaloneURL+api+"/metadata", &cs); err != nil {
			return nil, fmt.Errorf("%s CapabilityStatement: %w", api, err)
		}
		tr.surface[api] = map[string][]searchParam{}
		for _, r := range cs.Rest[0].Resource {
			for _, p := range r.SearchParam {
				tr.surface[api][r.Type] = append(tr.surface[api][r.Type], searchParam{p.Name, p.Type})
			}
		}
	}
	return tr, nil
}

// name fills typ, id, version and the patients h names itself (a Patient names itself).
func (h *held) name() {
	h.typ, _ = h.resource["resourceType"].(string)
	h.id, _ = h.resource["id"].(string)
	if m, ok := h.resource["meta"].(map[string]any); ok {
		h.version, _ = m["versionId"].(string)
	}
	if h.typ == "Patient" {
		h.patients = []string{h.id}
	}
	for _, m := range patientRef.FindAllStringSubmatch(h.json, -1) {
		if !slices.Contains(h.patients, m[1]) {
			h.patients = append(h.patients, m[1])
		}
	}
}

var anyRef = regexp.MustCompile(`"reference"\s*:\s*"([A-Za-z]+/[A-Za-z0-9\-.]{1,64})"`)

// nameThroughReferences: a resource that names no patient itself names the patients of the resources it
// references (a PaymentReconciliation whose request is a member's Task, a Provenance whose target is a
// member's claim), until nothing changes. Public types, Groups and Consents pass no patient on.
func (tr *truth) nameThroughReferences() {
	direct := map[*held]bool{}
	for _, h := range append(slices.Clone(tr.all), tr.past...) {
		direct[h] = len(h.patients) > 0
	}
	for changed := true; changed; {
		changed = false
		for _, h := range append(slices.Clone(tr.all), tr.past...) {
			if direct[h] || publicTypes[h.typ] || h.typ == "Group" {
				continue
			}
			for _, m := range anyRef.FindAllStringSubmatch(h.json, -1) {
				to := tr.byID[m[1]]
				if to == nil || to == h || publicTypes[to.typ] || to.typ == "Group" || to.typ == "Consent" {
					continue
				}
				for _, id := range to.patients {
					if !slices.Contains(h.patients, id) {
						h.patients, changed = append(h.patients, id), true
					}
				}
			}
		}
	}
}

func getJSON(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %.200s", u, resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}

// of returns the resources of a type that name patient.
func (tr *truth) of(typ, patient string) []*held {
	var out []*held
	for _, h := range tr.all {
		if h.typ == typ && slices.Contains(h.patients, patient) {
			out = append(out, h)
		}
	}
	return out
}

// markers are the strings that must never appear in an answer to one principal, each with what it stands for.
type markers struct {
	re  *regexp.Regexp
	why map[string]string
}

// find returns what each marker found in s stands for.
func (m *markers) find(s string) []string {
	if m == nil || m.re == nil {
		return nil
	}
	var out []string
	for _, hit := range m.re.FindAllString(s, 8) {
		out = append(out, fmt.Sprintf("%q (%s)", hit, m.why[hit]))
	}
	return out
}

// buildMarkers makes p's forbidden markers from the truth: for every patient p may not see, the patient's
// id, names, identifiers, phone and street, and the ids and identifiers of every resource naming them; for
// the patients p may see, the ids of the resources p may still not see (visible says which). A candidate
// that also occurs in something p may see (a public resource, or one of its own) is no marker: it would
// be found in good answers.
func buildMarkers(tr *truth, p *principal) *markers {
	why := map[string]string{}
	add := func(s, reason string) {
		if len(s) >= 3 {
			why[s] = reason
		}
	}
	var seen strings.Builder
	for _, h := range append(slices.Clone(tr.all), tr.past...) {
		if slices.ContainsFunc(h.patients, p.unjudged) {
			continue // another suite opts this member in and out while we run
		}
		mine := slices.ContainsFunc(h.patients, p.sees)
		switch {
		case publicTypes[h.typ] || (mine && p.visible(tr, h)):
			seen.WriteString(h.json)
			seen.WriteByte('\n')
		case len(h.patients) == 0 || h.typ == "Group":
			// Attribution lists name many patients; their ids are covered by the patients' own markers.
		case !slices.ContainsFunc(h.patients, p.sees):
			add(h.id, fmt.Sprintf("id of %s/%s of %s", h.typ, h.id, strings.Join(h.patients, ",")))
			for _, v := range identifierValues(h.resource) {
				add(v, fmt.Sprintf("identifier of %s/%s of %s", h.typ, h.id, strings.Join(h.patients, ",")))
			}
		default:
			add(h.id, fmt.Sprintf("id of %s/%s, withheld from %s", h.typ, h.id, p.name))
			for _, v := range identifierValues(h.resource) {
				add(v, fmt.Sprintf("identifier of %s/%s, withheld from %s", h.typ, h.id, p.name))
			}
		}
	}
	for _, id := range tr.patients {
		if p.sees(id) || p.unjudged(id) {
			continue
		}
		pt := tr.byID["Patient/"+id].resource
		add(id, "id of Patient/"+id)
		for _, n := range asObjects(pt["name"]) {
			add(fmt.Sprint(n["family"]), "family name of "+id)
			for _, g := range asStrings(n["given"]) {
				add(g, "given name of "+id)
			}
		}
		for _, v := range identifierValues(pt) {
			add(v, "member identifier of "+id)
		}
		for _, tel := range asObjects(pt["telecom"]) {
			add(fmt.Sprint(tel["value"]), "telecom of "+id)
		}
		for _, a := range asObjects(pt["address"]) {
			for _, l := range asStrings(a["line"]) {
				add(l, "address of "+id)
			}
		}
	}
	visible := seen.String()
	var alts []string
	for s := range why {
		if containsWord(visible, s) {
			delete(why, s)
			continue
		}
		alts = append(alts, regexp.QuoteMeta(s))
	}
	// Longest first, so "member-1" never shadows "member-12" (ids here are zero-padded, but seeds change).
	slices.SortFunc(alts, func(a, b string) int { return len(b) - len(a) })
	m := &markers{why: why}
	if len(alts) > 0 {
		m.re = regexp.MustCompile(`\b(?:` + strings.Join(alts, "|") + `)\b`)
	}
	return m
}

// containsWord reports whether s occurs in text as `\b` + s + `\b` would match it (a word boundary at each
// end), by strings.Index rather than a regexp compiled per marker: the stack's data grows with every run, and
// a regexp per marker over all the visible text made this quadratic (minutes on a long-lived stack).
func containsWord(text, s string) bool {
	for from := 0; ; {
		i := strings.Index(text[from:], s)
		if i < 0 {
			return false
		}
		i += from
		j := i + len(s)
		before, after := i > 0 && isWordByte(text[i-1]), j < len(text) && isWordByte(text[j])
		if before != isWordByte(s[0]) && after != isWordByte(s[len(s)-1]) {
			return true
		}
		from = i + 1
	}
}

// isWordByte is RE2's \w: ASCII letters, digits and underscore.
func isWordByte(b byte) bool {
	return b == '_' || '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
}

func identifierValues(r map[string]any) []string {
	var out []string
	for _, id := range asObjects(r["identifier"]) {
		if v, ok := id["value"].(string); ok {
			out = append(out, v)
		}
	}
	return out
}

func asStrings(v any) []string {
	arr, _ := v.([]any)
	var out []string
	for _, x := range arr {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
