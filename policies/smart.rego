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
