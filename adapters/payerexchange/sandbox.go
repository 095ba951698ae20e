package payerexchange

// The Payer-to-Payer sandbox (config apis[] payer-to-payer-sandbox, docs/sandbox.md) runs the same operations
// on synthetic data only (adapters/synthetic). A request reaches it when decision.Decision.Sandbox says so;
// then:
//
//   - every Coverage search of a match is narrowed to the sandbox tag, and a Coverage or beneficiary that is
//     not synthetic is no candidate, so a real member never matches;
//   - every resource written (the stored Consent, the result Groups) and answered (member-match-out, the
//     bulk result) carries the tag;
//   - a $davinci-data-export starts only for a synthetic Group;
//   - an answer with a body that is not synthetic is an error (503), never sent (Serve): the decision core
//     does not hold an adapter's answer to the sandbox rule, so the adapter does.
