package revocation

import (
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// MaxBodyBytes bounds a revocation request (RFC 7009 §2.1: a token and the client's credentials).
const MaxBodyBytes = 16 << 10

// jwtBearer is the client assertion type of private_key_jwt (RFC 7523 §2.2).
const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// oauthError is an answer of RFC 7009 §2.2.1 (RFC 6749 §5.2 codes).
type oauthError struct {
	status      int
	code        string
	description string
}

func (e *oauthError) Error() string { return e.code + ": " + e.description }

func badRequest(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_request", description: desc}
}

func badClient(desc string) *oauthError {
	return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: desc}
}

// request is a revocation request as the client sent it: the token and its hint (RFC 7009 §2.1), and the
// client's authentication (RFC 6749 §2.3, RFC 7523 §2.2), forwarded unchanged to the issuer.
type request struct {
	token, hint     string
	basic           string // the Authorization header, when the client used client_secret_basic
	clientID        string // who the client says it is; the issuer checks it
	secret          string
	assertion       string
	assertionType   string
	forwardedFields url.Values
}

// parseRequest reads a revocation request: a form body (content type application/x-www-form-urlencoded,
// each parameter at most once: RFC 6749 §3.2), a token, and one way of client authentication whose client id
// is known. It decides nothing about the credentials: the issuer does.
func parseRequest(contentType string, authorization []string, body []byte) (request, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return request{}, badRequest("the body must be application/x-www-form-urlencoded")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return request{}, badRequest("the body is not a valid form")
	}
	for k, vs := range form {
		if len(vs) > 1 {
			return request{}, badRequest("parameter " + safeName(k) + " appears more than once")
		}
	}
	r := request{token: form.Get("token"), clientID: form.Get("client_id"), secret: form.Get("client_secret"),
		assertion: form.Get("client_assertion"), assertionType: form.Get("client_assertion_type")}
	if r.token == "" {
		return request{}, badRequest("token is required")
	}
	// RFC 7009 §2.1: a hint the server does not know is ignored (it searches every type); it is not forwarded.
	if h := form.Get("token_type_hint"); h == "access_token" || h == "refresh_token" {
		r.hint = h
	}
	if len(authorization) > 1 {
		return request{}, badRequest("more than one Authorization header")
	}
	methods := 0
	if len(authorization) == 1 {
		scheme, _, _ := strings.Cut(authorization[0], " ")
		if !strings.EqualFold(scheme, "Basic") {
			return request{}, badClient("only Basic client authentication is accepted in the Authorization header")
		}
		user, _, ok := basicAuth(authorization[0])
		if !ok || user == "" {
			return request{}, badClient("malformed Basic credentials")
		}
		if r.clientID != "" && r.clientID != user {
			return request{}, badClient("client_id does not match the Basic credentials")
		}
		r.basic, r.clientID = authorization[0], user
		methods++
	}
	if r.secret != "" {
		methods++
	}
	if r.assertion != "" || r.assertionType != "" {
		if r.assertionType != jwtBearer || r.assertion == "" {
			return request{}, badClient("client_assertion_type must be " + jwtBearer + " with a client_assertion")
		}
		sub, err := assertionSubject(r.assertion)
		if err != nil {
			return request{}, badClient("client_assertion is not a signed JWT with sub and iss naming the client")
		}
		if r.clientID != "" && r.clientID != sub {
			return request{}, badClient("client_id does not match the client assertion")
		}
		r.clientID = sub
		methods++
	}
	// RFC 6749 §2.3: a client uses one authentication method per request.
	if methods > 1 {
		return request{}, badRequest("more than one client authentication method")
	}
	if r.clientID == "" {
		return request{}, badClient("the client is not identified")
	}
	if r.secret != "" && form.Get("client_id") == "" {
		return request{}, badClient("client_secret without client_id")
	}
	r.forwardedFields = url.Values{"token": {r.token}}
	for k, v := range map[string]string{"token_type_hint": r.hint, "client_id": form.Get("client_id"),
		"client_secret": r.secret, "client_assertion_type": r.assertionType, "client_assertion": r.assertion} {
		if v != "" {
			r.forwardedFields.Set(k, v)
		}
	}
	return r, nil
}

// basicAuth decodes client_secret_basic: RFC 6749 §2.3.1 form-encodes the client id and secret before Basic.
func basicAuth(header string) (user, pass string, ok bool) {
	r := http.Request{Header: http.Header{"Authorization": {header}}}
	u, p, ok := r.BasicAuth()
	if !ok {
		return "", "", false
	}
	if user, err := url.QueryUnescape(u); err == nil {
		u = user
	}
	if pass, err := url.QueryUnescape(p); err == nil {
		p = pass
	}
	return u, p, true
}

// assertionSubject is the client a private_key_jwt assertion names (RFC 7523 §3: iss and sub are both the
// client id). Nothing is verified here: the issuer verifies the signature and refuses a bad assertion.
func assertionSubject(assertion string) (string, error) {
	tok, err := jwt.ParseSigned(assertion, []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512,
		jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA})
	if err != nil {
		return "", err
	}
	var c struct {
		Issuer  string `json:"iss"`
		Subject string `json:"sub"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return "", err
	}
	if c.Subject == "" || c.Issuer != c.Subject {
		return "", errors.New("iss and sub must both be the client id")
	}
	return c.Subject, nil
}

// safeName is a parameter name fit to echo in an error description: printable ASCII, at most 40 bytes.
func safeName(s string) string {
	if len(s) > 40 {
		s = s[:40]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '"' || r == '\\' {
			return '?'
		}
		return r
	}, s)
}
