# SMART App Launch 2.x scope checks over the scopes fhirwall parsed from the token
# (input.identity.scopes: raw, context, resource_type, permissions{c,r,u,d,s}, and params for granular scopes).
package fhirwall.smart

import rego.v1

# SMART App Launch 2.x §Scopes: read (r) and search (s) are different rights; v1 "read" is "rs".
needed_permission := "r" if input.request.interaction in {"read", "vread", "history-instance"}

needed_permission := "s" if input.request.interaction in {"search-type", "search-compartment", "search-system", "history-type"}

needed_permission := "c" if input.request.interaction == "create"

needed_permission := "u" if input.request.interaction in {"update", "patch"}

needed_permission := "d" if input.request.interaction == "delete"

# The scopes of a context that grant a permission on a type, directly or through "*".
granting(context, type, permission) := {scope |
	some scope in input.identity.scopes
	scope.context == context
	scope.resource_type in {type, "*"}
	scope.permissions[permission] == true
}

# permits: at least one scope grants it (granular or not).
permits(context, type, permission) if count(granting(context, type, permission)) > 0

# unrestricted: a scope without parameters grants it, so granular scopes add no restriction.
unrestricted(context, type, permission) if {
	some scope in granting(context, type, permission)
	count(object.get(scope, "params", {})) == 0
}

# granular_params(context, type, permission): when only granular scopes grant the permission, the union of
# their parameter values per parameter name, e.g. {"category": {"laboratory", "vital-signs"}}.
# SMART 2.x §Finer-grained resource constraints: the server returns only resources matching one of them.
granular_params(context, type, permission) := {name: values |
	not unrestricted(context, type, permission)
	some scope in granting(context, type, permission)
	some name, _ in scope.params
	values := {v |
		some s in granting(context, type, permission)
		some v in object.get(s.params, name, [])
	}
}

# --- what may leave in an answer ---------------------------------------------------------------------------

# A scope lets resources of its type leave when it grants read or search: an _include/_revinclude result, a
# history version or a page is data of its own type, and the token must grant that type (Invariant 2).
reveals(scope) if scope.permissions.r == true

reveals(scope) if scope.permissions.s == true

revealing(context, type) := {scope |
	some scope in input.identity.scopes
	scope.context == context
	scope.resource_type in {type, "*"}
	reveals(scope)
}

# response_types(context, types): per type of types (the API's served types) that a scope of this context
# reveals, directly or through "*", the granular constraints a resource of that type must match to leave:
# {} when a scope without parameters grants it, else the union of the granting scopes' values per parameter
# (SMART 2.x §Finer-grained resource constraints). A type the API does not serve never leaves.
response_types(context, types) := {type: constraints(context, type) |
	some type in types
	count(revealing(context, type)) > 0
}

constraints(context, type) := {} if {
	some scope in revealing(context, type)
	count(object.get(scope, "params", {})) == 0
} else := {name: values |
	some scope in revealing(context, type)
	some name, _ in scope.params
	values := sort({v |
		some s in revealing(context, type)
		some v in object.get(s.params, name, [])
	})
}

# A request is outside its granular scopes when it names a value they do not grant, or puts any modifier on a
# constrained parameter (category:not=vital-signs would match everything else; :missing, :text, :in, :below
# likewise reach values nobody granted).
outside_granular(granular) if {
	some name, allowed in granular
	some param in input.request.params
	param.name == name
	some value in param.values
	not value in allowed
}

outside_granular(granular) if {
	some name, _ in granular
	some param in input.request.params
	param.name == name
	param.key != name
}

# A request naming none of a constrained parameter is narrowed to the granted values.
granular_narrowing(granular) := {{"param": name, "value": concat(",", sort(allowed))} |
	some name, allowed in granular
	not requested(name)
}

requested(name) if {
	some param in input.request.params
	param.name == name
}
