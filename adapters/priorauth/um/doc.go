// Package um decides prior-authorization requests item by item: the payer's rules as data
// (config/prior-auth-rules.yaml), and the payer's utilization management (UM) system behind a circuit breaker
// for the items the rules refer to it. Engine joins the two; whatever goes wrong with the UM system, an item
// is pended for human review, never approved and never lost.
package um
