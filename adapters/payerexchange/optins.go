package payerexchange

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/internal/decision"
)

// OptedIn implements decision.OptIns: it asks the FHIR server about exactly the patients named, every time
// (no cache: a Consent made inactive or deleted there stops the very next request), one search per batch of
// patients that keeps the query well inside what servers accept. The decision core names the patients a
// request names, or, for an answer whose patients only the answer shows (a page, an export file), the
// patients in that answer: never a payer's whole list, which would not fit in a decision's time.
func (a *Adapter) OptedIn(ctx context.Context, payer string, patients []string, now time.Time) (map[string]decision.OptIn, error) {
	out := map[string]decision.OptIn{}
	var refs []string
	size := 0
	flush := func() error {
		if len(refs) == 0 {
			return nil
		}
		q := url.Values{"actor": {payer}, "status": {"active"}, "patient": {strings.Join(refs, ",")}, "_count": {"500"}}
		refs, size = refs[:0], 0
		return a.search.Search(ctx, "Consent", q, func(raw json.RawMessage) error {
			var c object
			if err := json.Unmarshal(raw, &c); err != nil {
				return err
			}
			if str(c["resourceType"]) != "Consent" {
				return nil
			}
			sensitive, why := consentTerms(c, now)
			named := false
			for _, r := range recipients(c) {
				named = named || str(r["reference"]) == payer
			}
			id, ok := strings.CutPrefix(str(obj(c["patient"])["reference"]), "Patient/")
			if why != "" || !named || !ok || id == "" {
				return nil
			}
			o := out[id]
			o.Sensitive = o.Sensitive || sensitive
			out[id] = o
			return nil
		})
	}
	for _, p := range patients {
		if p == "" || len(p) > 64 || strings.ContainsAny(p, ",|\\$/ ") {
			continue // not a Patient id: nobody to look up
		}
		if len(refs) == maxLookupIDs || size+len(p)+len("Patient/,") > maxLookupQuery {
			if err := flush(); err != nil {
				return nil, fmt.Errorf("payerexchange: opt-ins: %w", err)
			}
		}
		refs = append(refs, "Patient/"+p)
		size += len(p) + len("Patient/,")
	}
	if err := flush(); err != nil {
		return nil, fmt.Errorf("payerexchange: opt-ins: %w", err)
	}
	return out, nil
}
