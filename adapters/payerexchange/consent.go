package payerexchange

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/adapters/synthetic"
	"github.com/fhirwall/fhirwall/internal/fhir"
)

// The opt-in (CMS-0057-F Payer-to-Payer: the member must opt in; PDex 2.1.0 pdex-consent, HRex 1.0.0
// hrex-consent). A Consent permits sharing with a payer, now, when all of these hold:
//
//   - status is active and provision.type is permit;
//   - policy names hrex-consent-policy #regular (everything but data labelled sensitive) or #sensitive
//     (everything); #sensitive wins when both are named;
//   - provision.action is consentaction#disclose;
//   - provision.period has a start and an end, and now is within them;
//   - a provision.actor with role v3-ParticipationType#IRCP (the recipient) names the payer: its reference is
//     the payer's Organization/<id>, or its identifier is one of that Organization's identifiers on the FHIR
//     server.
//
// The same rules hold for the Consent sent with a match and for the stored copy read on every later request.

const (
	policyRegular   = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#regular"
	policySensitive = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#sensitive"

	systemParticipation = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	systemConsentAction = "http://terminology.hl7.org/CodeSystem/consentaction"

	// TagSystem marks the Consents fhirwall stored; the code is the client that sent it.
	TagSystem = "https://fhirwall.dev/CodeSystem/payer-to-payer-consent-from"
)

// consentTerms reads what a Consent grants, or why it grants nothing (reason, for logs and audit).
func consentTerms(c object, now time.Time) (sensitive bool, reason string) {
	if str(c["status"]) != "active" {
		return false, "not active"
	}
	prov := obj(c["provision"])
	if str(prov["type"]) != "permit" {
		return false, "provision.type is not permit"
	}
	regular := false
	for _, p := range list(c["policy"]) {
		switch str(obj(p)["uri"]) {
		case policySensitive:
			sensitive = true
		case policyRegular:
			regular = true
		}
	}
	if !sensitive && !regular {
		return false, "no hrex-consent-policy #regular or #sensitive"
	}
	if !hasCodingIn(prov["action"], systemConsentAction, "disclose") {
		return false, "provision.action is not disclose"
	}
	period := obj(prov["period"])
	from, _, err1 := fhir.ParseDate(str(period["start"]))
	_, until, err2 := fhir.ParseDate(str(period["end"]))
	if err1 != nil || err2 != nil {
		return false, "provision.period needs a start and an end"
	}
	if now.Before(from) || !now.Before(until) {
		return false, "provision.period does not cover now"
	}
	return sensitive, ""
}

// recipients are the provision.actor references with role IRCP.
func recipients(c object) []object {
	var out []object
	for _, a := range list(obj(c["provision"])["actor"]) {
		ao := obj(a)
		if hasCoding(ao["role"], systemParticipation, "IRCP") {
			out = append(out, obj(ao["reference"]))
		}
	}
	return out
}

// consentPermits checks the Consent sent with a match against the rules for payer, now; policy is regular
// or sensitive when it permits.
func (a *Adapter) consentPermits(ctx context.Context, c object, payer string, now time.Time) (policy string, ok bool, err error) {
	sensitive, why := consentTerms(c, now)
	if why != "" {
		a.log.Info("payer-to-payer consent refused", "payer", payer, "why", why)
		return "", false, nil
	}
	named, err := a.namesPayer(ctx, recipients(c), payer)
	if err != nil || !named {
		if err == nil {
			a.log.Info("payer-to-payer consent refused", "payer", payer, "why", "no IRCP actor names the requesting payer")
		}
		return "", false, err
	}
	if sensitive {
		return "sensitive", true, nil
	}
	return "regular", true, nil
}

// namesPayer: one recipient is the payer, by reference or by one of its Organization's identifiers.
func (a *Adapter) namesPayer(ctx context.Context, refs []object, payer string) (bool, error) {
	var byIdentifier []object
	for _, r := range refs {
		if str(r["reference"]) == payer {
			return true, nil
		}
		if id := obj(r["identifier"]); id != nil && str(r["reference"]) == "" {
			byIdentifier = append(byIdentifier, id)
		}
	}
	if len(byIdentifier) == 0 {
		return false, nil
	}
	ids, err := a.orgIdentifiers(ctx, payer)
	if err != nil {
		return false, err
	}
	for _, want := range byIdentifier {
		for _, have := range ids {
			if str(want["system"]) != "" && str(want["system"]) == str(have["system"]) && str(want["value"]) == str(have["value"]) && str(want["value"]) != "" {
				return true, nil
			}
		}
	}
	return false, nil
}

// orgIdentifiers reads the payer's Organization from the FHIR server (none: no identifiers).
func (a *Adapter) orgIdentifiers(ctx context.Context, payer string) ([]object, error) {
	r, err := a.fhir.Do(ctx, "GET", payer, nil, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("payerexchange: read %s: %w", payer, err)
	}
	if r.Status != 200 {
		return nil, nil
	}
	var org object
	if err := json.Unmarshal(r.Body, &org); err != nil {
		return nil, fmt.Errorf("payerexchange: read %s: %w", payer, err)
	}
	var out []object
	for _, id := range list(org["identifier"]) {
		if o := obj(id); o != nil {
			out = append(out, o)
		}
	}
	return out, nil
}

// storeConsent keeps the member's opt-in on the FHIR server, where every later request reads it (and where
// the payer's staff revoke it: status inactive, or delete it). The copy is the Consent as sent, made to
// point at this server's resources: patient (and a Patient performer) is the matched member, the recipient
// is the payer's Organization; any other literal reference, which this server cannot resolve, keeps only its
// identifier and display (the original reference as display when it had neither). A tag names the client;
// a sandbox request's copy carries the sandbox tag too.
func (a *Adapter) storeConsent(ctx context.Context, sent object, patientID, payer, client string, sandbox bool) error {
	c, err := consentToStore(sent, patientID, payer, client, sandbox)
	if err != nil {
		return err
	}
	body, err := json.Marshal(c)
	if err != nil {
		return err
	}
	r, err := a.fhir.Do(ctx, "POST", "Consent", nil, nil, body)
	if err != nil {
		return fmt.Errorf("payerexchange: store consent: %w", err)
	}
	if r.Status != 201 && r.Status != 200 {
		return fmt.Errorf("payerexchange: store consent: the FHIR server answered %d: %.300s", r.Status, r.Body)
	}
	return nil
}

// consentToStore is the copy of a sent Consent that storeConsent keeps.
func consentToStore(sent object, patientID, payer, client string, sandbox bool) (object, error) {
	c, err := deepCopy(sent)
	if err != nil {
		return nil, err
	}
	delete(c, "id")
	delete(c, "text")
	member := "Patient/" + patientID
	c["meta"] = object{"tag": []any{object{"system": TagSystem, "code": client}}}
	if sandbox {
		synthetic.Tag(c)
	}
	c["patient"] = object{"reference": member}
	for _, p := range list(c["performer"]) {
		po := obj(p)
		if strings.HasPrefix(str(po["reference"]), "Patient/") {
			po["reference"] = member
		} else {
			displayOnly(po)
		}
	}
	if sr := obj(c["sourceReference"]); sr != nil {
		displayOnly(sr)
	}
	for _, act := range list(obj(c["provision"])["actor"]) {
		ao := obj(act)
		ref := obj(ao["reference"])
		if hasCoding(ao["role"], systemParticipation, "IRCP") {
			ref["reference"] = payer
			delete(ref, "identifier")
			continue
		}
		displayOnly(ref)
	}
	delete(c, "contained")
	return c, nil
}

// displayOnly turns a literal reference this server cannot resolve into an identifier/display reference.
func displayOnly(ref object) {
	lit := str(ref["reference"])
	if lit == "" {
		return
	}
	delete(ref, "reference")
	delete(ref, "type")
	if ref["identifier"] == nil && str(ref["display"]) == "" {
		ref["display"] = lit
	}
}

func deepCopy(o object) (object, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var c object
	return c, json.Unmarshal(b, &c)
}
