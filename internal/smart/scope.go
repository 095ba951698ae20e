// Package smart parses SMART App Launch 2.x scopes (v1 and v2 forms) into the values policies reason about.
package smart

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Context is the first part of a resource scope.
type Context string

const (
	PatientContext Context = "patient"
	UserContext    Context = "user"
	SystemContext  Context = "system"
)

// Permissions is the set of SMART v2 permission letters a scope grants.
// SMART App Launch 2.x §Scopes for requesting clinical data: c create, r read, u update, d delete, s search.
type Permissions struct {
	Create, Read, Update, Delete, Search bool
}

// Scope is one parsed resource scope such as "patient/Observation.rs?category=laboratory".
type Scope struct {
	Raw          string
	Context      Context
	ResourceType string // a FHIR resource type or "*"
	Permissions  Permissions
	Params       url.Values // granular scope parameters; nil when none
}

// ErrNotResourceScope marks scopes that are valid OAuth scopes but not SMART resource scopes
// (openid, fhirUser, launch/patient, offline_access, ...). They are kept as plain strings.
var ErrNotResourceScope = errors.New("not a SMART resource scope")

// Parse parses one resource scope. It accepts the v1 suffixes "read", "write", "*" and v2 permission
// strings, which must list letters of "cruds" in that order without repeats.
func Parse(s string) (Scope, error) {
	ctx, rest, ok := strings.Cut(s, "/")
	if !ok {
		return Scope{}, ErrNotResourceScope
	}
	switch Context(ctx) {
	case PatientContext, UserContext, SystemContext:
	default:
		return Scope{}, ErrNotResourceScope // e.g. launch/patient
	}
	rest, query, hasQuery := strings.Cut(rest, "?")
	typ, perm, ok := strings.Cut(rest, ".")
	if !ok || typ == "" || perm == "" {
		return Scope{}, fmt.Errorf("scope %q: want context/Type.permissions", s)
	}
	if typ != "*" && !isResourceTypeName(typ) {
		return Scope{}, fmt.Errorf("scope %q: %q is not a resource type name", s, typ)
	}
	sc := Scope{Raw: s, Context: Context(ctx), ResourceType: typ}
	switch perm {
	case "read": // SMART 2.x §scopes-for-requesting-fhir-resources: v1 read == v2 rs
		sc.Permissions = Permissions{Read: true, Search: true}
	case "write": // v1 write == v2 cud
		sc.Permissions = Permissions{Create: true, Update: true, Delete: true}
	case "*":
		sc.Permissions = Permissions{true, true, true, true, true}
	default:
		p, err := parseV2(perm)
		if err != nil {
			return Scope{}, fmt.Errorf("scope %q: %w", s, err)
		}
		sc.Permissions = p
	}
	if hasQuery {
		if sc.Permissions.Create || sc.Permissions.Update || sc.Permissions.Delete {
			// A granular filter narrows what can be returned; it has no defined meaning for writes.
			return Scope{}, fmt.Errorf("scope %q: granular parameters only apply to read and search", s)
		}
		v, err := url.ParseQuery(query)
		if err != nil || len(v) == 0 {
			return Scope{}, fmt.Errorf("scope %q: malformed parameters", s)
		}
		sc.Params = v
	}
	return sc, nil
}

func parseV2(perm string) (Permissions, error) {
	const order = "cruds"
	var p Permissions
	last := -1
	for _, r := range perm {
		i := strings.IndexRune(order, r)
		if i < 0 || i <= last {
			return Permissions{}, fmt.Errorf("permissions %q: want letters of %q in that order", perm, order)
		}
		last = i
		switch r {
		case 'c':
			p.Create = true
		case 'r':
			p.Read = true
		case 'u':
			p.Update = true
		case 'd':
			p.Delete = true
		case 's':
			p.Search = true
		}
	}
	return p, nil
}

func isResourceTypeName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// Set is the parsed form of a token's scope claim.
type Set struct {
	Resource []Scope
	Other    []string // openid, fhirUser, launch/patient, offline_access, ...
	Invalid  []string // malformed resource scopes: ignored (they grant nothing) but reported
}

// ParseSet splits a space-separated scope string (RFC 6749 §3.3).
func ParseSet(claim string) Set {
	var set Set
	for _, s := range strings.Fields(claim) {
		sc, err := Parse(s)
		switch {
		case err == nil:
			set.Resource = append(set.Resource, sc)
		case errors.Is(err, ErrNotResourceScope):
			set.Other = append(set.Other, s)
		default:
			set.Invalid = append(set.Invalid, s)
		}
	}
	return set
}
