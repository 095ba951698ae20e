package apps

// Field names the member of an App (its JSON name) a registration Problem concerns.
type Field string

// The App's members the registration policy judges.
const (
	FieldClientID        Field = "client_id"
	FieldName            Field = "name"
	FieldDeveloperOrg    Field = "developer_org"
	FieldContacts        Field = "contacts"
	FieldLogoURI         Field = "logo_uri"
	FieldClientURI       Field = "client_uri"
	FieldPolicyURI       Field = "policy_uri"
	FieldTOSURI          Field = "tos_uri"
	FieldRedirectURIs    Field = "redirect_uris"
	FieldLaunchTypes     Field = "launch_types"
	FieldTokenAuthMethod Field = "token_endpoint_auth_method"
	FieldJWKSURI         Field = "jwks_uri"
	FieldJWKS            Field = "jwks"
	FieldRequestedAPIs   Field = "requested_apis"
	FieldRequestedScopes Field = "requested_scopes"
	FieldApprovedAPIs    Field = "approved_apis"
	FieldApprovedScopes  Field = "approved_scopes"
	FieldEnvironment     Field = "environment"
	FieldState           Field = "state"
	FieldTier            Field = "tier"
	FieldSoftwareID      Field = "software_id"
	FieldSoftwareVersion Field = "software_version"
	// FieldClient is the app as the gateway would hold it (decision.Client.Validate: scopes parse, org is
	// Organization/<id>), not one member.
	FieldClient Field = "client"
)

// Problem is one way an app breaks the registration policy: the member at fault, which entry of it when it
// is a list (Index, -1 for the member as a whole), and what is wrong. It wraps ErrInvalid. Callers branch on
// Field and Index (Dynamic Client Registration answers a redirect URI's problem with its own error code),
// never on Detail's words.
type Problem struct {
	Field  Field
	Index  int
	Detail string // for people: names the member, e.g. `redirect_uris[0] "http://x.example/cb": http only on …`
}

func (p *Problem) Error() string { return ErrInvalid.Error() + ": " + p.Detail }
func (p *Problem) Unwrap() error { return ErrInvalid }

// RedirectURI reports whether the problem is one redirect URI's value (RFC 7591 §3.2.2
// invalid_redirect_uri), rather than the set's (none given, where none belongs) or another member's.
func (p *Problem) RedirectURI() bool { return p.Field == FieldRedirectURIs && p.Index >= 0 }

// Problems lists the Problems in err (what ValidateRegistration returned), in order; nil for nil.
func Problems(err error) []*Problem {
	var out []*Problem
	var walk func(error)
	walk = func(e error) {
		if p, ok := e.(*Problem); ok {
			out = append(out, p)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			if x := u.Unwrap(); x != nil {
				walk(x)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

var _ error = (*Problem)(nil)
