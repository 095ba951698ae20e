package um

import (
	"context"
	"errors"
	"log/slog"
)

var errNoUM = errors.New("no UM system configured")

// Engine decides prior-authorization requests: the rules first, then the payer's UM system, in one call, for
// the items the rules refer to it. Whenever the UM system cannot decide them (none configured, down, its
// breaker open, an answer fhirwall will not act on) those items are pended for human review under rule
// "um-unavailable": never approved, never an error, so the request is queued and never lost.
type Engine struct {
	rules  *Rules
	remote Decider
	log    *slog.Logger
}

var _ Decider = (*Engine)(nil)

// NewEngine returns an Engine over rules, asking remote about referred items (nil: no UM system; referred
// items are then always pended).
func NewEngine(rules *Rules, remote Decider, log *slog.Logger) (*Engine, error) {
	switch {
	case rules == nil:
		return nil, errors.New("um engine: no rules")
	case log == nil:
		return nil, errors.New("um engine: no logger")
	}
	if remote == nil && rules.Refers() {
		log.Warn("prior-auth rules refer items to a UM system, but none is configured: those items will be pended for review")
	}
	return &Engine{rules: rules, remote: remote, log: log}, nil
}

// Rules returns the engine's rules (for the public list of items that need prior authorization).
func (e *Engine) Rules() *Rules { return e.rules }

// Decide decides every item of req, one ItemResult per item in req's order. Its error is always nil today;
// the signature is Decider's.
func (e *Engine) Decide(ctx context.Context, req Request) (Result, error) {
	items := e.rules.Decide(ctx, req)
	var referred []int // indexes into items
	for i, it := range items {
		if it.Verdict == Referred {
			referred = append(referred, i)
		}
	}
	if len(referred) == 0 {
		return Result{Items: items}, nil
	}
	if req.Sandbox {
		for _, i := range referred {
			items[i].Verdict, items[i].Rule, items[i].Reason = Pended, RuleSandbox, nil
		}
		return Result{Items: items}, nil
	}

	sub := req
	sub.Items = make([]Item, len(referred))
	for j, i := range referred {
		sub.Items[j] = req.Items[i]
	}
	var ans Result
	err := checkRequest(sub)
	if err == nil && e.remote == nil {
		err = errNoUM
	}
	if err == nil {
		ans, err = e.remote.Decide(ctx, sub)
		if err == nil {
			// Remote checks its own answers; another Decider's are checked here.
			err = checkAnswer(sub, ans)
		}
	}
	if err != nil {
		e.log.WarnContext(ctx, "prior-auth: the UM system did not decide; items pended for review",
			"request", req.ID, "items", len(referred), "err", err)
		for _, i := range referred {
			items[i].Verdict, items[i].Rule, items[i].Reason = Pended, RuleUMUnavailable, nil
		}
		return Result{Items: items}, nil
	}

	bySeq := make(map[int]ItemResult, len(ans.Items))
	for _, a := range ans.Items {
		bySeq[a.Sequence] = a
	}
	for _, i := range referred {
		a := bySeq[items[i].Sequence]
		items[i].Verdict, items[i].Reason, items[i].Rule = a.Verdict, a.Reason, RuleUM
		// A drug stays a drug whoever decides it: a drug prior auth must never show on the other APIs.
		items[i].Drug = items[i].Drug || a.Drug
	}
	return Result{Items: items}, nil
}
