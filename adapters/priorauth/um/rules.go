package um

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Code systems of the items a rule matches, and of the denial reasons.
const (
	SystemCPT   = "http://www.ama-assn.org/go/cpt"
	SystemHCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
	SystemNDC   = "http://hl7.org/fhir/sid/ndc"
	// SystemDecisionReason is X12 external code source 886, Health Care Services Review Decision Reason Codes:
	// HCR03 of the X12 278 response, PAS extension-reviewAction.reasonCode (required binding
	// ValueSet X12278ReviewDecisionReasonCode, every code of this system).
	SystemDecisionReason = "https://codesystem.x12.org/external/886"
)

// Referred is the verdict Rules.Decide gives an item that a refer rule matches: the payer's UM system decides
// it. Engine resolves it; it never leaves Engine.
const Referred Verdict = "referred"

// Rule ids of decisions no rule of the file made. A rule may not take them, nor "review" (a reviewer's
// decision in the request store).
const (
	RuleNoCoding      = "no-coding"      // the item has no usable code: pended for review
	RuleUM            = "um"             // the payer's UM system decided
	RuleUMUnavailable = "um-unavailable" // referred, but the UM system did not answer well: pended for review
	RuleSandbox       = "sandbox-no-um"  // referred, in a sandbox request: the UM system is never asked; pended
)

// ErrInvalidRules is the kind of every error of ParseRules and LoadRules about the rules themselves.
var ErrInvalidRules = errors.New("invalid prior-auth rules")

// maxRulesBytes bounds a rules file; a payer's list of a few thousand codes is well under it.
const maxRulesBytes = 4 << 20

// Rules is a parsed rules file: for each item the first rule that matches one of its codes decides. Rules is
// immutable and safe for concurrent use.
type Rules struct {
	rules []*rule
}

// Listed is one entry of the public list of items and services that need prior authorization (CMS-0057-F,
// 42 CFR 422.122(c) and siblings): a code or a range as the rules file writes it, or a rule's pattern
// ("*" for every code of the system).
type Listed struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
	Rule    string `json:"rule"`
}

type rule struct {
	id          string
	description string
	line        int
	systems     []string // code system URLs, the file's order
	any         bool
	codes       map[string]map[string]bool // system → normalized code
	ranges      map[string][]codeRange     // system → ranges of normalized codes
	pattern     *regexp.Regexp
	drug        bool
	verdict     Verdict
	reason      *Code
	listed      []Listed
}

type codeRange struct{ lo, hi string }

// contains reports whether c lies in the range: the same length and the same letters in the same places as
// its ends (70551-70553, J0100-J9999, 0001F-0015F), and between them. With the letters fixed, comparing the
// strings compares the numbers their digits make.
func (r codeRange) contains(c string) bool {
	return sameShape(r.lo, c) && r.lo <= c && c <= r.hi
}

func sameShape(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		da, db := isDigit(a[i]), isDigit(b[i])
		if da != db || !da && a[i] != b[i] {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func allDigits(s string) bool {
	for i := range len(s) {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// coding is one usable code of an item: both parts present, the code normalized for its system.
type coding struct{ system, code string }

func (r *rule) matches(cs []coding) bool {
	for _, c := range cs {
		if !slices.Contains(r.systems, c.system) {
			continue
		}
		if r.any || r.codes[c.system][c.code] || r.pattern != nil && r.pattern.MatchString(c.code) {
			return true
		}
		for _, rg := range r.ranges[c.system] {
			if rg.contains(c.code) {
				return true
			}
		}
	}
	return false
}

// Decide decides each item of req by the rules, one ItemResult per item in req's order. The first rule in
// file order that matches one of the item's codes decides; an item no rule matches needs no prior
// authorization (NotRequired); an item with no usable code (a system and a code) is pended for review, since
// nothing can say whether it needs one. A refer rule's items come back Referred: Engine asks the UM system.
// Drug is set by a drug rule, and for every item coded with an NDC or an HCPCS J code whatever decides it.
func (r *Rules) Decide(ctx context.Context, req Request) []ItemResult {
	out := make([]ItemResult, len(req.Items))
	for i, it := range req.Items {
		out[i] = r.decideItem(it)
	}
	return out
}

func (r *Rules) decideItem(it Item) ItemResult {
	cs := usable(it.Codes)
	res := ItemResult{Sequence: it.Sequence, Drug: drugCoded(cs)}
	if len(cs) == 0 {
		res.Verdict, res.Rule = Pended, RuleNoCoding
		return res
	}
	for _, ru := range r.rules {
		if !ru.matches(cs) {
			continue
		}
		res.Verdict, res.Rule = ru.verdict, ru.id
		res.Drug = res.Drug || ru.drug
		if ru.reason != nil {
			reason := *ru.reason
			res.Reason = &reason
		}
		return res
	}
	res.Verdict = NotRequired
	return res
}

// Listed returns the public list of items and services that need prior authorization: every code, range and
// pattern of the rules that are not drug rules (CMS-0057-F leaves drugs out of the prior-authorization
// provisions and their public list), in file order, each under the first system its rule names.
func (r *Rules) Listed() []Listed {
	var out []Listed
	for _, ru := range r.rules {
		if !ru.drug {
			out = append(out, ru.listed...)
		}
	}
	return out
}

// Refers reports whether a rule refers items to the payer's UM system.
func (r *Rules) Refers() bool {
	return slices.ContainsFunc(r.rules, func(ru *rule) bool { return ru.verdict == Referred })
}

func usable(codes []Code) []coding {
	var out []coding
	for _, c := range codes {
		sys, code := strings.TrimSpace(c.System), normalize(strings.TrimSpace(c.System), c.Code)
		if sys != "" && code != "" {
			out = append(out, coding{sys, code})
		}
	}
	return out
}

// drugCoded reports whether an item is a drug by its codes alone: an NDC, or an HCPCS Level II J code (drugs
// administered other than orally).
func drugCoded(cs []coding) bool {
	for _, c := range cs {
		if c.system == SystemNDC || c.system == SystemHCPCS && len(c.code) == 5 && c.code[0] == 'J' && allDigits(c.code[1:]) {
			return true
		}
	}
	return false
}

// normalize gives a code the one spelling rules and items are compared in: CPT and HCPCS codes upper case;
// an NDC written with hyphens in one of its 10-digit layouts (4-4-2, 5-3-2, 5-4-1) or as 5-4-2 becomes the
// 11-digit 5-4-2 form without hyphens (the HIPAA form), so that one NDC matches however it is written.
func normalize(system, code string) string {
	code = strings.TrimSpace(code)
	switch system {
	case SystemCPT, SystemHCPCS:
		return strings.ToUpper(code)
	case SystemNDC:
		return normalizeNDC(code)
	}
	return code
}

func normalizeNDC(c string) string {
	parts := strings.Split(c, "-")
	if len(parts) != 3 {
		return c
	}
	shape := [3]int{len(parts[0]), len(parts[1]), len(parts[2])}
	switch shape {
	case [3]int{4, 4, 2}, [3]int{5, 3, 2}, [3]int{5, 4, 1}, [3]int{5, 4, 2}:
	default:
		return c
	}
	var b strings.Builder
	for i, w := range [3]int{5, 4, 2} {
		if !allDigits(parts[i]) {
			return c
		}
		b.WriteString(strings.Repeat("0", w-len(parts[i])))
		b.WriteString(parts[i])
	}
	return b.String()
}

// checkCode says what is wrong with a code a rule writes for system, normalized; "" when nothing is.
func checkCode(system, code string) string {
	switch {
	case code == "":
		return "empty code"
	case system == SystemCPT || system == SystemHCPCS:
		if len(code) != 5 || strings.IndexFunc(code, func(r rune) bool { return !('0' <= r && r <= '9' || 'A' <= r && r <= 'Z') }) >= 0 {
			return "not a CPT or HCPCS code (five letters or digits)"
		}
	case system == SystemNDC:
		if len(code) != 11 || !allDigits(code) {
			return "not an NDC in 11 digits or with hyphens (4-4-2, 5-3-2, 5-4-1, 5-4-2)"
		}
	case len(code) > 64 || strings.ContainsFunc(code, func(r rune) bool { return r <= ' ' }):
		return "not a code (at most 64 characters, no spaces)"
	}
	return ""
}

// LoadRules reads and parses a rules file.
func LoadRules(path string) (*Rules, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRulesBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxRulesBytes {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, ErrInvalidRules, maxRulesBytes)
	}
	r, err := ParseRules(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// ParseRules parses the YAML of a rules file (docs/prior-auth-rules.md). It refuses unknown fields and
// reports every problem it finds at once, one line each, with the line and the rule's id; every error is
// ErrInvalidRules.
func ParseRules(b []byte) (*Rules, error) {
	if len(b) > maxRulesBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidRules, maxRulesBytes)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidRules, strings.ReplaceAll(err.Error(), "\n", " "))
	}
	var p parser
	rules := p.file(&doc)
	if len(p.errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRules, p.err())
	}
	return &Rules{rules: rules}, nil
}

// parser walks the YAML nodes itself rather than decoding into structs, to name the line of every problem
// and to go on after the first.
type parser struct {
	errs []lineError
}

type lineError struct {
	line int
	err  error
}

func (p *parser) errf(line int, format string, args ...any) {
	p.errs = append(p.errs, lineError{line, fmt.Errorf("line %d: "+format, append([]any{line}, args...)...)})
}

// err joins the problems found, in line order.
func (p *parser) err() error {
	slices.SortStableFunc(p.errs, func(a, b lineError) int { return a.line - b.line })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e.err
	}
	return errors.Join(errs...)
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// fields returns the values of mapping n by key, and reports keys not in allowed, repeated keys, and n not
// being a mapping at all (then nil).
func (p *parser) fields(n *yaml.Node, what string, allowed ...string) map[string]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		p.errf(n.Line, "%s: want a mapping of %s", what, strings.Join(allowed, ", "))
		return nil
	}
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		switch {
		case k.Kind != yaml.ScalarNode || !slices.Contains(allowed, k.Value):
			p.errf(k.Line, "%s: unknown field %q (want %s)", what, k.Value, strings.Join(allowed, ", "))
		case out[k.Value] != nil:
			p.errf(k.Line, "%s: field %q given twice", what, k.Value)
		default:
			out[k.Value] = v
		}
	}
	return out
}

// scalar returns the text of a scalar node, reporting anything else. A null is "" (and not ok).
func (p *parser) scalar(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.errf(n.Line, "%s: want a single value", what)
		return "", false
	}
	if n.Tag == "!!null" {
		return "", false
	}
	return strings.TrimSpace(n.Value), true
}

func (p *parser) boolean(n *yaml.Node, what string) bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		p.errf(n.Line, "%s: want true or false", what)
	}
	return b
}

func (p *parser) list(n *yaml.Node, what string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		p.errf(n.Line, "%s: want a list", what)
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = deref(c)
	}
	return out
}

func (p *parser) file(doc *yaml.Node) []*rule {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		p.errf(1, "the file is empty: it needs a list of rules (an empty list would let every item through without prior authorization)")
		return nil
	}
	root := deref(doc.Content[0])
	f := p.fields(root, "the file", "rules")
	if f == nil {
		return nil
	}
	list := f["rules"]
	if list == nil {
		p.errf(root.Line, "no rules: field \"rules\" is missing")
		return nil
	}
	items := p.list(list, "rules")
	if list.Kind == yaml.SequenceNode && len(items) == 0 {
		p.errf(list.Line, "no rules: an empty list would let every item through without prior authorization")
	}
	var rules []*rule
	ids := map[string]int{}
	for i, n := range items {
		r := p.rule(i+1, n)
		if r == nil {
			continue
		}
		if prev, dup := ids[r.id]; dup && r.id != "" {
			p.errf(r.line, "rule %q: id already used by the rule at line %d", r.id, prev)
		} else {
			ids[r.id] = r.line
		}
		p.reachable(r, rules)
		rules = append(rules, r)
	}
	return rules
}

// reachable reports the codes of r that an earlier rule always decides first: they can never reach r, which
// is a mistake in the file, and one that could let an item through that the author meant to stop.
func (p *parser) reachable(r *rule, earlier []*rule) {
	for _, sys := range r.systems {
		codes := make([]string, 0, len(r.codes[sys]))
		for c := range r.codes[sys] {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		for _, c := range codes {
			for _, e := range earlier {
				if e.matches([]coding{{sys, c}}) {
					p.errf(r.line, "rule %q: code %s (%s) is decided first by rule %q at line %d: it can never match here",
						r.id, c, sys, e.id, e.line)
					break
				}
			}
		}
	}
}

// peekID returns the first id a rule's mapping gives, to name the rule in every problem found in it.
func peekID(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := deref(n.Content[i]), deref(n.Content[i+1]); k.Value == "id" && v.Kind == yaml.ScalarNode {
			return strings.TrimSpace(v.Value)
		}
	}
	return ""
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (p *parser) rule(index int, n *yaml.Node) *rule {
	label := fmt.Sprintf("rule #%d", index)
	if id := peekID(n); id != "" {
		label = fmt.Sprintf("rule %q", id)
	}
	f := p.fields(n, label, "id", "description", "match", "drug", "action", "reason")
	if f == nil {
		return nil
	}
	r := &rule{line: n.Line}
	if v := f["id"]; v == nil {
		p.errf(n.Line, "%s: id is missing", label)
	} else if id, _ := p.scalar(v, label+": id"); v.Kind == yaml.ScalarNode {
		switch {
		case !idPattern.MatchString(id):
			p.errf(v.Line, "%s: id %q: want letters, digits, '.', '_' or '-', at most 64", label, id)
		case id == RuleNoCoding || id == RuleUM || id == RuleUMUnavailable || id == "review":
			p.errf(v.Line, "%s: id %q is reserved for fhirwall's own decisions", label, id)
		default:
			r.id = id
		}
	}
	if v := f["description"]; v != nil {
		r.description, _ = p.scalar(v, label+": description")
	}
	if v := f["drug"]; v != nil {
		r.drug = p.boolean(v, label+": drug")
	}

	var act string
	if v := f["action"]; v == nil {
		p.errf(n.Line, "%s: action is missing (approve, deny, pend or refer)", label)
	} else {
		act, _ = p.scalar(v, label+": action")
		switch act {
		case "approve":
			r.verdict = Approved
		case "deny":
			r.verdict = Denied
		case "pend":
			r.verdict = Pended
		case "refer":
			r.verdict = Referred
		default:
			p.errf(v.Line, "%s: action %q: want approve, deny, pend or refer", label, act)
		}
	}
	switch v := f["reason"]; {
	case v != nil && act != "deny":
		p.errf(v.Line, "%s: a reason belongs only to a deny rule", label)
	case v == nil && act == "deny":
		p.errf(n.Line, "%s: a deny rule needs a reason {code, display} from X12 886 (CMS-0057-F: a specific reason for every denial)", label)
	case v != nil:
		r.reason = p.reason(v, label)
	}

	if v := f["match"]; v == nil {
		p.errf(n.Line, "%s: match is missing", label)
	} else {
		p.match(v, label, r)
	}
	return r
}

func (p *parser) reason(n *yaml.Node, label string) *Code {
	what := label + ": reason"
	f := p.fields(n, what, "system", "code", "display")
	if f == nil {
		return nil
	}
	c := &Code{System: SystemDecisionReason}
	if v := f["system"]; v != nil {
		if s, _ := p.scalar(v, what+": system"); s != SystemDecisionReason {
			p.errf(v.Line, "%s: system %q: a denial reason is from X12 886 (%s)", what, s, SystemDecisionReason)
		}
	}
	if v := f["code"]; v == nil {
		p.errf(n.Line, "%s: code is missing", what)
	} else {
		c.Code, _ = p.scalar(v, what+": code")
		// X12 HCR03 is an AN 1/30 element.
		if c.Code == "" || len(c.Code) > 30 || strings.ContainsFunc(c.Code, func(r rune) bool { return r <= ' ' }) {
			p.errf(v.Line, "%s: code %q: want 1 to 30 characters without spaces (X12 HCR03)", what, c.Code)
		}
	}
	if v := f["display"]; v == nil {
		p.errf(n.Line, "%s: display is missing: the provider reads it", what)
	} else if c.Display, _ = p.scalar(v, what+": display"); c.Display == "" {
		p.errf(v.Line, "%s: display is empty: the provider reads it", what)
	}
	return c
}

// system resolves a system as a rule writes it: an alias or a URL (or URN).
func system(s string) (string, bool) {
	switch strings.ToLower(s) {
	case "cpt":
		return SystemCPT, true
	case "hcpcs":
		return SystemHCPCS, true
	case "ndc":
		return SystemNDC, true
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Opaque == "" && u.Host == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' }) {
		return "", false
	}
	return s, true
}

func (p *parser) match(n *yaml.Node, label string, r *rule) {
	what := label + ": match"
	f := p.fields(n, what, "system", "systems", "codes", "ranges", "pattern", "any")
	if f == nil {
		return
	}
	var written []*yaml.Node
	switch sys, syss := f["system"], f["systems"]; {
	case sys != nil && syss != nil:
		p.errf(sys.Line, "%s: give system or systems, not both", what)
	case sys != nil:
		written = []*yaml.Node{sys}
	case syss != nil:
		written = p.list(syss, what+": systems")
		if syss.Kind == yaml.SequenceNode && len(written) == 0 {
			p.errf(syss.Line, "%s: systems is empty", what)
		}
	default:
		p.errf(n.Line, "%s: system is missing (cpt, hcpcs, ndc or a code system URL)", what)
	}
	for _, w := range written {
		s, _ := p.scalar(w, what+": system")
		u, ok := system(s)
		switch {
		case !ok:
			p.errf(w.Line, "%s: system %q: want cpt, hcpcs, ndc or a code system URL", what, s)
		case slices.Contains(r.systems, u):
			p.errf(w.Line, "%s: system %q given twice", what, s)
		default:
			r.systems = append(r.systems, u)
		}
	}

	if v := f["any"]; v != nil {
		r.any = p.boolean(v, what+": any")
		if r.any && (f["codes"] != nil || f["ranges"] != nil || f["pattern"] != nil) {
			p.errf(v.Line, "%s: any: true matches every code of the system: drop codes, ranges and pattern", what)
		}
	}
	if !r.any && f["codes"] == nil && f["ranges"] == nil && f["pattern"] == nil {
		p.errf(n.Line, "%s: give codes, ranges, a pattern, or any: true", what)
	}
	if r.any && len(r.systems) > 0 {
		r.listed = append(r.listed, Listed{System: r.systems[0], Code: "*", Display: r.description, Rule: r.id})
	}
	if v := f["codes"]; v != nil {
		p.codes(v, what, r)
	}
	if v := f["ranges"]; v != nil {
		p.ranges(v, what, r)
	}
	if v := f["pattern"]; v != nil {
		s, _ := p.scalar(v, what+": pattern")
		// The pattern must match the whole code: a pattern matching part of one would decide codes its
		// author never meant.
		re, err := regexp.Compile(`^(?:` + s + `)$`)
		switch {
		case s == "":
			p.errf(v.Line, "%s: pattern is empty", what)
		case err != nil:
			p.errf(v.Line, "%s: pattern %q: %v", what, s, err)
		default:
			r.pattern = re
			if len(r.systems) > 0 {
				r.listed = append(r.listed, Listed{System: r.systems[0], Code: s, Display: r.description, Rule: r.id})
			}
		}
	}
}

// entry reads one entry of codes or ranges: the value alone, or a mapping of it (under key) and its display.
func (p *parser) entry(n *yaml.Node, what, key string) (value, display string, ok bool) {
	if n.Kind == yaml.MappingNode {
		f := p.fields(n, what, key, "display")
		if f == nil {
			return "", "", false
		}
		v := f[key]
		if v == nil {
			p.errf(n.Line, "%s: %s is missing", what, key)
			return "", "", false
		}
		if d := f["display"]; d != nil {
			display, _ = p.scalar(d, what+": display")
		}
		n = v
	}
	value, ok = p.scalar(n, what)
	if !ok || value == "" {
		p.errf(n.Line, "%s: empty %s", what, key)
		return "", "", false
	}
	return value, display, true
}

func (p *parser) codes(n *yaml.Node, what string, r *rule) {
	if r.codes == nil {
		r.codes = map[string]map[string]bool{}
	}
	for _, e := range p.list(n, what+": codes") {
		written, display, ok := p.entry(e, what+": codes", "code")
		if !ok {
			continue
		}
		for _, sys := range r.systems {
			c := normalize(sys, written)
			if msg := checkCode(sys, c); msg != "" {
				hint := ""
				if strings.Contains(written, "-") && sys != SystemNDC {
					hint = " (a range goes under ranges)"
				}
				p.errf(e.Line, "%s: code %q: %s%s", what, written, msg, hint)
				break
			}
			if r.codes[sys][c] {
				p.errf(e.Line, "%s: code %q given twice", what, written)
				break
			}
			if r.codes[sys] == nil {
				r.codes[sys] = map[string]bool{}
			}
			r.codes[sys][c] = true
		}
		if len(r.systems) > 0 {
			if display == "" {
				display = r.description
			}
			r.listed = append(r.listed, Listed{System: r.systems[0], Code: written, Display: display, Rule: r.id})
		}
	}
}

func (p *parser) ranges(n *yaml.Node, what string, r *rule) {
	if r.ranges == nil {
		r.ranges = map[string][]codeRange{}
	}
	for _, e := range p.list(n, what+": ranges") {
		written, display, ok := p.entry(e, what+": ranges", "range")
		if !ok {
			continue
		}
		lo, hi, found := strings.Cut(written, "-")
		if !found || strings.Contains(hi, "-") {
			p.errf(e.Line, "%s: range %q: want two codes joined by one '-', like 70551-70553", what, written)
			continue
		}
		for _, sys := range r.systems {
			rg := codeRange{normalize(sys, lo), normalize(sys, hi)}
			msg := checkCode(sys, rg.lo)
			if msg == "" {
				msg = checkCode(sys, rg.hi)
			}
			switch {
			case msg != "":
				p.errf(e.Line, "%s: range %q: %s", what, written, msg)
			case !sameShape(rg.lo, rg.hi):
				p.errf(e.Line, "%s: range %q: both ends need the same length and the same letters in the same places", what, written)
			case rg.lo > rg.hi:
				p.errf(e.Line, "%s: range %q: the first code is after the last", what, written)
			default:
				r.ranges[sys] = append(r.ranges[sys], rg)
				continue
			}
			break
		}
		if len(r.systems) > 0 {
			if display == "" {
				display = r.description
			}
			r.listed = append(r.listed, Listed{System: r.systems[0], Code: written, Display: display, Rule: r.id})
		}
	}
}
