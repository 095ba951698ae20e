package portal

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/fhirwall/fhirwall/config"
)

// apiDoc is an API's documentation page, read from what fhirwall itself serves: its CapabilityStatement and
// its SMART discovery document.
type apiDoc struct {
	Name       string
	BaseURL    string
	FHIR       string
	Resources  []resourceDoc
	Operations []string
	SMART      smartDoc
	Notices    []noticeView
}

type resourceDoc struct {
	Type         string
	Interactions []string
	Search       []string
	Operations   []string
}

type smartDoc struct {
	Authorization string   `json:"authorization_endpoint"`
	Token         string   `json:"token_endpoint"`
	Revocation    string   `json:"revocation_endpoint"`
	Introspection string   `json:"introspection_endpoint"`
	Registration  string   `json:"registration_endpoint"`
	Management    string   `json:"management_endpoint"`
	JWKS          string   `json:"jwks_uri"`
	Scopes        []string `json:"scopes_supported"`
	Capabilities  []string `json:"capabilities"`
	AuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
	PKCE          []string `json:"code_challenge_methods_supported"`
}

// capabilityStatement is the part of a FHIR CapabilityStatement the documentation shows.
type capabilityStatement struct {
	ResourceType   string `json:"resourceType"`
	FHIRVersion    string `json:"fhirVersion"`
	Implementation struct {
		URL string `json:"url"`
	} `json:"implementation"`
	Rest []struct {
		Resource []struct {
			Type        string `json:"type"`
			Interaction []struct {
				Code string `json:"code"`
			} `json:"interaction"`
			SearchParam []struct {
				Name string `json:"name"`
				Type string `json:"type"`
			} `json:"searchParam"`
			Operation []struct {
				Name string `json:"name"`
			} `json:"operation"`
		} `json:"resource"`
		Operation []struct {
			Name string `json:"name"`
		} `json:"operation"`
	} `json:"rest"`
}

var errNotCapability = errors.New("not a CapabilityStatement")

// parseDocs builds the documentation from the two documents; either may be empty.
func parseDocs(name string, capability, smart []byte) (apiDoc, error) {
	d := apiDoc{Name: name}
	if len(capability) > 0 {
		var cs capabilityStatement
		if err := json.Unmarshal(capability, &cs); err != nil {
			return d, err
		}
		if cs.ResourceType != "CapabilityStatement" {
			return d, errNotCapability
		}
		d.BaseURL, d.FHIR = cs.Implementation.URL, cs.FHIRVersion
		for _, rest := range cs.Rest {
			for _, op := range rest.Operation {
				d.Operations = append(d.Operations, "$"+op.Name)
			}
			for _, res := range rest.Resource {
				rd := resourceDoc{Type: res.Type}
				for _, i := range res.Interaction {
					rd.Interactions = append(rd.Interactions, i.Code)
				}
				for _, sp := range res.SearchParam {
					rd.Search = append(rd.Search, sp.Name+" ("+sp.Type+")")
				}
				for _, op := range res.Operation {
					rd.Operations = append(rd.Operations, "$"+op.Name)
				}
				d.Resources = append(d.Resources, rd)
			}
		}
		slices.SortFunc(d.Resources, func(a, b resourceDoc) int {
			if a.Type < b.Type {
				return -1
			}
			if a.Type > b.Type {
				return 1
			}
			return 0
		})
	}
	if len(smart) > 0 {
		if err := json.Unmarshal(smart, &d.SMART); err != nil {
			return d, err
		}
	}
	return d, nil
}

func (h *handler) api(name string) (config.API, bool) {
	for _, a := range h.apis {
		if a.Name == name {
			return a, true
		}
	}
	return config.API{}, false
}

func (h *handler) docsPage(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("api")
	if _, ok := h.api(name); !ok {
		h.fail(w, r, http.StatusNotFound, "There is no such API.")
		return
	}
	if h.docs == nil {
		h.fail(w, r, http.StatusServiceUnavailable, "Documentation is unavailable.")
		return
	}
	capability, smart, err := h.docs(r.Context(), name)
	if err != nil {
		h.log.Warn("portal: docs", "api", name, "err", err)
		h.fail(w, r, http.StatusServiceUnavailable, "The API's documents could not be read. Try again shortly.")
		return
	}
	d, err := parseDocs(name, capability, smart)
	if err != nil {
		h.log.Warn("portal: docs", "api", name, "err", err)
		h.fail(w, r, http.StatusBadGateway, "The API's CapabilityStatement could not be read.")
		return
	}
	d.Notices = h.noticesFor(name)
	h.render(w, r, http.StatusOK, "docs", name+" documentation", d)
}
