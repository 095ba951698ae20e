package admin

import (
	"context"
	"encoding/json"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
)

// privateJWKMembers are the members of a JWK that hold key material nobody but its owner may see
// (RFC 7518 §6.2.2 EC and §6.3.2 RSA private parameters, §6.4.1 a symmetric key; RFC 8037 §2 OKP "d").
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// View is app as the admin API shows it: an inline JWKS with its private parts left out, whatever the
// registrant sent (the registration policy refuses them; this is the second lock).
func View(app apps.App) apps.App {
	if len(app.JWKS) > 0 {
		app.JWKS = stripPrivate(app.JWKS)
	}
	return app
}

// AppView is an app as GET /admin/apps and /admin/apps/{id} show it: View(app) and where its client in the
// identity provider stands (idp_sync; left out when the store cannot say).
type AppView struct {
	apps.App
	IdPSync *apps.SyncState `json:"idp_sync,omitempty"`
}

func (a *api) withSync(ctx context.Context, app apps.App) AppView {
	v := AppView{App: View(app)}
	if st, err := a.store.Sync(ctx, app.ClientID); err == nil {
		v.IdPSync = &st
	}
	return v
}

func viewEvent(ev apps.Event) apps.Event {
	if ev.Before != nil {
		b := View(*ev.Before)
		ev.Before = &b
	}
	if ev.After != nil {
		a := View(*ev.After)
		ev.After = &a
	}
	return ev
}

// stripPrivate returns the JWKS (or single JWK) without private members; anything that is not a JSON object
// is left out whole rather than echoed.
func stripPrivate(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var set map[string]json.RawMessage
	if json.Unmarshal(raw, &set) != nil {
		return nil
	}
	if keysRaw, ok := set["keys"]; ok {
		var keys []map[string]json.RawMessage
		if json.Unmarshal(keysRaw, &keys) != nil {
			return nil
		}
		for _, k := range keys {
			for _, m := range privateJWKMembers {
				delete(k, m)
			}
		}
		b, err := json.Marshal(keys)
		if err != nil {
			return nil
		}
		set["keys"] = b
	} else {
		for _, m := range privateJWKMembers {
			delete(set, m)
		}
	}
	out, err := json.Marshal(set)
	if err != nil {
		return nil
	}
	return out
}
