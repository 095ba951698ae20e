# SMART App Launch 2.x scope checks over the scopes fhirwall parsed from the token
# (input.identity.scopes: context, resource_type, permissions{c,r,u,d,s}).
package fhirwall.smart

import rego.v1

# permits(context, type, permission): some scope of that context grants the permission letter on the type,
# directly or through "*". Granular scopes (with parameters) are not honoured yet: they never widen access.
permits(context, type, permission) if {
	some scope in input.identity.scopes
	scope.context == context
	scope.resource_type in {type, "*"}
	scope.permissions[permission] == true
	count(object.get(scope, "params", {})) == 0
}

# SMART App Launch 2.x: read (r) and search (s) are different rights.
needed_permission := "r" if input.request.interaction in {"read", "vread"}

needed_permission := "s" if input.request.interaction == "search-type"
