package policy

import (
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// vcache is topdown's virtual-document cache (the values of rules and function calls already evaluated in one
// query) as one flat hash table per frame, reused from a pool. OPA's own is a trie with a hash map per
// reference segment, allocated anew for every evaluation; it made a fifth of the allocations of a decision.
// A vcache belongs to one evaluation at a time.
type vcache struct {
	frames []vframe
	// memo: the compiled set's values kept across evaluations (memo.go), consulted and fed outside `with`
	// only; input is the evaluation's input, whose stretches are part of the memo's keys. nil: no memo.
	memo    *memo
	input   ast.Value
	scratch [8]ast.Value // the values of a key looked up in the memo
}

var _ topdown.VirtualCache = (*vcache)(nil)

// vframe chains entries with equal hashes through next (an index into entries plus one; 0 ends the chain).
type vframe struct {
	index   map[uint64]int32
	entries []ventry
}

type ventry struct {
	ref       ast.Ref
	value     *ast.Term
	undefined bool
	memoized  bool // came from the memo: nothing to publish
	next      int32
}

var vcachePool = sync.Pool{New: func() any { return &vcache{frames: make([]vframe, 1, 2)} }}

func getVCache(m *memo, input ast.Value) *vcache {
	c := vcachePool.Get().(*vcache)
	c.memo, c.input = m, input
	return c
}

// publish hands the memoizable values of a finished evaluation to the memo; called only when the evaluation
// ended without error.
func (c *vcache) publish() {
	if c.memo == nil || len(c.frames) != 1 {
		return
	}
	for _, e := range c.frames[0].entries {
		if e.memoized {
			continue
		}
		k, h, ok := c.memo.key(e.ref, c.input, nil) // kept: values of its own
		if !ok {
			continue
		}
		c.memo.put(h, &memoEntry{key: k, value: e.value, undefined: e.undefined})
	}
}

// release empties c (no term of the finished evaluation stays reachable) and returns it to the pool.
func (c *vcache) release() {
	for i := range c.frames {
		c.frames[i].reset()
	}
	c.frames = c.frames[:1]
	c.memo, c.input = nil, nil
	vcachePool.Put(c)
}

func (f *vframe) reset() {
	clear(f.index)
	clear(f.entries)
	f.entries = f.entries[:0]
}

func (c *vcache) top() *vframe { return &c.frames[len(c.frames)-1] }

func (c *vcache) Push() {
	if len(c.frames) < cap(c.frames) {
		c.frames = c.frames[:len(c.frames)+1]
		c.top().reset()
		return
	}
	c.frames = append(c.frames, vframe{})
}

func (c *vcache) Pop() {
	c.top().reset()
	c.frames = c.frames[:len(c.frames)-1]
}

func (f *vframe) find(ref ast.Ref, h uint64) *ventry {
	for i := f.index[h]; i != 0; i = f.entries[i-1].next {
		if e := &f.entries[i-1]; e.ref.Equal(ref) {
			return e
		}
	}
	return nil
}

// Get follows topdown.VirtualCache: (nil, true) is a cached undefined, (nil, false) not cached.
func (c *vcache) Get(ref ast.Ref) (*ast.Term, bool) {
	f := c.top()
	var e *ventry
	if len(f.entries) > 0 {
		e = f.find(ref, uint64(ref.Hash()))
	}
	if e == nil && c.memo != nil && len(c.frames) == 1 {
		e = c.fromMemo(ref)
	}
	switch {
	case e == nil:
		return nil, false
	case e.undefined:
		return nil, true
	}
	return e.value, false
}

// fromMemo looks ref up in the memo and, when there, keeps it in the frame for the rest of the evaluation.
func (c *vcache) fromMemo(ref ast.Ref) *ventry {
	k, h, ok := c.memo.key(ref, c.input, c.scratch[:0])
	defer clear(c.scratch[:])
	if !ok {
		return nil
	}
	m := c.memo.get(h, &k)
	if m == nil {
		return nil
	}
	e := c.entry(ref, uint64(ref.Hash()))
	e.value, e.undefined, e.memoized = m.value, m.undefined, true
	return e
}

// Put records value for ref, or that ref is undefined when value is nil.
func (c *vcache) Put(ref ast.Ref, value *ast.Term) {
	e := c.entry(ref, uint64(ref.Hash()))
	e.memoized = false
	// As OPA's own cache: a value and an undefined mark are kept side by side, and undefined wins in Get.
	if value != nil {
		e.value = value
	} else {
		e.undefined = true
	}
}

// entry finds or adds the current frame's entry for ref.
func (c *vcache) entry(ref ast.Ref, h uint64) *ventry {
	f := c.top()
	if f.index == nil {
		f.index = make(map[uint64]int32, 32)
	}
	if e := f.find(ref, h); e != nil {
		return e
	}
	// A copy: topdown passes slices of buffers it reuses (evalTree's plugged, evalFunc's cacheKey). OPA's trie
	// keeps the terms, not the slice, and so must this.
	f.entries = append(f.entries, ventry{ref: slices.Clone(ref), next: f.index[h]})
	f.index[h] = int32(len(f.entries))
	return &f.entries[len(f.entries)-1]
}

// Keys returns the references with a cached (defined) value in the current frame.
func (c *vcache) Keys() []ast.Ref {
	var keys []ast.Ref
	for _, e := range c.top().entries {
		if e.value != nil {
			keys = append(keys, e.ref)
		}
	}
	return keys
}
