package subscriptions

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Notification types (R5 subscription-notification-type, as the backport uses them).
const (
	TypeHandshake = "handshake"
	TypeHeartbeat = "heartbeat"
	TypeEvent     = "event-notification"
)

// The JSON of a notification Bundle, fields in FHIR's order.
type (
	bundle struct {
		ResourceType string  `json:"resourceType"`
		ID           string  `json:"id"`
		Type         string  `json:"type"`
		Timestamp    string  `json:"timestamp"`
		Entry        []entry `json:"entry"`
	}
	entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource,omitempty"`
		Request  entryRequest    `json:"request"`
		Response entryResponse   `json:"response"`
	}
	entryRequest struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	}
	entryResponse struct {
		Status string `json:"status"`
	}
	parameters struct {
		ResourceType string      `json:"resourceType"`
		ID           string      `json:"id"`
		Parameter    []parameter `json:"parameter"`
	}
	parameter struct {
		Name           string      `json:"name"`
		ValueReference *reference  `json:"valueReference,omitempty"`
		ValueCanonical string      `json:"valueCanonical,omitempty"`
		ValueCode      string      `json:"valueCode,omitempty"`
		ValueString    string      `json:"valueString,omitempty"`
		ValueInstant   string      `json:"valueInstant,omitempty"`
		Part           []parameter `json:"part,omitempty"`
	}
	reference struct {
		Reference string `json:"reference"`
	}
)

// event is what an event notification says about its event.
type event struct {
	number          int64
	time            time.Time
	claimResponseID string
	responseBundle  []byte
}

func newID() string { return strings.ToLower(rand.Text()) }

func instant(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// notificationBody builds a Subscriptions Backport 1.1.0 R4 notification (profile
// backport-subscription-notification-r4): a history Bundle whose first entry is the SubscriptionStatus
// Parameters, conforming to backport-subscription-status-r4 without claiming it in meta.profile (as the PAS
// example Bundle-PASSubscriptionNotification does: the backport package is not in fhirwall's offline
// validator, where a claimed but unknown profile is an error), with the request
// GET <base>/Subscription/<id>/$status and response 200. Every entry carries fullUrl, request and response: a history Bundle requires them (R4
// Bundle bdl-... and Inferno's notification checks). ev is nil for handshakes and heartbeats.
//
//   - id-only: one more entry per event with fullUrl = the focus (<base>/ClaimResponse/<id>) and no resource
//     (backport §Payloads id-only; PAS 2.0.1 asks id-only).
//   - full-resource: the PAS response Bundle as the entry's resource, the focus pointing at that Bundle
//     (PAS Bundle-PASSubscriptionNotification: the topic's notificationShape is the response Bundle).
//   - empty: the status entry alone, no focus, no topic (backport: topic SHOULD NOT be sent with empty).
func notificationBody(base string, s Subscription, typ, status string, events int64, ev *event, now time.Time) ([]byte, error) {
	subURL := base + "/Subscription/" + s.ID
	statusID := uuidV4() // the status entry's fullUrl is urn:uuid:<its id>
	p := parameters{ResourceType: "Parameters", ID: statusID}
	p.Parameter = append(p.Parameter, parameter{Name: "subscription", ValueReference: &reference{subURL}})
	if s.Content != ContentEmpty {
		p.Parameter = append(p.Parameter, parameter{Name: "topic", ValueCanonical: Topic})
	}
	p.Parameter = append(p.Parameter,
		parameter{Name: "status", ValueCode: status},
		parameter{Name: "type", ValueCode: typ},
		// events-since-subscription-start is a string in 1.1.0 (R5's integer64), not counting handshakes
		// and heartbeats.
		parameter{Name: "events-since-subscription-start", ValueString: strconv.FormatInt(events, 10)})
	var extra []entry
	if ev != nil {
		ne := parameter{Name: "notification-event", Part: []parameter{
			{Name: "event-number", ValueString: strconv.FormatInt(ev.number, 10)},
			{Name: "timestamp", ValueInstant: instant(ev.time)},
		}}
		switch s.Content {
		case ContentIDOnly:
			focus := base + "/ClaimResponse/" + ev.claimResponseID
			ne.Part = append(ne.Part, parameter{Name: "focus", ValueReference: &reference{focus}})
			extra = append(extra, entry{FullURL: focus, Request: entryRequest{"GET", focus}, Response: entryResponse{"200"}})
		case ContentFullResource:
			rb, bid, err := withBundleID(ev.responseBundle)
			if err != nil {
				return nil, err
			}
			focus := base + "/Bundle/" + bid
			ne.Part = append(ne.Part, parameter{Name: "focus", ValueReference: &reference{focus}})
			extra = append(extra, entry{FullURL: focus, Resource: rb, Request: entryRequest{"GET", focus}, Response: entryResponse{"200"}})
		}
		p.Parameter = append(p.Parameter, ne)
	}
	pj, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	b := bundle{ResourceType: "Bundle", ID: newID(), Type: "history", Timestamp: instant(now)}
	b.Entry = append(b.Entry, entry{FullURL: "urn:uuid:" + statusID, Resource: pj,
		Request: entryRequest{"GET", subURL + "/$status"}, Response: entryResponse{"200"}})
	b.Entry = append(b.Entry, extra...)
	return json.Marshal(b)
}

// withBundleID returns the PAS response Bundle and its id, giving it one when it has none: the focus must
// name the Bundle (Inferno resolves a non-urn focus by Bundle/<id> in the entry's resource).
func withBundleID(raw []byte) (json.RawMessage, string, error) {
	var top struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	trimmed := bytes.TrimSpace(raw)
	if err := json.Unmarshal(trimmed, &top); err != nil || top.ResourceType != "Bundle" {
		return nil, "", fmt.Errorf("subscriptions: the event's response Bundle is not a FHIR JSON Bundle")
	}
	if top.ID != "" {
		return json.RawMessage(trimmed), top.ID, nil
	}
	id := newID()
	// An object that has a resourceType is not empty: "{" + the id member + "," + the rest stays valid JSON.
	out := make([]byte, 0, len(trimmed)+len(id)+8)
	out = append(out, `{"id":"`+id+`",`...)
	out = append(out, bytes.TrimSpace(trimmed[1:])...)
	return json.RawMessage(out), id, nil
}

// uuidV4 is a random RFC 9562 version 4 UUID (the urn:uuid fullUrl of the status entry).
func uuidV4() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
