package policy

import (
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A memo keeps, across the evaluations of one compiled set, the values of rules and function calls whose answer
// is fixed by what they read: their arguments (part of the reference topdown caches them under), the data
// (fixed for a compiled set) and a few stretches of the input (the identity's scopes, say). smart.response_types
// for a token's scopes is then computed once per scope set, not once per request, as a partial evaluation per
// API and scope set would, without a second evaluator to keep in step.
//
// Which stretches of the input a rule reads is found when the set is compiled (inputReads): the ground prefix of
// every input reference in the rule, its else branches and comprehensions, and in every rule it may call,
// through any data reference whose rules could answer it. A rule is memoized only when that is all of it: a
// rule that reads the whole input, or uses `with`, never is. The memo's key is the reference (with the call's
// arguments) and the value of the input at each of those prefixes, compared whole, so an entry is only ever
// reused for an evaluation in which everything the rule could read is the same.
//
// The memo belongs to one compiled set: a reload compiles a new set with a new, empty memo, so no answer
// outlives the rules or the data it came from. Entries are published only when the evaluation that computed
// them ended without error (topdown caches a function's value on its first answer and fails the evaluation if
// a later one conflicts).

// memoPlan is, per rule tree node, what a rule there reads of the input; computed once per compiled set.
type memoPlan struct {
	nodes map[*ast.TreeNode]*nodeReads
	root  *ast.TreeNode
}

type nodeReads struct {
	ok    bool      // memoizable: reads the input only at fixed prefixes, never the whole; no `with`
	input []ast.Ref // the prefixes (each without the leading `input`), none a prefix of another
}

// newMemoPlan analyses the compiled modules; nil when there is nothing to analyse.
func newMemoPlan(c *ast.Compiler) *memoPlan {
	if c == nil || c.RuleTree == nil {
		return nil
	}
	p := &memoPlan{nodes: map[*ast.TreeNode]*nodeReads{}, root: c.RuleTree}
	visiting := map[*ast.TreeNode]bool{}
	c.RuleTree.DepthFirst(func(n *ast.TreeNode) bool {
		if len(n.Values) > 0 {
			p.reads(n, visiting)
		}
		return false
	})
	return p
}

// reads computes what the rules at n read, with everything they may call.
func (p *memoPlan) reads(n *ast.TreeNode, visiting map[*ast.TreeNode]bool) *nodeReads {
	if r, ok := p.nodes[n]; ok {
		return r
	}
	if visiting[n] { // Rego refuses recursion; if it ever gets here, never memoize
		return &nodeReads{}
	}
	visiting[n] = true
	defer delete(visiting, n)
	r := &nodeReads{ok: true}
	add := func(o *nodeReads) {
		if !o.ok {
			r.ok = false
			return
		}
		for _, in := range o.input {
			r.input = addPrefix(r.input, in)
		}
	}
	for _, rule := range n.Values {
		for ; rule != nil && r.ok; rule = rule.Else {
			p.rule(rule, r, add, visiting)
		}
	}
	p.nodes[n] = r
	return r
}

func (p *memoPlan) rule(rule *ast.Rule, r *nodeReads, add func(*nodeReads), visiting map[*ast.TreeNode]bool) {
	ast.WalkExprs(rule, func(e *ast.Expr) bool {
		if len(e.With) > 0 {
			r.ok = false
		}
		return false
	})
	// `input` as a variable of its own rather than the head of a reference: the whole input.
	inputVars, inputRefs := 0, 0
	ast.WalkVars(rule, func(v ast.Var) bool {
		if v.Equal(ast.InputRootDocument.Value) {
			inputVars++
		}
		return false
	})
	ast.WalkRefs(rule, func(ref ast.Ref) bool {
		if !r.ok {
			return true
		}
		switch {
		case ref.HasPrefix(ast.InputRootRef):
			inputRefs++
			prefix := groundStringPrefix(ref)[1:]
			if len(prefix) == 0 {
				r.ok = false
				return true
			}
			r.input = addPrefix(r.input, prefix)
		case ref.HasPrefix(ast.DefaultRootRef):
			// Every rule the reference could reach: the rule it reads into, or all of them below its ground
			// prefix; none when the prefix leaves the rule tree without passing a rule (base data: data.config).
			node, ground := p.root, groundStringPrefix(ref)
			var into *ast.TreeNode
			depth := 0 // of into in ground
			for i, t := range ground {
				next := node.Child(t.Value)
				if next == nil {
					node = nil
					break
				}
				node = next
				if len(node.Values) > 0 && into == nil {
					into, depth = node, i+1
				}
			}
			switch {
			case into != nil:
				if alias := inputAlias(into); alias != nil {
					// `req := input.request`: req.params reads input.request.params, not all of the request.
					r.input = addPrefix(r.input, append(alias.Copy(), ground[depth:]...))
					return false
				}
				node = into
			case node == nil:
				return false
			case len(ground) < 2:
				r.ok = false // `data` itself: every rule
				return true
			}
			node.DepthFirst(func(m *ast.TreeNode) bool {
				if len(m.Values) > 0 {
					add(p.reads(m, visiting))
				}
				return !r.ok
			})
		}
		return false
	})
	if inputVars != inputRefs {
		r.ok = false
	}
}

// inputAlias: for a node whose only rule names a stretch of the input (`req := input.request`, which the
// compiler makes `req := x if { x = input.request }`), that stretch without the leading input; else nil.
func inputAlias(n *ast.TreeNode) ast.Ref {
	if len(n.Values) != 1 {
		return nil
	}
	rule := n.Values[0]
	if rule.Default || rule.Else != nil || len(rule.Head.Args) > 0 || rule.Head.Key != nil || rule.Head.Value == nil ||
		len(rule.Body) != 1 || len(rule.Head.Ref()) != 1 {
		return nil
	}
	head, ok := rule.Head.Value.Value.(ast.Var)
	e := rule.Body[0]
	if !ok || !e.IsEquality() || len(e.With) > 0 || e.Negated {
		return nil
	}
	l, r := e.Operand(0), e.Operand(1)
	if l.Value.Compare(head) != 0 {
		l, r = r, l
	}
	ref, ok := r.Value.(ast.Ref)
	if !ok || l.Value.Compare(head) != 0 || !ref.HasPrefix(ast.InputRootRef) {
		return nil
	}
	if p := groundStringPrefix(ref); len(p) == len(ref) && len(p) > 1 {
		return p[1:]
	}
	return nil
}

// groundStringPrefix is the leading terms of ref up to the first that is not a string (a variable, a number
// used as an index, a call): the part every evaluation reads alike.
func groundStringPrefix(ref ast.Ref) ast.Ref {
	for i, t := range ref {
		if i == 0 {
			continue
		}
		if _, ok := t.Value.(ast.String); !ok {
			return ref[:i]
		}
	}
	return ref
}

// addPrefix adds p to set, keeping only the shortest of prefixes that contain one another.
func addPrefix(set []ast.Ref, p ast.Ref) []ast.Ref {
	out := set[:0:0]
	for _, q := range set {
		if p.HasPrefix(q) {
			return set // q already covers p
		}
		if !q.HasPrefix(p) {
			out = append(out, q)
		}
	}
	return append(out, p.Copy())
}

// lookup finds the node of the rules a cached reference belongs to, and what they read; nil: not memoizable.
func (p *memoPlan) lookup(ref ast.Ref) *nodeReads {
	if p == nil {
		return nil
	}
	// A function call's key is the function's reference as one term, then the arguments.
	if fn, ok := ref[0].Value.(ast.Ref); ok {
		ref = fn
	}
	node := p.root
	for _, t := range ref {
		next := node.Child(t.Value)
		if next == nil {
			return nil
		}
		node = next
		if len(node.Values) > 0 {
			r := p.nodes[node]
			if r == nil || !r.ok {
				return nil
			}
			return r
		}
	}
	return nil
}

// memoKey: the reference and the input's value at each prefix the rule reads (nil: absent).
type memoKey struct {
	ref  ast.Ref
	vals []ast.Value
}

func (k *memoKey) equal(o *memoKey) bool {
	if len(k.vals) != len(o.vals) || !k.ref.Equal(o.ref) {
		return false
	}
	for i, v := range k.vals {
		w := o.vals[i]
		if (v == nil) != (w == nil) || (v != nil && v.Compare(w) != 0) {
			return false
		}
	}
	return true
}

func (k *memoKey) hash() uint64 {
	h := uint64(k.ref.Hash())
	for _, v := range k.vals {
		h *= 1099511628211
		if v != nil {
			h ^= uint64(v.Hash())
		} else {
			h ^= 0x9e3779b97f4a7c15
		}
	}
	return h
}

type memoEntry struct {
	key       memoKey
	value     *ast.Term
	undefined bool
}

// maxMemoEntries bounds one generation of a memo; two are kept (see memo.put).
const maxMemoEntries = 4096

// memo is the store of one compiled set. Two generations: entries are added to the young one and, when it is
// full, it becomes the old one and the old is dropped; an entry found in the old generation is moved to the
// young, so what every request uses stays while request-specific entries age out.
type memo struct {
	hits       atomic.Uint64 // answers from the memo, for tests
	plan       *memoPlan
	mu         sync.RWMutex
	young, old map[uint64][]*memoEntry
}

func newMemo(plan *memoPlan) *memo {
	if plan == nil {
		return nil
	}
	return &memo{plan: plan, young: map[uint64][]*memoEntry{}, old: map[uint64][]*memoEntry{}}
}

func find(m map[uint64][]*memoEntry, h uint64, k *memoKey) *memoEntry {
	for _, e := range m[h] {
		if e.key.equal(k) {
			return e
		}
	}
	return nil
}

func (m *memo) get(h uint64, k *memoKey) *memoEntry {
	m.mu.RLock()
	e := find(m.young, h, k)
	promote := false
	if e == nil {
		e = find(m.old, h, k)
		promote = e != nil
	}
	m.mu.RUnlock()
	if e != nil {
		m.hits.Add(1)
	}
	if promote {
		m.put(h, e)
	}
	return e
}

func (m *memo) put(h uint64, e *memoEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if find(m.young, h, &e.key) != nil {
		return
	}
	if len(m.young) >= maxMemoEntries {
		m.old, m.young = m.young, make(map[uint64][]*memoEntry, maxMemoEntries)
	}
	m.young[h] = append(m.young[h], e)
}

// key builds the memo key of ref for an evaluation of input, its values in buf when it has room (a key only
// looked up, never kept); ok false when ref is not memoizable.
func (m *memo) key(ref ast.Ref, input ast.Value, buf []ast.Value) (memoKey, uint64, bool) {
	r := m.plan.lookup(ref)
	if r == nil {
		return memoKey{}, 0, false
	}
	if cap(buf) < len(r.input) {
		buf = make([]ast.Value, len(r.input))
	}
	k := memoKey{ref: ref, vals: buf[:len(r.input)]}
	for i, p := range r.input {
		if v, err := input.Find(p); err == nil {
			k.vals[i] = v
		}
	}
	return k, k.hash(), true
}

// plainJSON reports whether v is built of the Go values the decision core builds inputs from (maps, slices,
// strings, booleans, null), as canonical.go's cache key is. Only such an input is memoized: the memo compares
// input values with ast.Compare, which holds 1 and 1.0 equal, and a number printed by sprintf would not be.
func plainJSON(v any, depth int) bool {
	if depth > 64 {
		return false
	}
	switch x := v.(type) {
	case nil, bool, string:
		return true
	case []any:
		for _, e := range x {
			if !plainJSON(e, depth+1) {
				return false
			}
		}
		return true
	case map[string]any:
		for _, e := range x {
			if !plainJSON(e, depth+1) {
				return false
			}
		}
		return true
	}
	return false
}
