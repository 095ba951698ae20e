package policy

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// decodeResult reads the decision document straight from OPA's value, as encoding/json would read its JSON
// into Result: absent and null fields stay zero, unknown fields are ignored, a value of the wrong type is an
// error (and the request fails closed). Going through a generic Go value and a JSON round trip took ~3% of a
// whole ext_authz Check.
func decodeResult(v ast.Value) (Result, error) {
	var r Result
	d := decoder{}
	d.object(v, func(o ast.Object) {
		d.field(o, "allow", func(v ast.Value) { r.Allow = d.bool(v) })
		d.field(o, "status", func(v ast.Value) { r.Status = d.int(v) })
		d.field(o, "reasons", func(v ast.Value) { r.Reasons = d.strings(v) })
		d.field(o, "details", func(v ast.Value) { r.Details = d.string(v) })
		d.field(o, "obligations", func(v ast.Value) { d.object(v, func(o ast.Object) { d.obligations(o, &r.Obligations) }) })
	})
	return r, d.err
}

// decoder keeps the first error; once it has one, every later step is a no-op.
type decoder struct {
	err  error
	path []string
}

func (d *decoder) obligations(o ast.Object, ob *Obligations) {
	d.field(o, "compartment", func(v ast.Value) {
		d.object(v, func(c ast.Object) {
			ob.Compartment = &Compartment{}
			d.field(c, "patient", func(v ast.Value) { ob.Compartment.Patient = d.string(v) })
			d.field(c, "patients", func(v ast.Value) { ob.Compartment.Patients = d.strings(v) })
			d.field(c, "provider", func(v ast.Value) { ob.Compartment.Provider = d.string(v) })
			d.field(c, "payer", func(v ast.Value) { ob.Compartment.Payer = d.string(v) })
		})
	})
	d.field(o, "narrow", func(v ast.Value) {
		elems := d.list(v)
		ob.Narrow = make([]Narrow, len(elems))
		for i, e := range elems {
			d.object(e.Value, func(n ast.Object) {
				d.field(n, "param", func(v ast.Value) { ob.Narrow[i].Param = d.string(v) })
				d.field(n, "value", func(v ast.Value) { ob.Narrow[i].Value = d.string(v) })
			})
		}
	})
	d.field(o, "data_scope", func(v ast.Value) { ob.DataScope = d.string(v) })
	d.field(o, "rate_class", func(v ast.Value) { ob.RateClass = d.string(v) })
	d.field(o, "resource_types", func(v ast.Value) { ob.ResourceTypes = d.resourceTypes(v) })
	d.field(o, "public_types", func(v ast.Value) { ob.PublicTypes = d.strings(v) })
	d.field(o, "adapter", func(v ast.Value) { ob.Adapter = d.string(v) })
}

// resourceTypes reads obligations.resource_types as entries would, without a closure per type: a miss decodes
// one for every type the API serves.
func (d *decoder) resourceTypes(v ast.Value) map[string]Constraints {
	var rt map[string]Constraints
	d.object(v, func(o ast.Object) {
		rt = make(map[string]Constraints, o.Len())
		o.Foreach(func(k, v *ast.Term) {
			if d.err != nil {
				return
			}
			t := d.string(k.Value)
			d.path = append(d.path, t)
			c := d.constraints(v.Value)
			if d.err == nil {
				rt[t] = c
				d.path = d.path[:len(d.path)-1]
			}
		})
	})
	return rt
}

func (d *decoder) constraints(v ast.Value) Constraints {
	o, ok := v.(ast.Object)
	if !ok {
		d.fail(v, "an object")
		return nil
	}
	c := make(Constraints, o.Len())
	if o.Len() == 0 {
		return c
	}
	for _, k := range o.Keys() {
		if d.err != nil {
			break
		}
		param := d.string(k.Value)
		d.path = append(d.path, param)
		c[param] = d.strings(o.Get(k).Value)
		if d.err == nil {
			d.path = d.path[:len(d.path)-1]
		}
	}
	return c
}

func (d *decoder) field(o ast.Object, key string, decode func(ast.Value)) {
	if d.err != nil {
		return
	}
	t := o.Get(ast.InternedTerm(key))
	if t == nil {
		return
	}
	if _, null := t.Value.(ast.Null); null {
		return
	}
	d.path = append(d.path, key)
	decode(t.Value)
	if d.err == nil {
		d.path = d.path[:len(d.path)-1]
	}
}

func (d *decoder) fail(v ast.Value, want string) {
	if d.err == nil {
		d.err = fmt.Errorf("decision field %v: %s, not %s", d.path, ast.ValueName(v), want)
	}
}

func (d *decoder) object(v ast.Value, decode func(ast.Object)) {
	if d.err != nil {
		return
	}
	o, ok := v.(ast.Object)
	if !ok {
		d.fail(v, "an object")
		return
	}
	decode(o)
}

func (d *decoder) bool(v ast.Value) bool {
	b, ok := v.(ast.Boolean)
	if !ok {
		d.fail(v, "a boolean")
	}
	return bool(b)
}

func (d *decoder) int(v ast.Value) int {
	n, ok := v.(ast.Number)
	if !ok {
		d.fail(v, "a number")
		return 0
	}
	i, ok := n.Int()
	if !ok {
		d.fail(v, "an integer")
	}
	return i
}

func (d *decoder) string(v ast.Value) string {
	s, ok := v.(ast.String)
	if !ok {
		d.fail(v, "a string")
	}
	return string(s)
}

func (d *decoder) strings(v ast.Value) []string {
	elems := d.list(v)
	if elems == nil {
		return nil
	}
	ss := make([]string, len(elems))
	for i, e := range elems {
		ss[i] = d.string(e.Value)
	}
	return ss
}

// list gives the elements of an array, or of a set in sorted order (OPA writes a set to JSON as an array).
func (d *decoder) list(v ast.Value) []*ast.Term {
	switch x := v.(type) {
	case *ast.Array:
		elems := make([]*ast.Term, x.Len())
		for i := range elems {
			elems[i] = x.Elem(i)
		}
		return elems
	case ast.Set:
		return d.list(x.Sorted())
	}
	d.fail(v, "an array")
	return nil
}
