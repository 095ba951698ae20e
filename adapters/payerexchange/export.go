package payerexchange

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/internal/datascope"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

// dataExport starts PDex 2.1.0 Group/[id]/$davinci-data-export as the FHIR server's Bulk Data export of the
// Group (R4 Bulk Data 2.0 Group/[id]/$export), binds the export job to the caller before the caller learns
// its status URL, and answers 202 with that URL under this API's base. The policy allowed it only for a Group
// the caller's own $bulk-member-match created; polls and files are then the FHIR server's, held by the core to
// the caller, to this payer's opted-in members and to the data scope, line by line.
//
// In a sandbox the Group must be synthetic (a sandbox $bulk-member-match wrote it): the export's lines are
// then held to synthetic data by the core like any other sandbox answer.
func (a *Adapter) dataExport(ctx context.Context, d *decision.Decision, base string) (decision.Answer, error) {
	if d.Sandbox() {
		ok, err := a.syntheticGroup(ctx, d.Request.ID)
		if err != nil {
			return decision.Answer{}, err
		}
		if !ok {
			return decision.RefusalAnswer(outcome.NotFound, "not_synthetic"), nil // Invariant 3: not yours = does not exist
		}
	}
	q := url.Values{"_type": {strings.Join(exportTypes(d), ",")}}
	if v := d.Request.Query.Get("_type"); v != "" {
		q.Set("_type", v) // the policy checked each type is this API's
	}
	if v := d.Request.Query.Get("_since"); v != "" {
		q.Set("_since", v)
	}
	h := http.Header{"Prefer": {"respond-async"}}
	r, err := a.fhir.Do(ctx, "GET", "Group/"+d.Request.ID+"/$export", q, h, nil)
	if err != nil {
		return decision.Answer{}, fmt.Errorf("payerexchange: start export: %w", err)
	}
	if r.Status != http.StatusAccepted {
		return decision.Answer{}, fmt.Errorf("payerexchange: start export: the FHIR server answered %d: %.300s", r.Status, r.Body)
	}
	loc, err := url.Parse(r.Header.Get("Content-Location"))
	job := ""
	if err == nil {
		job = loc.Query().Get("_jobId")
	}
	if job == "" {
		return decision.Answer{}, fmt.Errorf("payerexchange: start export: no job in Content-Location %q", r.Header.Get("Content-Location"))
	}
	if err := a.jobs.Bind(ctx, decision.ExportRef{Kind: decision.ExportJob, ID: job}, decision.ExportOwner(d), decision.ExportTTL); err != nil {
		return decision.Answer{}, fmt.Errorf("payerexchange: bind export job: %w", err)
	}
	out := http.Header{}
	out.Set("Content-Location", base+"/$export-poll-status?_jobId="+url.QueryEscape(job))
	return decision.Answer{Status: http.StatusAccepted, Header: out, Outcome: "export_started"}, nil
}

// syntheticGroup reads Group/id and says whether it is synthetic (absent: not).
func (a *Adapter) syntheticGroup(ctx context.Context, id string) (bool, error) {
	r, err := a.fhir.Do(ctx, "GET", "Group/"+id, nil, nil, nil)
	if err != nil {
		return false, fmt.Errorf("payerexchange: read Group/%s: %w", id, err)
	}
	if r.Status != http.StatusOK {
		return false, nil
	}
	var g object
	if err := json.Unmarshal(r.Body, &g); err != nil {
		return false, fmt.Errorf("payerexchange: read Group/%s: %w", id, err)
	}
	return str(g["resourceType"]) == "Group" && datascope.Synthetic(g), nil
}

// exportTypes are the types a default export asks for: those this API lets leave that belong to the Patient
// compartment (the FHIR server's Group export is of its members' compartments).
func exportTypes(d *decision.Decision) []string {
	var out []string
	for t := range d.Policy.Obligations.ResourceTypes {
		if t == "Patient" || fhir.PatientCompartment[t] != nil {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}
