package config

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Notice kinds.
const (
	NoticeDeprecation = "deprecation"
	NoticeMaintenance = "maintenance"
	NoticeIncident    = "incident"
)

// validateNotices checks what the Deprecation, Sunset and Link headers rely on beyond the portal's checks of
// every notice (validatePortal: ids, kinds, APIs, required dates and their order): a deprecation narrowed to
// a resource type names one its API serves, only deprecations have a deprecation or sunset date or a type,
// a sunset is after the deprecation (RFC 9745 §2.1), and a link can be sent in a Link header as it is.
func (c *Config) validateNotices() []error {
	apis := map[string]API{}
	for _, a := range c.APIs {
		apis[a.Name] = a
	}
	var errs []error
	for i, n := range c.Notices {
		at := fmt.Sprintf("notices[%d]", i)
		api, known := apis[n.API]
		if n.Resource != "" {
			if n.Kind != NoticeDeprecation {
				errs = append(errs, fmt.Errorf("%s.resource: only a deprecation is narrowed to a resource type", at))
			} else if known && !slices.ContainsFunc(api.Resources, func(r Resource) bool { return r.Type == n.Resource }) &&
				!slices.ContainsFunc(api.Operations, func(o Operation) bool { return o.Type == n.Resource }) {
				errs = append(errs, fmt.Errorf("%s.resource %q: not a type %s serves", at, n.Resource, n.API))
			}
		}
		if n.Kind == NoticeDeprecation {
			if !n.Sunset.IsZero() && n.Sunset.Equal(n.Deprecation) {
				errs = append(errs, fmt.Errorf("%s.sunset: want after its deprecation (RFC 9745 §2.1)", at))
			}
		} else if !n.Sunset.IsZero() || !n.Deprecation.IsZero() {
			errs = append(errs, fmt.Errorf("%s: deprecation and sunset are for a deprecation, not a %s", at, n.Kind))
		}
		if n.Link != "" && !linkable(n.Link) {
			errs = append(errs, fmt.Errorf("%s.link %q: want a URL without spaces, quotes or angle brackets (it is sent in a Link header)", at, n.Link))
		}
	}
	return errs
}

// DeprecationHeaders are the headers every answer of api (for a request on resourceType; "" for none, such
// as a system-level request) carries at now: Deprecation (RFC 9745 §2: "@" and Unix seconds), Sunset (RFC
// 8594 §3: an HTTP-date) and Link rel="deprecation" (RFC 9745 §3). Only deprecations count, only once
// published, and only those of the whole API or of resourceType; an API's deprecations are its sandbox's
// too, so apps meet them before they reach production. When several apply, the earliest
// deprecation and the earliest sunset are the ones announced (a structured-field Date is one item), and
// every notice's link is listed. nil: none applies.
func DeprecationHeaders(notices []Notice, api, resourceType string, now time.Time) http.Header {
	var h http.Header
	var dep, sunset time.Time
	for _, n := range notices {
		if n.Kind != NoticeDeprecation || (n.API != api && n.API+SandboxSuffix != api) || n.Published.IsZero() || now.Before(n.Published) || n.Deprecation.IsZero() ||
			(n.Resource != "" && n.Resource != resourceType) {
			continue
		}
		if h == nil {
			h = http.Header{}
		}
		if dep.IsZero() || n.Deprecation.Before(dep) {
			dep = n.Deprecation
		}
		if !n.Sunset.IsZero() && (sunset.IsZero() || n.Sunset.Before(sunset)) {
			sunset = n.Sunset
		}
		if linkable(n.Link) {
			h.Add("Link", "<"+n.Link+`>; rel="deprecation"; type="text/html"`)
		}
	}
	if h == nil {
		return nil
	}
	h.Set("Deprecation", "@"+strconv.FormatInt(dep.Unix(), 10))
	if !sunset.IsZero() {
		h.Set("Sunset", sunset.UTC().Format(http.TimeFormat))
	}
	return h
}

// NextNoticeChange is the first time after now at which a notice is published: what DeprecationHeaders
// answers changes then, so a component that computes the headers once (fhirwall-xds) must compute them
// again. Zero: no change is scheduled.
func NextNoticeChange(notices []Notice, now time.Time) time.Time {
	var next time.Time
	for _, n := range notices {
		if n.Kind == NoticeDeprecation && n.Published.After(now) && (next.IsZero() || n.Published.Before(next)) {
			next = n.Published
		}
	}
	return next
}

// linkable: raw can stand between a Link header's angle brackets (RFC 8288 §3) as it is.
func linkable(raw string) bool {
	return raw != "" && !strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune(`<>"\\`, r) })
}
