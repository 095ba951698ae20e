package datascope

import "strings"

// The CARIN BB 2.0.0 non-financial profiles (package hl7.fhir.us.carin-bb-2.0.0-nonfinancial; in the IG's
// prose they are the "Basis" profiles, their canonical URLs end in -NonFinancial). Every element they forbid
// (max 0) is money: the provider's remittance or what the enrollee owes.
const (
	InpatientInstitutional   = carinProfiles + "-Inpatient-Institutional-NonFinancial|2.0.0"
	OutpatientInstitutional  = carinProfiles + "-Outpatient-Institutional-NonFinancial|2.0.0"
	ProfessionalNonClinician = carinProfiles + "-Professional-NonClinician-NonFinancial|2.0.0"
	Pharmacy                 = carinProfiles + "-Pharmacy-NonFinancial|2.0.0"
	Oral                     = carinProfiles + "-Oral-NonFinancial|2.0.0"
)

// NonFinancialProfile names the non-financial profile for a claim's type and subType, "" when none fits
// (the profiles' ExplanationOfBenefit.type / subType patterns and bindings).
func NonFinancialProfile(eob map[string]any) string {
	switch {
	case hasCoding(eob["type"], claimTypeSystem, "institutional"):
		switch {
		case hasCoding(eob["subType"], subTypeSystem, "inpatient"):
			return InpatientInstitutional
		case hasCoding(eob["subType"], subTypeSystem, "outpatient"):
			return OutpatientInstitutional
		}
	case hasCoding(eob["type"], claimTypeSystem, "professional"), hasCoding(eob["type"], claimTypeSystem, "vision"):
		// C4BBProfessionalAndNonClinicianClaimType = claim-type#professional | #vision
		return ProfessionalNonClinician
	case hasCoding(eob["type"], claimTypeSystem, "pharmacy"):
		return Pharmacy
	case hasCoding(eob["type"], claimTypeSystem, "oral"):
		return Oral
	}
	return ""
}

// nonFinancial removes from a claim what the non-financial profiles forbid and claims the matching profile
// in meta.profile; everything else stays. It reports whether eob changed.
func nonFinancial(eob map[string]any) bool {
	c := false
	// ExplanationOfBenefit.total: max 0 (the totals are submitted, allowed, cost-sharing and paid amounts).
	c = del(eob, "total") || c
	if p, ok := eob["payment"].(map[string]any); ok {
		// ExplanationOfBenefit.payment.amount: max 0. payment.adjustment is left 0..1 by the profiles, but it
		// is money paid to the provider outside this claim's adjudication: remittance, which CMS-0057-F
		// excludes. payment.date is mustSupport and stays, as do type and identifier.
		c = del(p, "amount") || c
		c = del(p, "adjustment") || c
		if len(p) == 0 {
			delete(eob, "payment")
		}
	}
	for _, bb := range objects(eob["benefitBalance"]) {
		// ExplanationOfBenefit.benefitBalance.financial: max 0 (allowed and used benefit amounts); the
		// category, network, unit and term stay.
		c = del(bb, "financial") || c
	}
	// ExplanationOfBenefit.adjudication.amount: max 0, in every slice (billingnetworkstatus,
	// benefitpaymentstatus, adjustmentreason, ...).
	c = adjudications(eob, "adjudication") || c
	c = lines(objects(eob["item"]), "detail", "subDetail") || c
	c = lines(objects(eob["addItem"]), "detail", "subDetail") || c
	return claimProfile(eob) || c
}

// lines strips the money from claim lines at every level: ExplanationOfBenefit.item.unitPrice, .item.net,
// .item.detail.unitPrice/.net, .item.detail.subDetail.unitPrice/.net and the same under addItem are max 0;
// ExplanationOfBenefit.item.adjudication.amount is max 0 (every slice), and the adjudications of details,
// sub-details and added items hold the same amounts, so they lose them too.
func lines(ls []map[string]any, children ...string) bool {
	c := false
	for _, l := range ls {
		c = del(l, "unitPrice") || c
		c = del(l, "net") || c
		c = adjudications(l, "adjudication") || c
		if len(children) > 0 {
			c = lines(objects(l[children[0]]), children[1:]...) || c
		}
	}
	return c
}

// adjudications removes .amount from every adjudication under key, then the entries left with nothing to say:
// the profiles keep adjudication entries for their reason (adjustmentreason, billingnetworkstatus,
// benefitpaymentstatus slices) or value (allowedunits); an amount category (submitted, copay,
// paidtoprovider, ...) with its amount gone would only tell the provider that such an amount exists.
func adjudications(parent map[string]any, key string) bool {
	raw, ok := parent[key].([]any)
	if !ok {
		return false
	}
	c := false
	kept := raw[:0:0]
	for _, v := range raw {
		a, ok := v.(map[string]any)
		if !ok {
			kept = append(kept, v)
			continue
		}
		c = del(a, "amount") || c
		if a["reason"] == nil && a["value"] == nil && a["extension"] == nil && a["modifierExtension"] == nil {
			c = true
			continue
		}
		kept = append(kept, a)
	}
	if len(kept) == 0 {
		delete(parent, key)
	} else {
		parent[key] = kept
	}
	return c
}

// claimProfile replaces the CARIN BB claim profiles in meta.profile with the non-financial one for the
// claim's type: the financial profiles describe data this answer no longer has (the non-financial profiles
// require meta.profile, 1..*). Other profiles stay. A claim of a type no non-financial profile covers keeps
// its content without a CARIN BB claim.
func claimProfile(eob map[string]any) bool {
	want := NonFinancialProfile(eob)
	meta, _ := eob["meta"].(map[string]any)
	if meta == nil {
		if want == "" {
			return false
		}
		meta = map[string]any{}
		eob["meta"] = meta
	}
	old, _ := meta["profile"].([]any)
	profiles := make([]any, 0, len(old)+1)
	if want != "" {
		profiles = append(profiles, want)
	}
	for _, p := range old {
		if s, ok := p.(string); ok && strings.HasPrefix(s, carinProfiles) {
			continue
		}
		profiles = append(profiles, p)
	}
	if len(profiles) == 0 {
		delete(meta, "profile")
		if len(meta) == 0 {
			delete(eob, "meta")
		}
	} else {
		meta["profile"] = profiles
	}
	return len(old) != len(profiles) || (len(old) > 0 && old[0] != profiles[0])
}
