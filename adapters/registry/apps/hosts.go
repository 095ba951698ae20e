package apps

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/fhirwall/fhirwall/internal/smart"
)

// asciiHost refuses a URL whose host is written in Unicode: an internationalised domain name reads as another
// host to the reviewer and the member who see it (Cyrillic "ехаmple.com" is not example.com), while its
// A-label (xn--…, RFC 5890) is the name DNS and browsers use. The registrant writes that form. A URL that
// does not parse is the caller's other checks' to report.
func asciiHost(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return nil
	}
	// url.Parse has already unescaped a percent-encoded host, so "%D0%B5xample.com" is caught too.
	if strings.ContainsFunc(u.Host, func(c rune) bool { return c > 0x7e }) {
		return errors.New("write an internationalised host name as its A-label (xn--…)")
	}
	return nil
}

// sharedAddressSpace is RFC 6598's carrier-grade NAT range (100.64.0.0/10): not private by net/netip's
// reckoning, yet inside providers' networks (Alibaba Cloud's metadata service is 100.100.100.200).
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// nat64 is RFC 6052's well-known NAT64 prefix: 64:ff9b::7f00:1 reaches 127.0.0.1 through a translator.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// fetchableHost refuses a URL the servers would fetch on a registrant's word (Keycloak fetches a
// private_key_jwt client's jwks_uri) when it names the servers' own network: localhost, an IP address that
// is not a public unicast one (loopback, private, link-local such as a cloud metadata service, unspecified,
// multicast, shared address space, or one of those behind NAT64), or a numeric host that is no DNS name
// but that resolvers read as an address (127.1, 2130706433, 0x7f.1: no top-level domain is all digits,
// RFC 3696 §2). A DNS name that resolves to such an address is the fetcher's egress policy's to refuse:
// checking it here would be undone by the next resolution.
func fetchableHost(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return nil // validHTTPSURL reports it
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return errors.New("names this server's own host; keys are fetched from a public https host")
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		labels := strings.Split(host, ".")
		last := labels[len(labels)-1]
		if last != "" && (strings.Trim(last, "0123456789") == "" || strings.HasPrefix(last, "0x")) {
			return errors.New("a numeric host that is not an IP address in standard form (resolvers read it as one); name a public host")
		}
		return nil // a DNS name
	}
	if !publicAddr(ip) {
		return errors.New("names a loopback, private or link-local address; keys are fetched from a public https host")
	}
	return nil
}

func publicAddr(ip netip.Addr) bool {
	ip = ip.WithZone("").Unmap()
	if nat64.Contains(ip) {
		b := ip.As16()
		return publicAddr(netip.AddrFrom4([4]byte(b[12:])))
	}
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !ip.IsLoopback() && !sharedAddressSpace.Contains(ip)
}

// plainText refuses what would make a registered value read as another where a reviewer or a member sees
// it (the reviewer console, Keycloak's consent page, logs): control characters (a line break forges a log
// line), bidirectional formatting characters (a right-to-left override turns "Journal app" around), and
// invalid UTF-8.
func plainText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return errors.New("holds a control character")
	}
	if strings.ContainsFunc(s, bidiControl) {
		return errors.New("holds a bidirectional control character (it would make the value read as another)")
	}
	return nil
}

// bidiControl reports the Unicode bidirectional formatting characters (UAX #9 §2: embeddings, overrides,
// isolates and marks) that reorder what a reviewer or a member reads without being seen themselves.
func bidiControl(r rune) bool {
	return r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0x200e || r == 0x200f || r == 0x061c
}

// scopeForLaunch refuses a resource scope the app's launch cannot rightly hold (SMART App Launch 2.2
// §Scopes, SMART Backend Services §Scopes): system/ scopes act for no user and are a backend service's
// (client_credentials); patient/ and user/ scopes are granted by a user signing in to a standalone or EHR
// launch (authorization_code). A user-facing app, a public one even, holding system/*.rs would carry
// organisation-wide access in every token a user signs in for. What does not parse as a resource scope is
// not its to judge.
func scopeForLaunch(s string, backend, interactive bool) error {
	sc, err := smart.Parse(s)
	if err != nil {
		return nil
	}
	switch {
	case sc.Context == smart.SystemContext && !backend:
		return errors.New("system/ scopes are a backend service's (launch type backend; grant type client_credentials); a user-facing app asks for patient/ or user/ scopes")
	case sc.Context != smart.SystemContext && !interactive:
		return errors.New("a backend service acts for no user: it asks for system/ scopes (patient/ and user/ scopes need a standalone or EHR launch)")
	}
	return nil
}
