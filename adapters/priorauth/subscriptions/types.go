package subscriptions

import "time"

// Owner is who creates or reads a Subscription: the client, the provider it acts for (Organization/<id> or
// Practitioner/<id>), that provider's identifiers (system|value; the topic filter orgIdentifier must name one),
// and the hosts the client registered for notifications (the registry's notify_hosts).
type Owner struct {
	ClientID       string
	Provider       string
	OrgIdentifiers []string
	NotifyHosts    []string
}

// Event is a decided prior-authorization request to notify about: the subscriptions whose filter names one of
// OrgIdentifiers get it. RequestID and Version identify the decision: notifying the same pair twice sends
// nothing new.
type Event struct {
	RequestID       string
	Version         int
	OrgIdentifiers  []string
	ClaimResponseID string
	ResponseBundle  []byte // the PAS response Bundle (JSON): a full-resource notification carries it
	Time            time.Time
	Patients        []string // the member(s) the request is about (bare ids), for the delivery's audit record

}
