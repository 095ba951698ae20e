package portal

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDC is the portal's own client at the identity provider (issuers[0]): authorization code with PKCE,
// state and nonce; the client is confidential.
type OIDC struct {
	IssuerURL    string
	ClientID     string
	ClientSecret string
	// HTTPClient reaches the issuer (discovery, keys, token endpoint); nil: http.DefaultClient.
	HTTPClient *http.Client
}

// signIn discovers the issuer on first use (the portal starts even when the issuer is down; a sign-in then
// fails with a clear page and the next one tries again) and keeps what it found.
type signIn struct {
	cfg         OIDC
	redirectURL string

	mu       sync.Mutex
	provider *oidc.Provider
	endSess  string
}

func (s *signIn) ctx(ctx context.Context) context.Context {
	if s.cfg.HTTPClient != nil {
		return oidc.ClientContext(ctx, s.cfg.HTTPClient)
	}
	return ctx
}

func (s *signIn) discover(ctx context.Context) (*oidc.Provider, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.provider != nil {
		return s.provider, nil
	}
	// The key set keeps the context it is built with for later fetches: never a request's.
	p, err := oidc.NewProvider(s.ctx(context.WithoutCancel(ctx)), s.cfg.IssuerURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errIdPUnavailable, err)
	}
	var extra struct {
		EndSession string `json:"end_session_endpoint"`
	}
	_ = p.Claims(&extra)
	s.provider, s.endSess = p, extra.EndSession
	return p, nil
}

func (s *signIn) oauth(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{ClientID: s.cfg.ClientID, ClientSecret: s.cfg.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: s.redirectURL, Scopes: []string{oidc.ScopeOpenID, "profile"}}
}

var (
	errIdPUnavailable = errors.New("the identity provider does not answer")
	errSignIn         = errors.New("sign-in refused")
)

// safeReturn keeps a return path on this origin: an absolute path, never //host or a scheme.
func safeReturn(p string) string {
	if p == "" || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") || strings.ContainsAny(p, "\r\n") {
		return "/"
	}
	if u, err := url.Parse(p); err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return p
}

// login starts the authorization code flow: state, nonce and PKCE verifier sealed into a cookie of their own.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	p, err := h.auth.discover(r.Context())
	if err != nil {
		h.log.Warn("portal sign-in: discovery failed", "err", err)
		h.fail(w, r, http.StatusServiceUnavailable, "Sign-in is unavailable: the identity provider does not answer. Try again shortly.")
		return
	}
	pl := pendingLogin{State: randomToken(24), Nonce: randomToken(24), Verifier: oauth2.GenerateVerifier(),
		Return: safeReturn(r.URL.Query().Get("return")), Expires: h.now().Add(loginTTL)}
	if err := h.seal.setCookie(w, loginCookie, pl, loginTTL); err != nil {
		h.fail(w, r, http.StatusInternalServerError, "Sign-in could not start.")
		return
	}
	http.Redirect(w, r, h.auth.oauth(p).AuthCodeURL(pl.State, oidc.Nonce(pl.Nonce), oauth2.S256ChallengeOption(pl.Verifier)), http.StatusFound)
}

// accessClaims are what the portal reads from Keycloak's access token.
type accessClaims struct {
	Subject     string `json:"sub"`
	AZP         string `json:"azp"`
	RealmAccess struct {
		Roles []string `json:"roles"`
	} `json:"realm_access"`
}

type idClaims struct {
	Subject  string `json:"sub"`
	Username string `json:"preferred_username"`
	Patient  string `json:"patient"`
}

// callback finishes the flow: state checked against the cookie, code exchanged with the PKCE verifier, ID
// token verified (issuer, audience, expiry, signature, nonce), access token verified too (issuer, expiry,
// signature, azp = this client) because the roles are in it.
func (h *handler) callback(w http.ResponseWriter, r *http.Request) {
	var pl pendingLogin
	c, err := r.Cookie(loginCookie)
	clearCookie(w, loginCookie)
	if err != nil || h.seal.open(loginCookie, c.Value, &pl) != nil || h.now().After(pl.Expires) {
		h.fail(w, r, http.StatusBadRequest, "This sign-in was not started here or took too long. Sign in again.")
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(pl.State)) != 1 {
		h.fail(w, r, http.StatusBadRequest, "Sign-in refused: the state does not match. Sign in again.")
		return
	}
	if e := q.Get("error"); e != "" {
		h.fail(w, r, http.StatusForbidden, "The identity provider refused the sign-in ("+e+").")
		return
	}
	sess, err := h.finish(r.Context(), q.Get("code"), pl)
	if err != nil {
		h.log.Warn("portal sign-in refused", "err", err)
		status := http.StatusForbidden
		if errors.Is(err, errIdPUnavailable) {
			status = http.StatusServiceUnavailable
		}
		h.fail(w, r, status, "Sign-in refused. Sign in again.")
		return
	}
	err = h.seal.setCookie(w, sessionCookie, sess, sessionTTL)
	if err != nil && sess.IDToken != "" {
		sess.IDToken = ""
		err = h.seal.setCookie(w, sessionCookie, sess, sessionTTL)
	}
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "The session could not be kept.")
		return
	}
	h.log.Info("portal sign-in", "user", sess.Username, "sub", sess.Subject)
	http.Redirect(w, r, pl.Return, http.StatusFound)
}

func (h *handler) finish(ctx context.Context, code string, pl pendingLogin) (session, error) {
	p, err := h.auth.discover(ctx)
	if err != nil {
		return session{}, err
	}
	if code == "" {
		return session{}, fmt.Errorf("%w: no code", errSignIn)
	}
	tok, err := h.auth.oauth(p).Exchange(h.auth.ctx(ctx), code, oauth2.VerifierOption(pl.Verifier))
	if err != nil {
		return session{}, fmt.Errorf("%w: code exchange: %v", errSignIn, err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return session{}, fmt.Errorf("%w: no ID token", errSignIn)
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: h.auth.cfg.ClientID, Now: h.now}).Verify(ctx, rawID)
	if err != nil {
		return session{}, fmt.Errorf("%w: ID token: %v", errSignIn, err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(pl.Nonce)) != 1 {
		return session{}, fmt.Errorf("%w: nonce mismatch", errSignIn)
	}
	var id idClaims
	if err := idt.Claims(&id); err != nil {
		return session{}, fmt.Errorf("%w: ID token claims: %v", errSignIn, err)
	}
	// Keycloak's access token names no audience of ours; azp says which client it was issued to.
	at, err := p.Verifier(&oidc.Config{SkipClientIDCheck: true, Now: h.now}).Verify(ctx, tok.AccessToken)
	if err != nil {
		return session{}, fmt.Errorf("%w: access token: %v", errSignIn, err)
	}
	var ac accessClaims
	if err := at.Claims(&ac); err != nil {
		return session{}, fmt.Errorf("%w: access token claims: %v", errSignIn, err)
	}
	if ac.AZP != h.auth.cfg.ClientID {
		return session{}, fmt.Errorf("%w: access token issued to %q", errSignIn, ac.AZP)
	}
	if ac.Subject != id.Subject || id.Subject == "" {
		return session{}, fmt.Errorf("%w: the tokens name different subjects", errSignIn)
	}
	var roles []string
	for _, role := range []string{h.reviewerRole, h.developerRole} {
		if slices.Contains(ac.RealmAccess.Roles, role) {
			roles = append(roles, role)
		}
	}
	name := id.Username
	if name == "" {
		name = id.Subject
	}
	return session{Subject: id.Subject, Username: name, Roles: roles, Patient: id.Patient,
		CSRF: randomToken(32), Expires: h.now().Add(sessionTTL), IDToken: rawID}, nil
}

// logout ends the portal session and, when the issuer says where, the identity provider's.
func (h *handler) logout(w http.ResponseWriter, r *http.Request) {
	s := h.currentSession(r)
	clearCookie(w, sessionCookie)
	dest := h.publicURL + "/"
	if p, err := h.auth.discover(r.Context()); err == nil && p != nil && h.auth.endSess != "" {
		v := url.Values{"client_id": {h.auth.cfg.ClientID}, "post_logout_redirect_uri": {h.publicURL + "/"}}
		if s != nil && s.IDToken != "" {
			v.Set("id_token_hint", s.IDToken)
		}
		dest = h.auth.endSess + "?" + v.Encode()
	}
	http.Redirect(w, r, dest, http.StatusSeeOther)
}
