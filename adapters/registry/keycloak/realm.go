package keycloak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
)

// The realm operations the sync and apps.IdP are made of, one admin API call or a few each.

// findClient returns the realm's client with clientID (found false when there is none).
func (a *admin) findClient(ctx context.Context, clientID string) (Client, bool, error) {
	var list []Client
	if err := a.do(ctx, "GET", "/clients?clientId="+url.QueryEscape(clientID), nil, &list); err != nil {
		return Client{}, false, err
	}
	for _, c := range list { // the query matches exactly unless search=true; checked anyway
		if c.ClientID == clientID {
			return c, true, nil
		}
	}
	return Client{}, false, nil
}

// listClients returns every client of the realm, page by page.
func (a *admin) listClients(ctx context.Context) ([]Client, error) {
	const page = 500
	var all []Client
	for first := 0; ; first += page {
		var list []Client
		if err := a.do(ctx, "GET", fmt.Sprintf("/clients?first=%d&max=%d", first, page), nil, &list); err != nil {
			return nil, err
		}
		all = append(all, list...)
		if len(list) < page {
			return all, nil
		}
	}
}

type scopeRep struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
}

// realmScopes returns the realm's OIDC client scopes by name.
func (a *admin) realmScopes(ctx context.Context) (map[string]string, error) {
	var list []scopeRep
	if err := a.do(ctx, "GET", "/client-scopes", nil, &list); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(list))
	for _, s := range list {
		if s.Protocol == "" || s.Protocol == "openid-connect" {
			out[s.Name] = s.ID
		}
	}
	return out, nil
}

func (a *admin) createClient(ctx context.Context, want Client) error {
	want.ID = ""
	return a.do(ctx, "POST", "/clients", want, nil)
}

func (a *admin) deleteClient(ctx context.Context, id string) error {
	err := a.do(ctx, "DELETE", "/clients/"+url.PathEscape(id), nil, nil)
	if errors.Is(err, errNotFound) {
		return nil
	}
	return err
}

// updateClient brings have's owned fields to want's: the client as Keycloak keeps it with the owned fields
// replaced (everything else left as it is), then its client scopes and the org mapper one by one (Keycloak
// applies those of a representation on creation only).
func (a *admin) updateClient(ctx context.Context, have, want Client, scopeIDs map[string]string) error {
	path := "/clients/" + url.PathEscape(have.ID)
	var raw map[string]any
	if err := a.do(ctx, "GET", path, nil, &raw); err != nil {
		return err
	}
	raw["enabled"], raw["name"] = want.Enabled, want.Name
	raw["redirectUris"], raw["webOrigins"] = want.RedirectURIs, want.WebOrigins
	raw["publicClient"] = want.PublicClient
	if !want.PublicClient {
		raw["clientAuthenticatorType"] = want.ClientAuthenticatorType
	}
	raw["standardFlowEnabled"], raw["serviceAccountsEnabled"] = want.StandardFlowEnabled, want.ServiceAccountsEnabled
	attrs, _ := raw["attributes"].(map[string]any)
	if attrs == nil {
		attrs = map[string]any{}
	}
	for _, k := range ownedAttributes {
		attrs[k] = want.Attributes[k] // "": Keycloak removes the attribute
	}
	raw["attributes"] = attrs
	if want.Secret != "" {
		raw["secret"] = want.Secret
	}
	delete(raw, "defaultClientScopes")
	delete(raw, "optionalClientScopes")
	delete(raw, "protocolMappers")
	if err := a.do(ctx, "PUT", path, raw, nil); err != nil {
		return err
	}
	if err := a.syncScopes(ctx, path, "default-client-scopes", defaults(have.DefaultClientScopes), want.DefaultClientScopes, scopeIDs); err != nil {
		return err
	}
	if err := a.syncScopes(ctx, path, "optional-client-scopes", have.OptionalClientScopes, want.OptionalClientScopes, scopeIDs); err != nil {
		return err
	}
	return a.syncMapper(ctx, path, have.ProtocolMappers, want.ProtocolMappers)
}

// syncScopes removes the scopes have has and want has not, then adds the missing ones.
func (a *admin) syncScopes(ctx context.Context, path, kind string, have, want []string, ids map[string]string) error {
	for _, n := range have {
		if !slices.Contains(want, n) && ids[n] != "" {
			if err := a.do(ctx, "DELETE", path+"/"+kind+"/"+url.PathEscape(ids[n]), nil, nil); err != nil && !errors.Is(err, errNotFound) {
				return err
			}
		}
	}
	for _, n := range want {
		if !slices.Contains(have, n) && ids[n] != "" {
			if err := a.do(ctx, "PUT", path+"/"+kind+"/"+url.PathEscape(ids[n]), nil, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *admin) syncMapper(ctx context.Context, path string, have, want []Mapper) error {
	hm, _ := findMapper(have)
	wm, _ := findMapper(want)
	switch {
	case sameMapper(hm, wm):
		return nil
	case hm == nil:
		return a.do(ctx, "POST", path+"/protocol-mappers/models", wm, nil)
	case wm == nil:
		return a.do(ctx, "DELETE", path+"/protocol-mappers/models/"+url.PathEscape(hm.ID), nil, nil)
	}
	m := *wm
	m.ID = hm.ID
	return a.do(ctx, "PUT", path+"/protocol-mappers/models/"+url.PathEscape(hm.ID), m, nil)
}

type sessionRep struct {
	ID      string            `json:"id"`
	UserID  string            `json:"userId"`
	Clients map[string]string `json:"clients"` // Keycloak id → client id
}

// endSessions makes every token the client holds useless: its notBefore pushed to now (Keycloak then refuses
// refresh tokens, and introspection access tokens, issued before), its users' sessions ended, its offline
// tokens and consents revoked.
func (a *admin) endSessions(ctx context.Context, c Client, now int64) error {
	path := "/clients/" + url.PathEscape(c.ID)
	var raw map[string]any
	if err := a.do(ctx, "GET", path, nil, &raw); err != nil {
		return err
	}
	raw["notBefore"] = now
	delete(raw, "defaultClientScopes")
	delete(raw, "optionalClientScopes")
	delete(raw, "protocolMappers")
	if err := a.do(ctx, "PUT", path, raw, nil); err != nil {
		return err
	}
	var online []sessionRep
	if err := a.do(ctx, "GET", path+"/user-sessions?first=0&max=10000", nil, &online); err != nil {
		return err
	}
	for _, s := range online {
		if err := a.do(ctx, "DELETE", "/sessions/"+url.PathEscape(s.ID), nil, nil); err != nil && !errors.Is(err, errNotFound) {
			return err
		}
	}
	var offline []sessionRep
	if err := a.do(ctx, "GET", path+"/offline-sessions?first=0&max=10000", nil, &offline); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, s := range offline {
		if seen[s.UserID] {
			continue
		}
		seen[s.UserID] = true
		if err := a.revokeConsent(ctx, s.UserID, c.ClientID); err != nil {
			return err
		}
	}
	return nil
}

// revokeConsent revokes the user's consent to the client and its offline tokens.
func (a *admin) revokeConsent(ctx context.Context, userID, clientID string) error {
	err := a.do(ctx, "DELETE", "/users/"+url.PathEscape(userID)+"/consents/"+url.PathEscape(clientID), nil, nil)
	if errors.Is(err, errNotFound) {
		return nil
	}
	return err
}

func (a *admin) userSessions(ctx context.Context, userID string) ([]sessionRep, error) {
	var list []sessionRep
	err := a.do(ctx, "GET", "/users/"+url.PathEscape(userID)+"/sessions", nil, &list)
	if errors.Is(err, errNotFound) {
		return nil, nil
	}
	return list, err
}

type consentRep struct {
	ClientID string `json:"clientId"`
}

func (a *admin) userConsents(ctx context.Context, userID string) ([]consentRep, error) {
	var list []consentRep
	err := a.do(ctx, "GET", "/users/"+url.PathEscape(userID)+"/consents", nil, &list)
	if errors.Is(err, errNotFound) {
		return nil, nil
	}
	return list, err
}

// secretRotationEnabled reports whether Keycloak has the client-secret-rotation feature, without which it
// keeps no rotated secret (GET /admin/serverinfo).
func (a *admin) secretRotationEnabled(ctx context.Context) (bool, error) {
	tok, err := a.accessToken(ctx)
	if err != nil {
		return false, err
	}
	b, err := a.call(ctx, "GET", a.base+"/admin/serverinfo", "", nil, tok)
	if err != nil {
		return false, fmt.Errorf("keycloak: server info: %w", err)
	}
	var info struct {
		Features []struct {
			Name    string `json:"name"`
			Enabled bool   `json:"enabled"`
		} `json:"features"`
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return false, fmt.Errorf("%w: server info: %v", ErrKeycloak, err)
	}
	return slices.ContainsFunc(info.Features, func(f struct {
		Name    string `json:"name"`
		Enabled bool   `json:"enabled"`
	}) bool {
		return f.Name == "CLIENT_SECRET_ROTATION" && f.Enabled
	}), nil
}

type credentialRep struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

func (a *admin) regenerateSecret(ctx context.Context, id string) (string, error) {
	var cred credentialRep
	if err := a.do(ctx, "POST", "/clients/"+url.PathEscape(id)+"/client-secret", nil, &cred); err != nil {
		return "", err
	}
	if cred.Value == "" {
		return "", fmt.Errorf("%w: regenerated secret: empty", ErrKeycloak)
	}
	return cred.Value, nil
}

// rotatedSecret reports whether the client has a rotated secret still valid, and when it expires (the
// client attribute client.secret.rotated.expiration.time, Unix seconds; 0 when not shown).
func (a *admin) rotatedSecret(ctx context.Context, c Client) (bool, int64, error) {
	var cred credentialRep
	err := a.do(ctx, "GET", "/clients/"+url.PathEscape(c.ID)+"/client-secret/rotated", nil, &cred)
	var se *statusError
	switch {
	case errors.Is(err, errNotFound) || (errors.As(err, &se) && se.code == 400):
		return false, 0, nil
	case err != nil:
		return false, 0, err
	}
	fresh, _, err := a.findClient(ctx, c.ClientID)
	if err != nil {
		return cred.Value != "", 0, err
	}
	exp, _ := strconv.ParseInt(fresh.Attributes["client.secret.rotated.expiration.time"], 10, 64)
	return cred.Value != "", exp, nil
}

func (a *admin) invalidateRotated(ctx context.Context, id string) error {
	err := a.do(ctx, "DELETE", "/clients/"+url.PathEscape(id)+"/client-secret/rotated", nil, nil)
	var se *statusError
	if errors.Is(err, errNotFound) || (errors.As(err, &se) && se.code == 400) {
		return nil
	}
	return err
}
