package subscriptions

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Canonical URLs this package reads and writes.
const (
	// Topic is the PAS topic (PAS 2.0.1 §Subscription, Basic-PASSubscriptionTopic).
	Topic = "http://hl7.org/fhir/us/davinci-pas/SubscriptionTopic/PASSubscriptionTopic"

	backport          = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
	extFilterCriteria = backport + "backport-filter-criteria"
	extPayloadContent = backport + "backport-payload-content"
	extHeartbeat      = backport + "backport-heartbeat-period"
	extTimeout        = backport + "backport-timeout"
	// StatusProfile is the profile a notification's first entry conforms to (not claimed in its meta.profile).
	StatusProfile = backport + "backport-subscription-status-r4"
)

// Limits on what a subscriber may ask for.
const (
	DefaultTimeout  = 10 * time.Second
	MaxTimeout      = 60 * time.Second
	MinHeartbeat    = 10 * time.Second
	maxHeaders      = 10
	maxHeaderLength = 4096
)

// ErrInvalid wraps every reason a Subscription is refused; the message names the rule.
var ErrInvalid = errors.New("subscription refused")

// errNotSubscription is the one refusal that is a 400: the body is not a Subscription at all.
var errNotSubscription = fmt.Errorf("%w: the body is not a FHIR JSON Subscription", ErrInvalid)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// r4Subscription is what fhirwall reads of an R4 Subscription with the Subscriptions Backport 1.1.0
// extensions (profile backport-subscription).
type r4Subscription struct {
	ResourceType string `json:"resourceType"`
	Criteria     string `json:"criteria"`
	CriteriaExt  *struct {
		Extension []extension `json:"extension"`
	} `json:"_criteria"`
	Channel *struct {
		Extension  []extension `json:"extension"`
		Type       string      `json:"type"`
		Endpoint   string      `json:"endpoint"`
		Payload    string      `json:"payload"`
		PayloadExt *struct {
			Extension []extension `json:"extension"`
		} `json:"_payload"`
		Header []string `json:"header"`
	} `json:"channel"`
}

type extension struct {
	URL              string  `json:"url"`
	ValueString      *string `json:"valueString"`
	ValueCode        *string `json:"valueCode"`
	ValueUnsignedInt *int64  `json:"valueUnsignedInt"`
}

func extensionsOf(exts []extension, url string) []extension {
	var out []extension
	for _, e := range exts {
		if e.URL == url {
			out = append(out, e)
		}
	}
	return out
}

// filterKeys are the names PAS gives the topic's organisation filter: orgIdentifier (the topic's canFilterBy
// and the 2.2.1 example), org-identifier (PAS 2.2.x spec-58) and identifier (PAS 2.0.1 text).
var filterKeys = []string{"orgIdentifier", "org-identifier", "identifier"}

// parse reads and checks a Subscription a client wants created for owner. It returns the subscription to
// store (without id, status and times) or an error wrapping ErrInvalid that names the broken rule.
func parse(body []byte, owner Owner) (Subscription, error) {
	var in r4Subscription
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&in); err != nil || in.ResourceType != "Subscription" {
		return Subscription{}, errNotSubscription
	}
	var s Subscription
	// Backport 1.1.0 backport-subscription: criteria is the topic's canonical URL.
	if in.Criteria != Topic {
		return s, invalid("criteria must be the PAS topic %s", Topic)
	}
	filter, err := parseFilter(in.CriteriaExt, owner)
	if err != nil {
		return s, err
	}
	s.Filter = filter
	ch := in.Channel
	if ch == nil {
		return s, invalid("channel is required")
	}
	if ch.Type != "rest-hook" {
		return s, invalid("channel.type must be rest-hook (the only channel this server supports)")
	}
	if s.Endpoint, err = checkEndpoint(ch.Endpoint, owner.NotifyHosts); err != nil {
		return s, err
	}
	if mt, _, err := mime.ParseMediaType(ch.Payload); err != nil || mt != "application/fhir+json" {
		return s, invalid("channel.payload must be application/fhir+json")
	}
	// backport-subscription: channel.payload.extension[content] is 1..1.
	var payloadExt []extension
	if ch.PayloadExt != nil {
		payloadExt = extensionsOf(ch.PayloadExt.Extension, extPayloadContent)
	}
	if len(payloadExt) != 1 || payloadExt[0].ValueCode == nil {
		return s, invalid("channel._payload needs exactly one %s extension (valueCode id-only or full-resource)", extPayloadContent)
	}
	switch c := *payloadExt[0].ValueCode; c {
	case ContentIDOnly, ContentFullResource, ContentEmpty:
		s.Content = c
	default:
		return s, invalid("payload content %q: want id-only, full-resource or empty", c)
	}
	if s.Headers, err = checkHeaders(ch.Header); err != nil {
		return s, err
	}
	s.Timeout = DefaultTimeout
	if d, ok, err := seconds(ch.Extension, extTimeout); err != nil {
		return s, err
	} else if ok {
		if d < time.Second || d > MaxTimeout {
			return s, invalid("backport-timeout must be 1 to %d seconds", int(MaxTimeout.Seconds()))
		}
		s.Timeout = d
	}
	if d, ok, err := seconds(ch.Extension, extHeartbeat); err != nil {
		return s, err
	} else if ok && d > 0 {
		if d < MinHeartbeat {
			return s, invalid("backport-heartbeat-period must be at least %d seconds", int(MinHeartbeat.Seconds()))
		}
		s.HeartbeatPeriod = d
	}
	return s, nil
}

// parseFilter reads the one backport-filter-criteria: orgIdentifier=<v>[,<v>...]. Every value must be one of
// the owner's identifiers, as system|value or as the bare value (PAS 2.2.1 example: orgIdentifier=1234567893):
// only the submitting organisation may subscribe to its own requests (FHIR-NOTES §Da Vinci PAS). The filter
// is stored as the owner's full system|value identifiers so that a bare value never matches another
// organisation's identifier of another system.
func parseFilter(ext *struct {
	Extension []extension `json:"extension"`
}, owner Owner) ([]string, error) {
	var fs []extension
	if ext != nil {
		fs = extensionsOf(ext.Extension, extFilterCriteria)
	}
	if len(fs) != 1 || fs[0].ValueString == nil {
		return nil, invalid("_criteria needs exactly one %s extension (valueString orgIdentifier=<your organization's identifier>)", extFilterCriteria)
	}
	key, values, ok := strings.Cut(strings.TrimSpace(*fs[0].ValueString), "=")
	if !ok || !slices.Contains(filterKeys, key) || values == "" {
		return nil, invalid("the filter must read orgIdentifier=<your organization's identifier>")
	}
	var out []string
	for _, v := range strings.Split(values, ",") {
		v = strings.TrimSpace(v)
		if u, err := url.QueryUnescape(v); err == nil {
			v = u
		}
		var matched []string
		for _, id := range owner.OrgIdentifiers {
			_, value, _ := strings.Cut(id, "|")
			if v != "" && (v == id || v == value) {
				matched = append(matched, id)
			}
		}
		if len(matched) == 0 {
			return nil, invalid("the filter may name only the identifiers of the organization you act for")
		}
		for _, m := range matched {
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out, nil
}

// checkEndpoint accepts an https URL (http only to a loopback host) whose host is one the owner registered
// (notify_hosts; with a port there, the port must match too). Returns the URL as it will be used.
func checkEndpoint(raw string, hosts []string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return "", invalid("channel.endpoint must be an absolute https URL")
	}
	if u.User != nil || u.Fragment != "" {
		return "", invalid("channel.endpoint may carry no user info and no fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return "", invalid("channel.endpoint must use https (http only to a loopback host)")
		}
	default:
		return "", invalid("channel.endpoint must use https")
	}
	if !HostAllowed(u, hosts) {
		return "", invalid("channel.endpoint's host is not one of the notification hosts registered for your client")
	}
	return u.String(), nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// HostAllowed reports whether u's host is one of hosts (the registry's notify_hosts): the same host name or
// IP, and, when the registered entry has a port, the same port (the scheme's default when u has none).
func HostAllowed(u *url.URL, hosts []string) bool {
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	for _, h := range hosts {
		rh, rp := strings.ToLower(h), ""
		if hh, pp, err := net.SplitHostPort(h); err == nil {
			rh, rp = strings.ToLower(hh), pp
		} else {
			rh = strings.TrimSuffix(strings.TrimPrefix(rh, "["), "]")
		}
		if sameHost(rh, host) && (rp == "" || rp == port) {
			return true
		}
	}
	return false
}

func sameHost(a, b string) bool {
	if ia, ib := net.ParseIP(a), net.ParseIP(b); ia != nil && ib != nil {
		return ia.Equal(ib)
	}
	return a != "" && a == b
}

// forbiddenHeaders are the headers a subscriber may not set: the transport's own, whose values fhirwall
// decides (framing, the target, the body's type), and hop-by-hop headers.
var forbiddenHeaders = []string{"Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection",
	"Te", "Trailer", "Upgrade", "Keep-Alive", "Proxy-Connection", "Expect"}

// checkHeaders reads channel.header: "Name: value" each (R4 Subscription.channel.header), kept to send with
// every notification (Inferno appends an Authorization header there and matches it).
func checkHeaders(hs []string) ([]string, error) {
	if len(hs) > maxHeaders {
		return nil, invalid("at most %d channel.header values", maxHeaders)
	}
	out := make([]string, 0, len(hs))
	for i, h := range hs {
		if len(h) > maxHeaderLength || strings.ContainsAny(h, "\r\n\x00") {
			return nil, invalid("channel.header[%d]: one line of at most %d bytes", i, maxHeaderLength)
		}
		name, value, ok := strings.Cut(h, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || !validHeaderName(name) {
			return nil, invalid("channel.header[%d]: want \"Name: value\"", i)
		}
		if slices.Contains(forbiddenHeaders, http.CanonicalHeaderKey(name)) {
			return nil, invalid("channel.header[%d]: %s is set by the server", i, http.CanonicalHeaderKey(name))
		}
		for _, c := range value {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return nil, invalid("channel.header[%d]: control character in the value", i)
			}
		}
		out = append(out, name+": "+value)
	}
	return out, nil
}

// validHeaderName: an RFC 9110 §5.1 token.
func validHeaderName(n string) bool {
	if n == "" {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)) {
			return false
		}
	}
	return true
}

func seconds(exts []extension, url string) (time.Duration, bool, error) {
	es := extensionsOf(exts, url)
	switch {
	case len(es) == 0:
		return 0, false, nil
	case len(es) > 1 || es[0].ValueUnsignedInt == nil || *es[0].ValueUnsignedInt < 0 || *es[0].ValueUnsignedInt > 1<<31:
		return 0, false, invalid("%s: want one valueUnsignedInt (seconds)", url)
	}
	return time.Duration(*es[0].ValueUnsignedInt) * time.Second, true, nil
}

// answerResource is the Subscription as the server holds it: the client's JSON with id and status set
// (resourceType and id first, the rest as sent).
func answerResource(s Subscription) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(s.Resource, &m); err != nil {
		return nil, fmt.Errorf("subscriptions: stored resource: %w", err)
	}
	delete(m, "resourceType")
	delete(m, "id")
	m["status"], _ = json.Marshal(s.Status)
	delete(m, "_status")
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Subscription","id":` + strconv.Quote(s.ID))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		kb, _ := json.Marshal(k)
		b.WriteByte(',')
		b.Write(kb)
		b.WriteByte(':')
		b.Write(m[k])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
