package priorauth

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/fhirwall/fhirwall/adapters/priorauth/subscriptions"
)

// Errors of Review besides the Store's ErrNotFound and ErrAlreadyDecided.
var (
	// ErrReasonRequired: a denial without a reason (CMS-0057-F: a specific reason for every denial).
	ErrReasonRequired = errors.New("a denial needs a reason")
	// ErrInvalidReview: no reviewer, a verdict other than approved (A1) or denied (A3), an item that is not
	// the request's or not pended, or an item left undecided.
	ErrInvalidReview = errors.New("invalid review")
	// ErrNotNotified: the decision is stored (and on the FHIR server), but its notification could not be
	// queued; the reviewer is told, the decision stands.
	ErrNotNotified = errors.New("decision stored but not queued for notification")
)

// Review records a reviewer's decision on a pended request: every pended item gets the verdict (or its own
// from in.Items), the ClaimResponse and PDex prior authorization are rewritten on the FHIR server (same ids),
// the response Bundle is rebuilt at Version+1, the store records it — and only then are subscribers
// notified, so a notification never announces a decision that was not stored.
func (a *Adapter) Review(ctx context.Context, id string, in ReviewInput) (Request, error) {
	if in.Reviewer == "" {
		return Request{}, fmt.Errorf("%w: no reviewer", ErrInvalidReview)
	}
	r, err := a.store.Get(ctx, id)
	if err != nil {
		return Request{}, err
	}
	if r.Sandbox {
		return Request{}, ErrNotFound // synthetic data: no reviewer acts on it as if it were real (sandbox.go)
	}
	if r.Status != StatusPended {
		return Request{}, ErrAlreadyDecided
	}
	next := r
	next.Items = slices.Clone(r.Items)
	if err := applyReview(next.Items, in); err != nil {
		return Request{}, err
	}
	now := a.now().UTC()
	next.Status, next.DecidedAt, next.DecidedBy = statusOf(next.Items), now, in.Reviewer
	next.Extended, next.AfterAppeal = in.Extended, in.AfterAppeal
	next.Version = r.Version + 1
	s, err := parseResponseBundle(r.ResponseBundle)
	if err != nil {
		return Request{}, fmt.Errorf("priorauth: review %s: stored response: %w", id, err)
	}
	if next.ResponseBundle, err = responseBundle(s, next, nil, false, now); err != nil {
		return Request{}, err
	}
	if err := a.storeOnFHIR(ctx, s, next); err != nil {
		return Request{}, err
	}
	if err := a.store.Decide(context.WithoutCancel(ctx), next); err != nil {
		if errors.Is(err, ErrAlreadyDecided) {
			a.restore(ctx, id) // another reviewer won: the FHIR server shows their decision
		}
		return Request{}, err
	}
	a.log.Info("prior-auth request reviewed", "request", id, "status", next.Status, "reviewer", in.Reviewer)
	a.observe(next, next.DecidedAt.Sub(next.Received))
	ev := subscriptions.Event{RequestID: next.ID, Version: next.Version, OrgIdentifiers: next.OrgIdentifiers,
		ClaimResponseID: next.ClaimResponseID, ResponseBundle: next.ResponseBundle, Time: now,
		Patients: []string{bareID(next.Patient)}}
	if err := a.notifier.Decided(context.WithoutCancel(ctx), ev); err != nil {
		a.log.Error("prior-auth decision not queued for notification", "request", id, "version", next.Version, "error", err)
		return next, fmt.Errorf("%w: %v", ErrNotNotified, err)
	}
	return next, nil
}

// applyReview decides the pended items: in.Items one by one, then in.Verdict for the rest.
func applyReview(items []ItemDecision, in ReviewInput) error {
	check := func(v Verdict, reason *Code) error {
		switch {
		case v != VerdictApproved && v != VerdictDenied:
			return fmt.Errorf("%w: verdict %q (want A1 or A3)", ErrInvalidReview, v)
		case v == VerdictDenied && (reason == nil || reason.Code == ""):
			return ErrReasonRequired
		}
		return nil
	}
	for _, one := range in.Items {
		i := slices.IndexFunc(items, func(it ItemDecision) bool { return it.Sequence == one.Sequence })
		if i < 0 || items[i].Verdict != VerdictPended {
			return fmt.Errorf("%w: item %d is not a pended item of the request", ErrInvalidReview, one.Sequence)
		}
		reason := one.Reason
		if reason == nil && one.Verdict == VerdictDenied {
			reason = in.Reason
		}
		if err := check(one.Verdict, reason); err != nil {
			return err
		}
		items[i].Verdict, items[i].Reason, items[i].Rule = one.Verdict, nil, "review"
		if one.Verdict == VerdictDenied {
			items[i].Reason = reason
		}
	}
	for i := range items {
		if items[i].Verdict != VerdictPended || slices.ContainsFunc(in.Items, func(o ItemDecision) bool { return o.Sequence == items[i].Sequence }) {
			continue
		}
		if in.Verdict == "" {
			return fmt.Errorf("%w: item %d left undecided", ErrInvalidReview, items[i].Sequence)
		}
		if err := check(in.Verdict, in.Reason); err != nil {
			return err
		}
		items[i].Verdict, items[i].Reason, items[i].Rule = in.Verdict, nil, "review"
		if in.Verdict == VerdictDenied {
			items[i].Reason = in.Reason
		}
	}
	return nil
}

// restore rewrites the FHIR server's copies from the stored request (best effort, logged).
func (a *Adapter) restore(ctx context.Context, id string) {
	ctx = context.WithoutCancel(ctx)
	r, err := a.store.Get(ctx, id)
	if err == nil {
		var s *Submission
		if s, err = parseResponseBundle(r.ResponseBundle); err == nil {
			err = a.storeOnFHIR(ctx, s, r)
		}
	}
	if err != nil {
		a.log.Error("could not restore the FHIR copies of a prior-auth request", "request", id, "error", err)
	}
}
