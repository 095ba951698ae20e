package payerexchange

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fhirwall/fhirwall/internal/decision"
)

// Opt-ins as decisions read them (decision.OptIns). A request that names its members asks the FHIR server
// about exactly them, every time. A request that names nobody but returns members' data (a Patient search by
// identifier, an export file, a page) is held to every member opted in to the payer: reading all of a
// payer's Consents for each such request does not fit in a decision's time once a payer has thousands of
// members, so that set is kept per payer and used only after asking the FHIR server whether any Consent
// changed since it was read (Consent/_history?_since=, which lists deletions too). A change of any Consent,
// or a set older than optInMaxAge, reads the set again. Revocation still holds from the very next request,
// and every Consent's terms (its period) are judged against the time of each decision, not of the read.

// optInMaxAge bounds how long a payer's set is trusted even when the history says nothing changed.
const optInMaxAge = 5 * time.Minute

// changeMargin is how far before the FHIR server's own time of a read the next change check starts, so a
// change written while the read ran is never missed (it only costs one more read).
const changeMargin = 2 * time.Second

// heldConsent is what a stored Consent grants, kept to be judged again at each decision's time.
type heldConsent struct {
	patient   string
	sensitive bool
	consent   object
}

// payerSet is every Consent naming one payer as recipient, as read at asOf (the FHIR server's clock).
type payerSet struct {
	asOf     time.Time
	read     time.Time // our clock, for optInMaxAge
	consents []heldConsent
}

type optInCache struct {
	mu   sync.Mutex
	sets map[string]*payerSet
	// margin is changeMargin; the unit tests, whose fake FHIR server shares our clock, set it to 0.
	margin time.Duration
}

// OptedIn implements decision.OptIns.
func (a *Adapter) OptedIn(ctx context.Context, payer string, patients []string, now time.Time) (map[string]decision.OptIn, error) {
	if patients != nil {
		return a.optedInNamed(ctx, payer, patients, now)
	}
	set, err := a.payerSet(ctx, payer)
	if err != nil {
		return nil, err
	}
	out := map[string]decision.OptIn{}
	for _, c := range set.consents {
		if sensitive, why := consentTerms(c.consent, now); why == "" {
			o := out[c.patient]
			o.Sensitive = o.Sensitive || sensitive
			out[c.patient] = o
		}
	}
	return out, nil
}

// optedInNamed asks the FHIR server about the named members only.
func (a *Adapter) optedInNamed(ctx context.Context, payer string, patients []string, now time.Time) (map[string]decision.OptIn, error) {
	refs := make([]string, 0, len(patients))
	for _, p := range patients {
		if p == "" || strings.ContainsAny(p, ",|\\$/") {
			continue // not a Patient id: nobody to look up
		}
		refs = append(refs, "Patient/"+p)
	}
	out := map[string]decision.OptIn{}
	if len(refs) == 0 {
		return out, nil
	}
	q := url.Values{"actor": {payer}, "status": {"active"}, "patient": {strings.Join(refs, ",")}, "_count": {"500"}}
	held, _, err := a.readConsents(ctx, payer, q)
	if err != nil {
		return nil, err
	}
	for _, c := range held {
		if sensitive, why := consentTerms(c.consent, now); why == "" {
			o := out[c.patient]
			o.Sensitive = o.Sensitive || sensitive
			out[c.patient] = o
		}
	}
	return out, nil
}

// payerSet returns the payer's Consents, read again when the FHIR server says any Consent changed.
func (a *Adapter) payerSet(ctx context.Context, payer string) (*payerSet, error) {
	a.optIns.mu.Lock()
	set := a.optIns.sets[payer]
	a.optIns.mu.Unlock()
	if set != nil && time.Since(set.read) < optInMaxAge {
		changed, err := a.consentsChangedSince(ctx, set.asOf.Add(-a.optIns.margin))
		if err != nil {
			return nil, err
		}
		if !changed {
			return set, nil
		}
	}
	q := url.Values{"actor": {payer}, "status": {"active"}, "_count": {"1000"}}
	held, asOf, err := a.readConsents(ctx, payer, q)
	if err != nil {
		return nil, err
	}
	set = &payerSet{asOf: asOf, read: time.Now(), consents: held}
	a.optIns.mu.Lock()
	if a.optIns.sets == nil {
		a.optIns.sets = map[string]*payerSet{}
	}
	a.optIns.sets[payer] = set
	a.optIns.mu.Unlock()
	return set, nil
}

// readConsents runs a Consent search and keeps those naming payer as recipient; asOf is the FHIR server's
// time of the first page (Bundle.meta.lastUpdated), zero when it did not say.
func (a *Adapter) readConsents(ctx context.Context, payer string, q url.Values) ([]heldConsent, time.Time, error) {
	var held []heldConsent
	var asOf time.Time
	err := a.search.SearchPages(ctx, "Consent", q, func(meta json.RawMessage) {
		if !asOf.IsZero() {
			return
		}
		var m struct {
			LastUpdated time.Time `json:"lastUpdated"`
		}
		if json.Unmarshal(meta, &m) == nil {
			asOf = m.LastUpdated
		}
	}, func(raw json.RawMessage) error {
		var c object
		if err := json.Unmarshal(raw, &c); err != nil {
			return err
		}
		if str(c["resourceType"]) != "Consent" {
			return nil
		}
		named := false
		for _, r := range recipients(c) {
			named = named || str(r["reference"]) == payer
		}
		id, ok := strings.CutPrefix(str(obj(c["patient"])["reference"]), "Patient/")
		if !named || !ok || id == "" {
			return nil
		}
		sensitive, _ := consentTerms(c, time.Time{})
		held = append(held, heldConsent{patient: id, sensitive: sensitive, consent: c})
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("payerexchange: opt-ins: %w", err)
	}
	if asOf.IsZero() {
		asOf = time.Unix(0, 0) // unknown: the next change check asks about everything, so it reads again
	}
	return held, asOf, nil
}

// consentsChangedSince: the FHIR server holds a Consent version (a create, update or delete) at or after t.
func (a *Adapter) consentsChangedSince(ctx context.Context, t time.Time) (bool, error) {
	q := url.Values{"_since": {t.UTC().Format(time.RFC3339Nano)}, "_count": {"1"}}
	r, err := a.fhir.Do(ctx, "GET", "Consent/_history", q, map[string][]string{"Cache-Control": {"no-cache"}}, nil)
	if err != nil {
		return false, fmt.Errorf("payerexchange: consent history: %w", err)
	}
	var b struct {
		ResourceType string `json:"resourceType"`
		Entry        []any  `json:"entry"`
	}
	if r.Status != 200 || json.Unmarshal(r.Body, &b) != nil || b.ResourceType != "Bundle" {
		return false, fmt.Errorf("payerexchange: consent history: the FHIR server answered %d", r.Status)
	}
	return len(b.Entry) > 0, nil
}
