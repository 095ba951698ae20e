package priorauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/fhirwall/fhirwall/internal/decision"
)

// inquire answers Claim/$inquire (PAS 2.0.1 §"Claim inquiry", OperationDefinition Claim-inquiry): the current
// decision on the request the inquiry Bundle's Claim.identifier names, with all its items (l.179-192), as a
// profile-pas-inquiry-response-bundle.
//
// Deviation from PAS 2.0.1 l.203, which has servers answer other systems that match the member id and the
// ordering or rendering provider's NPI: fhirwall answers only the provider that submitted the request
// (FHIR-NOTES §Da Vinci PAS: only the submitting organisation may inquire). Every other inquiry — another
// provider's request, an unknown identifier, a member that is not the request's — gets the same 404.
func (a *Adapter) inquire(ctx context.Context, d *decision.Decision) (decision.Answer, error) {
	s, err := ParseSubmission(d.Input.Body)
	if err != nil {
		return badRequest(err), nil
	}
	res, err := a.validate.Validate(ctx, ProfileInquiryRequestBundle, s.Bundle)
	if err != nil {
		return decision.Answer{}, fmt.Errorf("priorauth: validator: %w", err)
	}
	if !res.Valid {
		return invalidAnswer(res), nil
	}
	who, err := a.callerOf(ctx, d)
	if errors.Is(err, decision.ErrNoProvider) {
		return notFound(), nil
	}
	if err != nil {
		return decision.Answer{}, err
	}
	if s.Identifier == "" {
		return notFound(), nil
	}
	r, err := a.store.FindByClaimIdentifier(ctx, who.Provider, s.Identifier)
	if errors.Is(err, ErrNotFound) || err == nil && r.Sandbox != d.Sandbox() {
		return notFound(), nil // a sandbox request is the sandbox's only, and a real one never the sandbox's
	}
	if err != nil {
		return decision.Answer{}, fmt.Errorf("priorauth: inquiry: %w", err)
	}
	if r.Patient != "" {
		// Query by example: the inquiry names the member too (PAS: no patient-less searches).
		member, reject, err := a.member(ctx, s, r.Sandbox)
		if err != nil {
			return decision.Answer{}, err
		}
		if reject != nil || member != r.Patient {
			return notFound(), nil
		}
	}
	body, err := inquiryResponse(r.ResponseBundle, a.now())
	if err != nil {
		return decision.Answer{}, fmt.Errorf("priorauth: inquiry %s: %w", r.ID, err)
	}
	var patients []string
	if r.Patient != "" {
		patients = []string{bareID(r.Patient)}
	}
	return fhirAnswer(http.StatusOK, body, patients, string(r.Status)), nil
}

// inquiryResponse turns a stored PAS response Bundle into the inquiry response: the same entries, the
// Bundle claiming profile-pas-inquiry-response-bundle and its ClaimResponse profile-claiminquiryresponse,
// with a new identifier and timestamp.
func inquiryResponse(stored []byte, now time.Time) ([]byte, error) {
	b, err := decodeJSONObject(stored)
	if err != nil {
		return nil, err
	}
	b["meta"] = map[string]any{"profile": []any{ProfileInquiryResponseBundle}}
	b["timestamp"] = fhirTime(now)
	old := asStr(asObj(b["identifier"])["value"])
	b["identifier"] = map[string]any{"system": systemBundleID, "value": uuidURN("inquiry/" + old + "/" + now.UTC().Format(time.RFC3339Nano))}
	for _, e := range asList(b["entry"]) {
		if res := asObj(asObj(e)["resource"]); asStr(res["resourceType"]) == "ClaimResponse" {
			meta := asObj(res["meta"])
			if meta == nil {
				meta = map[string]any{}
				res["meta"] = meta
			}
			meta["profile"] = []any{profileClaimInquiryResponse}
		}
	}
	return json.Marshal(b)
}
