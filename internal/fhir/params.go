package fhir

import (
	"fmt"
	"net/url"
	"strings"
)

// Param is one occurrence of a search or operation parameter (R4 §3.1.1 search). A repeated parameter is an
// AND and gives one Param per occurrence; a comma-separated value is an OR list and gives one Param with
// several Values.
type Param struct {
	Key        string   // as sent, decoded: "subject:Patient.name"
	Name       string   // "subject"; "_has" for a reverse chain
	Modifier   string   // "missing", "iterate", …; empty when the modifier is a type
	TargetType string   // the type modifier of a reference parameter: "Patient" in subject:Patient
	Chain      []string // the chained parameters after the first ".", each as sent: ["organization", "name"]
	Has        *Has     // reverse chaining only
	Values     []string // the OR list; prefixes such as "ge" stay in the value
}

// Has is a reverse chain, _has:TargetType:RefParam:Param (R4 §3.1.1.4.9). Param may itself be a chain or
// another _has.
type Has struct {
	TargetType string
	RefParam   string
	Param      string
}

// Limits on what one request may carry; past them the request is refused as too large.
const (
	maxParams   = 1000
	maxKeyLen   = 256
	maxHasDepth = 4
)

// ParseForm parses an application/x-www-form-urlencoded string, a query or a _search body, into parameters.
func ParseForm(s string) ([]Param, error) {
	p, _, err := parseForm(s)
	return p, err
}

// parseForm also returns the decoded pairs as url.Values, so a caller can rebuild the query. A ";" is refused:
// some servers split on it and Go does not, and the two must not disagree about the parameters.
func parseForm(s string) ([]Param, url.Values, error) {
	params, vals := []Param{}, url.Values{}
	if strings.Contains(s, ";") {
		return nil, nil, unsupported("';' in a query or form")
	}
	for pair := range strings.SplitSeq(s, "&") {
		if pair == "" {
			continue
		}
		if len(params) == maxParams {
			return nil, nil, fmt.Errorf("%w: more than %d parameters", ErrTooLarge, maxParams)
		}
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err1 := url.QueryUnescape(rawKey)
		value, err2 := url.QueryUnescape(rawValue)
		if err1 != nil || err2 != nil {
			return nil, nil, unsupported("malformed parameter %q", pair)
		}
		p, err := parseParam(key, value)
		if err != nil {
			return nil, nil, err
		}
		params = append(params, p)
		vals[key] = append(vals[key], value)
	}
	return params, vals, nil
}

func parseParam(key, value string) (Param, error) {
	p, err := parseKey(key, 0)
	if err != nil {
		return Param{}, err
	}
	p.Values, err = splitValues(value)
	if err != nil {
		return Param{}, fmt.Errorf("%w (parameter %q)", err, key)
	}
	return p, nil
}

// parseKey parses name[:modifier|:Type][.chain…] or _has:Type:refParam:param.
func parseKey(key string, depth int) (Param, error) {
	if key == "" || len(key) > maxKeyLen {
		return Param{}, unsupported("parameter name %q", key)
	}
	for i := 0; i < len(key); i++ {
		if !isKeyChar(key[i]) {
			return Param{}, unsupported("parameter name %q", key)
		}
	}
	p := Param{Key: key, Chain: []string{}}
	if strings.HasPrefix(key, "_has:") {
		h, err := parseHas(key, depth)
		p.Name, p.Has = "_has", h
		return p, err
	}
	head, chain, chained := strings.Cut(key, ".")
	name, mod, err := parseElement(head, key)
	if err != nil {
		return Param{}, err
	}
	p.Name = name
	if IsResourceTypeName(mod) {
		p.TargetType = mod
	} else {
		p.Modifier = mod
	}
	if chained { // R4 §3.1.1.4.8 chained parameters
		for link := range strings.SplitSeq(chain, ".") {
			if _, _, err := parseElement(link, key); err != nil {
				return Param{}, err
			}
			p.Chain = append(p.Chain, link)
		}
	}
	return p, nil
}

// parseElement splits one link of a name: a parameter name and at most one modifier or type.
func parseElement(s, key string) (name, mod string, err error) {
	name, mod, hasMod := strings.Cut(s, ":")
	if !isParamName(name) || hasMod && !isModifier(mod) {
		return "", "", unsupported("parameter name %q", key)
	}
	return name, mod, nil
}

// parseHas parses a reverse chain (R4 §3.1.1.4.9): _has:Observation:patient:code, nested _has allowed.
func parseHas(key string, depth int) (*Has, error) {
	if depth >= maxHasDepth {
		return nil, unsupported("_has nested too deep in %q", key)
	}
	parts := strings.SplitN(key, ":", 4)
	if len(parts) != 4 || !IsResourceType(parts[1]) || !isParamName(parts[2]) {
		return nil, unsupported("reverse chain %q", key)
	}
	if _, err := parseKey(parts[3], depth+1); err != nil {
		return nil, err
	}
	return &Has{TargetType: parts[1], RefParam: parts[2], Param: parts[3]}, nil
}

func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == ':' || c == '.'
}

// isParamName: a SearchParameter code or a result parameter: a letter or "_", then letters, digits, "-", "_".
func isParamName(s string) bool {
	if s == "" || !(s[0] == '_' || s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// isModifier: a modifier code (missing, not-in, iterate, …) or an R4 resource type.
func isModifier(s string) bool {
	if IsResourceTypeName(s) {
		return IsResourceType(s)
	}
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// splitValues splits an OR list on unescaped commas (R4 §3.1.1.5.7 escaping). "\," becomes a literal comma in
// its value; other escapes ("\\", "\|", "\$") are kept as sent, for the FHIR server to read.
func splitValues(v string) ([]string, error) {
	if !strings.Contains(v, ",") && !strings.Contains(v, `\`) {
		return []string{v}, nil
	}
	var out []string
	var cur strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\':
			if i+1 == len(v) {
				return nil, unsupported("value ends in an escape")
			}
			i++
			if v[i] != ',' {
				cur.WriteByte('\\')
			}
			cur.WriteByte(v[i])
		case c == ',':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(out, cur.String()), nil
}
