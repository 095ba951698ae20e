package datascope

import (
	"slices"
	"strings"
	"time"
)

// The table: per scope (one API's column) and per resource type (a row), what is withheld and what is
// removed. FHIR-NOTES "CMS-0057-F: what each API may return" is the source; each rule says why.
//
//	""                  every type            leaves as it is
//	patient-access      ExplanationOfBenefit, withheld: prior auths for drugs
//	                    Claim, ClaimResponse
//	                    every other type      leaves as it is (members see their own cost-sharing)
//	provider-access     ExplanationOfBenefit  withheld: dates of service before 2016-01-01; prior auths for drugs
//	                                          removed:  claims: what the CARIN BB non-financial profiles forbid
//	                                                    (meta.profile swapped); prior auths: enrollee cost-sharing
//	                                                    and provider remittance, see "Prior auths" below
//	                    Claim                 withheld: dates of service before 2016-01-01; prior auths for drugs
//	                    ClaimResponse         withheld: dates before 2016-01-01; prior-auth decisions for drugs
//	                                          removed:  payment (remittance; its amount is 1..1)
//	                    Coverage              removed:  costToBeneficiary (copays, coinsurance %, exceptions)
//	                    Invoice, PaymentNotice,
//	                    PaymentReconciliation withheld: always (a bill or a payment is money through and through)
//	                    every type, rows too  withheld: money in a modifierExtension; nesting deeper than 64
//	                                          removed:  every Money at any depth (contained resources and
//	                                                    extensions too) and the entries it leaves empty; then
//	                                                    the narrative (text) of a resource that changed
//	payer-to-payer      every row of provider-access (claims non-financial, no money, no remittance, no
//	                    costToBeneficiary, no bills or payments, no drug prior auths), and:
//	                    ExplanationOfBenefit, Claim, ClaimResponse: prior auths pending or active only
//	                                          withheld: status other than active; denied (X12 306 A3, a PDex
//	                                                    denialreason adjudication, outcome error); a decision
//	                                                    read neither as pended (A4; queued) nor approved (A1,
//	                                                    A2, A6), a PAS Claim (the request: no decision) too
//	                    the types below       withheld: latest date of service before the decision time less
//	                                                    5 years, or no readable date of service:
//	                      ExplanationOfBenefit, Claim, ClaimResponse  billablePeriod, item/addItem.serviced[x],
//	                                                                  preAuthPeriod; created when none
//	                      Encounter, CarePlan, CareTeam               period
//	                      Condition                                   onset[x], recordedDate, abatement[x]
//	                      Observation, DiagnosticReport               effective[x], issued
//	                      Procedure                                   performed[x]
//	                      Immunization                                occurrence[x]
//	                      MedicationRequest                           authoredOn
//	                      MedicationDispense                          whenHandedOver, whenPrepared
//	                      DocumentReference                           date, context.period
//	                      AllergyIntolerance                          recordedDate, onset[x], lastOccurrence
//	                      Goal                                        start[x], target.due[x]
//	                    every other type      as provider-access (Patient, Coverage, Practitioner,
//	                                          PractitionerRole, Organization, Location: no date of service)
//	any other name      everything withheld
//
// Prior auths (ExplanationOfBenefit, use preauthorization or predetermination; PDex pdex-priorauthorization).
// CMS-0057-F keeps only "provider remittances and enrollee cost-sharing information" of claims from providers
// and other payers; the prior authorization itself (status, dates, items and services approved, quantity)
// leaves. PDex 2.0.0/2.1.0 require an amount on every item.adjudication and adjudication of a PDexAdjudication
// category (slice adjudicationamounttype, amount 1..1) and on every total (amount 1..1), so an amount that
// is neither stays and the resource keeps its meta.profile claim:
//
//	kept      submitted (THO adjudication; PDex PriorAuthorizationValueCodes in total)  what was requested
//	          eligible  (same systems)                  the plan's determination of the eligible (allowed) amount
//	          item/detail/subDetail unitPrice, net      the provider's charge as requested (a submitted amount)
//	removed   copay, deductible (THO adjudication); coinsurance, memberliability, paidbypatient,
//	          noncovered (the member's share of what the plan does not cover) (PDexAdjudicationCS)
//	                                                    enrollee cost-sharing
//	          benefit (THO: the amount payable), paidtoprovider, paidtopatient, priorpayerpaid (PDexAdjudicationCS),
//	          utilized (PriorAuthorizationValueCodes: drawn by claims to date), payment (whole)
//	                                                    provider remittance (a payment, whoever receives it)
//	          benefitBalance.financial used/allowed money (deductible and out-of-pocket accumulators)
//	                                                    enrollee cost-sharing
//	          discount, drugcost (PDexAdjudicationCS), any other system or code, a category with any coding
//	          outside the kept ones, addItem amounts (payer-added lines), money in extensions (of a kept
//	          amount too) and in contained resources   not classified: fail closed
//
// An entry that is nothing but a removed amount goes whole; one that says more (reviewAction, reason, value)
// stays without it, and if it is then in PDex's amount slice without an amount, the claim to
// pdex-priorauthorization goes (the resource is honest about what it no longer is). A prior auth nested in
// another resource loses every amount and the claim, as money anywhere else does.
//
// A type with no row under provider-access passes money-stripped: the caller's compartment and scope checks
// decided it may leave, and nothing in CMS-0057-F withholds it from providers; only money is the payer's
// business (enrollee cost-sharing, provider remittance).
//
// Narrative: text.div is free XHTML that may repeat any amount removed (PAS's generated narratives print
// "US$100.00"), so a resource the scope changed loses `text`. Removed, not replaced: every CARIN BB 2.0.0
// profile (non-financial included), US Core, PDex and PAS has text 0..1 and not mustSupport, so the result
// conforms (the validator's dom-6 "should have narrative" is a best-practice warning); a replacement with
// status "empty" would still need a div saying something, and "generated" would claim a narrative we did not
// generate from the data.
var scopes = map[string]*scope{
	"": {passAll: true},
	// FHIR-NOTES: members see their own claims with cost-sharing, and their prior auths "pending, active,
	// denied with reason; not drugs" (CMS-0057-F excludes drugs from every prior-authorization provision).
	PatientAccess: {types: map[string]rule{
		"ExplanationOfBenefit": {withhold: []withhold{drugPriorAuth}},
		"Claim":                {withhold: []withhold{drugPriorAuth}},
		"ClaimResponse":        {withhold: []withhold{drugPriorAuth}},
	}},
	ProviderAccess: providerAccess,
	// FHIR-NOTES: claims and clinical data "same as Provider Access"; prior auths "pending and active only: no
	// denied, no drugs"; "dates of service within the last 5 years".
	PayerToPayer: providerAccess.with(map[string]rule{
		"ExplanationOfBenefit": {withhold: []withhold{inactivePriorAuth, deniedPriorAuth, undecidedPriorAuth, within5Years(claimDates)}},
		"Claim":                {withhold: []withhold{inactivePriorAuth, deniedPriorAuth, undecidedPriorAuth, within5Years(claimDates)}},
		"ClaimResponse":        {withhold: []withhold{inactivePriorAuth, deniedPriorAuth, undecidedPriorAuth, within5Years(claimDates)}},
		"Encounter":            {withhold: []withhold{within5Years(datesOfService{elements: []string{"period"}})}},
		"Condition":            {withhold: []withhold{within5Years(datesOfService{elements: []string{"onset[x]", "recordedDate", "abatement[x]"}})}},
		"Observation":          {withhold: []withhold{within5Years(datesOfService{elements: []string{"effective[x]", "issued"}})}},
		"Procedure":            {withhold: []withhold{within5Years(datesOfService{elements: []string{"performed[x]"}})}},
		"Immunization":         {withhold: []withhold{within5Years(datesOfService{elements: []string{"occurrence[x]"}})}},
		"MedicationRequest":    {withhold: []withhold{within5Years(datesOfService{elements: []string{"authoredOn"}})}},
		// PDex pdex-medicationdispense and US Core 6.1.0 MedicationDispense: served too, dated when handed over.
		"MedicationDispense": {withhold: []withhold{within5Years(datesOfService{elements: []string{"whenHandedOver", "whenPrepared"}})}},
		"DiagnosticReport":   {withhold: []withhold{within5Years(datesOfService{elements: []string{"effective[x]", "issued"}})}},
		"DocumentReference":  {withhold: []withhold{within5Years(datesOfService{elements: []string{"date", "context.period"}})}},
		"AllergyIntolerance": {withhold: []withhold{within5Years(datesOfService{elements: []string{"recordedDate", "onset[x]", "lastOccurrence"}})}},
		"CarePlan":           {withhold: []withhold{within5Years(datesOfService{elements: []string{"period"}})}},
		"CareTeam":           {withhold: []withhold{within5Years(datesOfService{elements: []string{"period"}})}},
		"Goal":               {withhold: []withhold{within5Years(datesOfService{elements: []string{"start[x]", "target.due[x]"}})}},
	}),
}

var providerAccess = &scope{
	types: map[string]rule{
		"ExplanationOfBenefit": {
			withhold: []withhold{servedBeforeCutoff, drugPriorAuth},
			remove:   []removal{nonFinancialClaim, priorAuthFinance},
		},
		"Claim": {
			withhold: []withhold{servedBeforeCutoff, drugPriorAuth},
		},
		"ClaimResponse": {
			withhold: []withhold{servedBeforeCutoff, drugPriorAuth},
			remove:   []removal{remittance},
		},
		"Coverage": {
			remove: []removal{costToBeneficiary},
		},
		"Invoice":               {withhold: []withhold{financialRecord}},
		"PaymentNotice":         {withhold: []withhold{financialRecord}},
		"PaymentReconciliation": {withhold: []withhold{financialRecord}},
	},
	everywhere: rule{
		withhold: []withhold{tooDeep, moneyInModifierExtension},
		remove:   []removal{moneyAnywhere},
	},
	dropNarrative: true,
}

// within5Years: Payer-to-Payer's time window over the dates of service d names for one type.
func within5Years(d datesOfService) withhold {
	return withhold{
		"CMS-0057-F Payer-to-Payer time window: dates of service within the last 5 years (" + strings.Join(append(slices.Clip(d.elements), d.fallback...), ", ") +
			"; a missing or unreadable date fails closed)",
		func(res map[string]any, now time.Time) bool {
			return !servedWithinYears(res, d, now, payerToPayerYears)
		},
	}
}

// scope is one API's column of the table.
type scope struct {
	passAll       bool            // every resource leaves as it is
	types         map[string]rule // rows by resource type
	other         rule            // the row of a type not in types
	everywhere    rule            // for every resource, after its row (whole tree: nested resources included)
	dropNarrative bool            // a resource the scope changed loses its text
}

// with returns a copy of s with more rows: each row's withholds and removals run after s's own for that
// type. s is not changed.
func (s *scope) with(rows map[string]rule) *scope {
	out := *s
	out.types = make(map[string]rule, len(s.types)+len(rows))
	for t, r := range s.types {
		out.types[t] = r
	}
	for t, r := range rows {
		base := out.types[t]
		out.types[t] = rule{
			withhold: append(slices.Clip(base.withhold), r.withhold...),
			remove:   append(slices.Clip(base.remove), r.remove...),
		}
	}
	return &out
}

// rule is one row: a resource leaves only if no withhold says otherwise; then the removals run in order.
type rule struct {
	withhold []withhold
	remove   []removal
}

type withhold struct {
	why  string
	when func(res map[string]any, now time.Time) bool
}

type removal struct {
	what string
	do   func(res map[string]any, top bool) bool // reports whether res changed; top: res is what Apply was given
}

var (
	servedBeforeCutoff = withhold{
		"CMS-0057-F time window: dates of service on or after 2016-01-01 (a date that cannot be read fails closed)",
		func(res map[string]any, _ time.Time) bool { return !servedSince(res, ServiceCutoff) },
	}
	drugPriorAuth = withhold{
		"CMS-0057-F prior authorizations: not drugs",
		func(res map[string]any, _ time.Time) bool { return isPriorAuth(res) && isDrug(res) },
	}
	financialRecord = withhold{
		"a bill or a payment: enrollee cost-sharing or provider remittance through and through",
		func(map[string]any, time.Time) bool { return true },
	}
	tooDeep = withhold{
		"nested deeper than can be checked",
		func(res map[string]any, _ time.Time) bool { return depthOver(res, maxDepth) },
	}
	moneyInModifierExtension = withhold{
		"money in a modifierExtension: removing a modifier changes what the resource means (R4 §2.4.1.2)",
		func(res map[string]any, _ time.Time) bool { return modifierMoney(res, false) },
	}

	inactivePriorAuth = withhold{
		"CMS-0057-F Payer-to-Payer: prior auths pending or active only; status cancelled, draft or entered-in-error (anything but active) is neither",
		func(res map[string]any, _ time.Time) bool { return isPriorAuth(res) && res["status"] != "active" },
	}
	deniedPriorAuth = withhold{
		"CMS-0057-F Payer-to-Payer: no denied prior auths (X12 306 A3, a PDex denialreason adjudication, outcome error)",
		func(res map[string]any, _ time.Time) bool {
			if !isPriorAuth(res) {
				return false
			}
			denied, _ := priorAuthDecision(res)
			return denied
		},
	}
	undecidedPriorAuth = withhold{
		"CMS-0057-F Payer-to-Payer: a prior auth whose decision reads neither as pended nor approved fails closed (a PAS Claim carries none)",
		func(res map[string]any, _ time.Time) bool {
			if !isPriorAuth(res) {
				return false
			}
			_, ok := priorAuthDecision(res)
			return !ok
		},
	}

	// claimDates: the dates of service servedSince reads, each period's end too; created only without them.
	claimDates = datesOfService{
		elements: []string{"billablePeriod", "item.serviced[x]", "addItem.serviced[x]", "preAuthPeriod"},
		fallback: []string{"created"},
	}

	nonFinancialClaim = removal{
		"claims: the elements the CARIN BB 2.0.0 non-financial profiles forbid; meta.profile names the one that fits",
		func(res map[string]any, _ bool) bool { return !isPriorAuth(res) && nonFinancial(res) },
	}
	priorAuthFinance = removal{
		"prior auths: enrollee cost-sharing and provider remittance (payment, every amount but submitted and eligible); " +
			"nested in another resource: every amount, and the PDex claim",
		func(res map[string]any, top bool) bool {
			switch {
			case !isPriorAuth(res):
				return false
			case top:
				return priorAuthWithoutFinance(res)
			default:
				return priorAuthWithoutAmounts(res)
			}
		},
	}
	remittance = removal{
		"ClaimResponse.payment: the payment to the provider (its amount is 1..1: it cannot stay without it)",
		func(res map[string]any, _ bool) bool { return del(res, "payment") },
	}
	costToBeneficiary = removal{
		"Coverage.costToBeneficiary: copays, coinsurance and their exceptions (enrollee cost-sharing)",
		func(res map[string]any, _ bool) bool { return del(res, "costToBeneficiary") },
	}
	moneyAnywhere = removal{
		"every Money, valueMoney and MoneyQuantity at any depth, and the entries it leaves empty; of a prior auth " +
			"ExplanationOfBenefit (the resource returned, not one nested in it), all but the amounts it keeps",
		func(res map[string]any, _ bool) bool {
			if isPriorAuthEOB(res) {
				return stripPriorAuth(res)
			}
			return stripMoney(res, 0)
		},
	}
)
