package priorauth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Subscriptions Backport R4 (hl7.fhir.uv.subscriptions-backport.r4 1.1.0) and the PAS topic.
const (
	PASTopic              = "http://hl7.org/fhir/us/davinci-pas/SubscriptionTopic/PASSubscriptionTopic"
	BackportProfile       = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"
	BackportFilterURL     = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria"
	BackportPayloadURL    = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
	BackportHeartbeatURL  = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period"
	BackportTimeoutURL    = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-timeout"
	PayloadIDOnly         = "id-only"
	PayloadFullResource   = "full-resource"
	NotificationHandshake = "handshake"
	NotificationHeartbeat = "heartbeat"
	NotificationEvent     = "event-notification"
)

// Subscription is a rest-hook Subscription on the PAS topic, filtered to one requesting organisation
// (orgIdentifier, the PAS 2.2.1 example's filter: the organisation's NPI).
type Subscription struct {
	Endpoint       string
	PayloadContent string   // PayloadIDOnly or PayloadFullResource
	OrgIdentifier  string   // e.g. OrgA.NPI
	Headers        []string // channel.header: sent back on every notification
}

// JSON is the Subscription resource (status requested).
func (s Subscription) JSON() []byte {
	sub := map[string]any{
		"resourceType": "Subscription",
		"meta":         map[string]any{"profile": []any{BackportProfile}},
		"status":       "requested",
		"end":          time.Now().UTC().Add(24 * time.Hour).Format(time.RFC3339),
		"reason":       "fhirwall prior-auth e2e: decisions on org requests",
		"criteria":     PASTopic,
		"_criteria": map[string]any{"extension": []any{map[string]any{"url": BackportFilterURL,
			"valueString": "orgIdentifier=" + s.OrgIdentifier}}},
		"channel": map[string]any{
			"extension": []any{
				map[string]any{"url": BackportTimeoutURL, "valueUnsignedInt": 30},
			},
			"type":     "rest-hook",
			"endpoint": s.Endpoint,
			"payload":  "application/fhir+json",
			"_payload": map[string]any{"extension": []any{map[string]any{"url": BackportPayloadURL, "valueCode": s.PayloadContent}}},
		},
	}
	if len(s.Headers) > 0 {
		sub["channel"].(map[string]any)["header"] = s.Headers
	}
	b, _ := json.Marshal(sub)
	return b
}

// Notification is one body a rest-hook endpoint received, read as a Backport R4 notification Bundle
// (type history, entry[0] a SubscriptionStatus Parameters).
type Notification struct {
	Raw      []byte
	Header   http.Header
	Path     string
	Received time.Time

	BundleType   string
	Type         string // handshake, heartbeat, event-notification
	Status       string // the subscription's status parameter
	Subscription string // the subscription parameter's reference
	Focus        []string
	// EntriesWithoutRequestResponse counts entries lacking request or response (Inferno wants both on every
	// entry of a history Bundle).
	EntriesWithoutRequestResponse int
	// Resources are the resources of entries after entry[0] (a full-resource notification's payload).
	Resources []map[string]any
	Problem   string // why the body could not be read as a notification
}

// ReadNotification reads a notification body.
func ReadNotification(raw []byte) Notification {
	n := Notification{Raw: raw}
	var b map[string]any
	if err := json.Unmarshal(raw, &b); err != nil || b["resourceType"] != "Bundle" {
		n.Problem = "not a Bundle"
		return n
	}
	n.BundleType = str(b["type"])
	entries := list(b["entry"])
	if len(entries) == 0 {
		n.Problem = "no entries"
		return n
	}
	for i, e := range entries {
		if e["request"] == nil || e["response"] == nil {
			n.EntriesWithoutRequestResponse++
		}
		res, _ := e["resource"].(map[string]any)
		if i == 0 {
			if res == nil || res["resourceType"] != "Parameters" {
				n.Problem = "entry[0] is not a Parameters"
				continue
			}
			for _, p := range list(res["parameter"]) {
				switch p["name"] {
				case "type":
					n.Type = str(p["valueCode"])
				case "status":
					n.Status = str(p["valueCode"])
				case "subscription":
					if r, ok := p["valueReference"].(map[string]any); ok {
						n.Subscription = str(r["reference"])
					}
				case "notification-event":
					for _, part := range list(p["part"]) {
						if part["name"] == "focus" {
							if r, ok := part["valueReference"].(map[string]any); ok {
								n.Focus = append(n.Focus, str(r["reference"]))
							}
						}
					}
				}
			}
			continue
		}
		if res != nil {
			n.Resources = append(n.Resources, res)
		}
	}
	return n
}

// Names reports whether the notification's focus or its resources name the ClaimResponse id.
func (n Notification) Names(claimResponseID string) bool {
	for _, f := range n.Focus {
		if strings.HasSuffix(f, "ClaimResponse/"+claimResponseID) {
			return true
		}
	}
	for _, r := range n.Resources {
		if r["resourceType"] == "ClaimResponse" && r["id"] == claimResponseID {
			return true
		}
		if r["resourceType"] == "Bundle" {
			for _, e := range list(r["entry"]) {
				if cr, ok := e["resource"].(map[string]any); ok && cr["resourceType"] == "ClaimResponse" && cr["id"] == claimResponseID {
					return true
				}
			}
		}
	}
	return false
}

// ResponseBundles are the PAS response Bundles a full-resource notification carries.
func (n Notification) ResponseBundles() []map[string]any {
	var out []map[string]any
	for _, r := range n.Resources {
		if r["resourceType"] == "Bundle" && r["type"] == "collection" {
			out = append(out, r)
		}
	}
	return out
}

// OfSubscription reports whether the notification is for the Subscription with this id.
func (n Notification) OfSubscription(id string) bool {
	return id != "" && (n.Subscription == "Subscription/"+id || strings.HasSuffix(n.Subscription, "/Subscription/"+id))
}

// Listener is a rest-hook endpoint on 127.0.0.1 (a registered notify host of provider-org-a) that records
// every body it receives and answers 200.
type Listener struct {
	srv     *httptest.Server
	mu      sync.Mutex
	got     []Notification
	arrived chan struct{}
}

// NewListener starts a listener on 127.0.0.1 and a free port.
func NewListener() *Listener {
	l := &Listener{arrived: make(chan struct{}, 1)}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		n := ReadNotification(raw)
		n.Header, n.Path, n.Received = r.Header.Clone(), r.URL.Path, time.Now()
		l.mu.Lock()
		l.got = append(l.got, n)
		l.mu.Unlock()
		select {
		case l.arrived <- struct{}{}:
		default:
		}
		w.WriteHeader(http.StatusOK)
	}))
	return l
}

// URL is the listener's base URL (http://127.0.0.1:<port>); any path under it is recorded.
func (l *Listener) URL() string { return l.srv.URL }

// Close stops the listener.
func (l *Listener) Close() { l.srv.Close() }

// Received is every notification so far, in arrival order.
func (l *Listener) Received() []Notification {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Notification(nil), l.got...)
}

// Wait returns the notifications once done accepts them, or an error when ctx ends first.
func (l *Listener) Wait(ctx context.Context, done func([]Notification) bool) ([]Notification, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		got := l.Received()
		if done(got) {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("waiting for notifications: %w (%d received)", ctx.Err(), len(got))
		case <-l.arrived:
		case <-tick.C:
		}
	}
}

// Matching filters notifications.
func Matching(ns []Notification, keep func(Notification) bool) []Notification {
	var out []Notification
	for _, n := range ns {
		if keep(n) {
			out = append(out, n)
		}
	}
	return out
}
