// Package policy evaluates fhirwall's Rego policies with OPA. The query is prepared once per policy set and
// swapped atomically, so request handlers never lock.
package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// Query is the rule every decision comes from.
const Query = "data.fhirwall.authz.decision"

// Result is what the policy decided. Obligations are interpreted by the decision core.
type Result struct {
	Allow   bool     `json:"allow"`
	Status  int      `json:"status"`
	Reasons []string `json:"reasons"`
	// Details is a sentence for the client about its request (never about data it may not see), e.g. which
	// parameter is not supported.
	Details     string      `json:"details"`
	Obligations Obligations `json:"obligations"`
	Revision    string      `json:"-"`
}

// Obligations tell later stages what an allowed request must still respect.
type Obligations struct {
	Compartment *Compartment `json:"compartment,omitempty"`
	// Narrow lists the search parameters the proxy sets, replacing what the client sent: a search is sent
	// upstream with them, and a read by id is answered only if the resource matches all of them.
	Narrow    []Narrow `json:"narrow,omitempty"`
	DataScope string   `json:"data_scope,omitempty"`
	RateClass string   `json:"rate_class,omitempty"`
	// ResourceTypes: the resource types that may leave in an answer ("*": every type), each with the granular
	// constraints a resource of it must match (parameter name → granted values; empty: none). Under a
	// compartment, a type not listed never leaves, whatever brought it (Invariant 2).
	ResourceTypes map[string]Constraints `json:"resource_types,omitempty"`
	// PublicTypes are the types outside the Patient compartment the API's config names public reference
	// data (Practitioner, Organization, Location); every other such type is withheld under a compartment.
	PublicTypes []string `json:"public_types,omitempty"`
	// Adapter names the adapter that answers the request itself instead of the FHIR server (the
	// Payer-to-Payer match operations: "payer-exchange"); empty: the FHIR server answers.
	Adapter string `json:"adapter,omitempty"`
}

// Constraints are a granular scope's search parameters: a resource must match one of the values of each.
type Constraints map[string][]string

// Reveals reports the constraints a resource of type t must match to leave, and whether it may leave at all.
func (o Obligations) Reveals(t string) (Constraints, bool) {
	if c, ok := o.ResourceTypes[t]; ok {
		return c, true
	}
	c, ok := o.ResourceTypes["*"]
	return c, ok
}

// Compartment: every resource returned must be in the compartment of one of these patients: Patient for
// a patient's own app (Patient Access), Patients for a provider's attributed members (Provider Access).
type Compartment struct {
	Patient  string   `json:"patient,omitempty"`
	Patients []string `json:"patients,omitempty"`
	// Provider: the patients attributed to this provider (Organization/<id> or Practitioner/<id>) who have not
	// opted out, as the core's membership facts hold them; the list never passes through the policy.
	Provider string `json:"provider,omitempty"`
	// Payer: the members who opted in to this payer (Organization/<id>) through a Payer-to-Payer Consent that
	// is active now, as the core's opt-in facts hold them; the list never passes through the policy.
	Payer string `json:"payer,omitempty"`
}

// Allowed is the set of patients whose data may leave, as a set.
func (c *Compartment) Allowed() map[string]bool {
	set := make(map[string]bool, len(c.Patients)+1)
	if c.Patient != "" {
		set[c.Patient] = true
	}
	for _, p := range c.Patients {
		set[p] = true
	}
	return set
}

// Narrow is one search parameter the proxy sets to Value (an OR list when it holds commas).
type Narrow struct {
	Param string `json:"param"`
	Value string `json:"value"`
}

// ErrEvaluation means the policy could not produce a decision; callers fail closed.
var ErrEvaluation = errors.New("policy evaluation failed")

// Engine holds the current compiled policy set.
type Engine struct {
	current atomic.Pointer[compiled]
	data    map[string]any
	// swap orders the stores of concurrent Loads with their numbers: Version().Load only ever grows.
	swap  sync.Mutex
	loads uint64
	// noMemo: every evaluation computes every rule (tests compare the two).
	noMemo bool
}

type compiled struct {
	query   rego.PreparedEvalQuery
	version Version
	memo    *memo // nil: the set is not pure, or memoizing is off
}

// Version says which compiled set is in force, for a cache of its decisions (decision.CachedPolicy).
type Version struct {
	// Revision is Engine.Revision: a hash of the modules and of the data they read (data.config).
	Revision string
	// Load numbers the sets this engine compiled, from 1; no two share it, so a cache keyed on it cannot take
	// one set's answers for another's even if their 64-bit revisions collided.
	Load uint64
	// Pure: no module calls a built-in whose answer depends on more than its arguments (the time, the network,
	// randomness, the environment: OPA's non-deterministic built-ins, and certificate verification, which
	// reads the clock). Only a pure set's decisions are a function of the input, and so may be cached.
	Pure bool
}

// New compiles the .rego files of fsys (skipping *_test.rego) and returns an engine. data is what the
// policies see as data.config (the APIs' resource types and search parameters, from fhirwall's config).
func New(ctx context.Context, fsys fs.FS, data map[string]any) (*Engine, error) {
	return newEngine(ctx, fsys, data, false)
}

// newEngine is New, without the memo (memo.go) when noMemo: every rule evaluated for every input.
func newEngine(ctx context.Context, fsys fs.FS, data map[string]any, noMemo bool) (*Engine, error) {
	e := &Engine{data: data, noMemo: noMemo}
	if err := e.Load(ctx, fsys); err != nil {
		return nil, err
	}
	return e, nil
}

// Load compiles a new policy set and swaps it in; on error the old set stays in force.
func (e *Engine) Load(ctx context.Context, fsys fs.FS) error {
	names, err := fs.Glob(fsys, "*.rego")
	if err != nil {
		return err
	}
	sort.Strings(names)
	h := sha256.New()
	// The configuration the policies read is part of what they decide with: it is in the revision too.
	if err := json.NewEncoder(h).Encode(e.data); err != nil {
		return fmt.Errorf("policy: data: %w", err)
	}
	// Kept as OPA values: by default every read of data.config during an evaluation converts the Go value.
	store := inmem.NewFromObjectWithOpts(map[string]any{"config": e.data}, inmem.OptReturnASTValuesOnRead(true))
	var compiler *ast.Compiler
	opts := []func(*rego.Rego){rego.Query(Query), rego.StrictBuiltinErrors(true), rego.Store(store),
		rego.GenerateJSON(rawResult), rego.CompilerHook(func(c *ast.Compiler) { compiler = c })}
	for _, n := range names {
		if strings.HasSuffix(n, "_test.rego") {
			continue
		}
		src, err := fs.ReadFile(fsys, n)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(src))
		h.Write(src)
		opts = append(opts, rego.Module(n, string(src)))
	}
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return fmt.Errorf("policy: compile: %w", err)
	}
	v := Version{Revision: hex.EncodeToString(h.Sum(nil))[:16], Pure: compiler != nil && pure(compiler.Required)}
	e.swap.Lock()
	defer e.swap.Unlock()
	e.loads++
	v.Load = e.loads
	var m *memo
	if v.Pure && !e.noMemo {
		m = newMemo(newMemoPlan(compiler))
	}
	e.current.Store(&compiled{query: pq, version: v, memo: m})
	return nil
}

// Revision identifies the policy set in force (a content hash), for audit records.
func (e *Engine) Revision() string { return e.current.Load().version.Revision }

// Version identifies the compiled set in force.
func (e *Engine) Version() Version { return e.current.Load().version }

// impure are built-ins whose answer depends on the clock although OPA does not mark them non-deterministic:
// they verify certificates at the current time unless told another.
var impure = map[string]bool{
	ast.CryptoX509ParseAndVerifyCertificates.Name:            true,
	ast.CryptoX509ParseAndVerifyCertificatesWithOptions.Name: true,
}

// pure reports whether the built-ins the compiled modules call (the compiler's required capabilities, filled
// by its type checker) all answer from their arguments alone.
func pure(required *ast.Capabilities) bool {
	if required == nil {
		return false
	}
	for _, b := range required.Builtins {
		def, known := ast.BuiltinMap[b.Name]
		if !known || def.IsNondeterministic() || impure[b.Name] {
			return false
		}
	}
	return true
}

// rawResult hands the decision to Decide as OPA's own value, for decodeResult.
func rawResult(t *ast.Term, _ *rego.EvalContext) (any, error) { return t.Value, nil }

// Decide evaluates the policy for one input document: an ast.Value, or a Go value of JSON shape (maps,
// slices, strings, numbers, booleans).
func (e *Engine) Decide(ctx context.Context, input any) (Result, error) {
	c := e.current.Load()
	// rego.EvalInput would copy the whole document once more before converting it.
	in, ok := input.(ast.Value)
	if !ok {
		var err error
		if in, err = ast.InterfaceToValue(input); err != nil {
			return Result{}, fmt.Errorf("%w: input: %v", ErrEvaluation, err)
		}
	}
	m := c.memo
	if m != nil && !plainJSON(input, 0) {
		m = nil
	}
	vc := getVCache(m, in)
	defer vc.release()
	rs, err := c.query.Eval(ctx, rego.EvalParsedInput(in), rego.EvalVirtualCache(vc), rego.EvalMetrics(metrics.NoOp()))
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrEvaluation, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Result{}, fmt.Errorf("%w: no decision", ErrEvaluation)
	}
	v, ok := rs[0].Expressions[0].Value.(ast.Value)
	if !ok {
		return Result{}, fmt.Errorf("%w: decision of type %T", ErrEvaluation, rs[0].Expressions[0].Value)
	}
	r, err := decodeResult(v)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrEvaluation, err)
	}
	if r.Status == 0 || (r.Allow && r.Status != 200) {
		return Result{}, fmt.Errorf("%w: inconsistent decision %+v", ErrEvaluation, r)
	}
	r.Revision = c.version.Revision
	vc.publish()
	return r, nil
}
