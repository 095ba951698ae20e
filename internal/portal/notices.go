package portal

import (
	"encoding/xml"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/fhirwall/fhirwall/config"
)

// noticeView is a notice as pages show it.
type noticeView struct {
	config.Notice
	Active bool // a window or incident under way, or a deprecation in force
}

// noticesFor lists api's notices ("" every API), newest first.
func (h *handler) noticesFor(api string) []noticeView {
	now := h.now()
	var out []noticeView
	for _, n := range h.notices {
		if api != "" && n.API != api {
			continue
		}
		v := noticeView{Notice: n}
		switch n.Kind {
		case "deprecation":
			v.Active = !n.Deprecation.IsZero() && !now.Before(n.Deprecation)
		default:
			v.Active = !now.Before(n.Start) && (n.End.IsZero() || now.Before(n.End))
		}
		out = append(out, v)
	}
	slices.SortStableFunc(out, func(a, b noticeView) int { return b.Published.Compare(a.Published) })
	return out
}

func (h *handler) noticesPage(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, "notices", "Notices", h.noticesFor(""))
}

// Atom 1.0 (RFC 4287).
type atomFeed struct {
	XMLName xml.Name    `xml:"http://www.w3.org/2005/Atom feed"`
	ID      string      `xml:"id"`
	Title   string      `xml:"title"`
	Updated string      `xml:"updated"`
	Author  atomPerson  `xml:"author"`
	Links   []atomLink  `xml:"link"`
	Entries []atomEntry `xml:"entry"`
}

type atomPerson struct {
	Name string `xml:"name"`
}

type atomLink struct {
	Rel  string `xml:"rel,attr,omitempty"`
	Href string `xml:"href,attr"`
	Type string `xml:"type,attr,omitempty"`
}

type atomEntry struct {
	ID       string       `xml:"id"`
	Title    string       `xml:"title"`
	Updated  string       `xml:"updated"`
	Link     atomLink     `xml:"link"`
	Category atomCategory `xml:"category"`
	Summary  atomText     `xml:"summary"`
}

type atomCategory struct {
	Term string `xml:"term,attr"`
}

type atomText struct {
	Type string `xml:"type,attr"`
	Text string `xml:",chardata"`
}

// noticeLink is where a notice is explained: its own link, else its API's status page.
func (h *handler) noticeLink(n config.Notice) string {
	if n.Link != "" {
		return n.Link
	}
	return h.publicURL + "/status/" + url.PathEscape(n.API) + "#notice-" + url.PathEscape(n.ID)
}

// entryID is a notice's stable Atom id: a tag URI (RFC 4151) would need a date the notice may lack; an
// https URL under the portal is as stable as the notice's id.
func (h *handler) entryID(n config.Notice) string {
	return h.publicURL + "/notices#" + url.PathEscape(n.ID)
}

func (h *handler) noticesAtom(w http.ResponseWriter, r *http.Request) {
	ns := h.noticesFor("")
	feed := atomFeed{ID: h.publicURL + "/notices.atom", Title: "fhirwall API notices", Author: atomPerson{Name: "fhirwall"},
		Links: []atomLink{{Rel: "self", Href: h.publicURL + "/notices.atom", Type: "application/atom+xml"},
			{Rel: "alternate", Href: h.publicURL + "/notices", Type: "text/html"}}}
	var updated time.Time
	for _, n := range ns {
		if n.Published.After(updated) {
			updated = n.Published
		}
		summary := n.Body
		if summary == "" {
			summary = n.Title
		}
		feed.Entries = append(feed.Entries, atomEntry{ID: h.entryID(n.Notice), Title: "[" + n.API + "] " + n.Title,
			Updated: n.Published.UTC().Format(time.RFC3339), Link: atomLink{Rel: "alternate", Href: h.noticeLink(n.Notice)},
			Category: atomCategory{Term: n.Kind}, Summary: atomText{Type: "text", Text: summary}})
	}
	if updated.IsZero() {
		updated = time.Unix(0, 0) // no notices: a fixed time, so the feed does not look changed on each fetch
	}
	feed.Updated = updated.UTC().Format(time.RFC3339)
	out, err := xml.MarshalIndent(feed, "", "  ")
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "The feed could not be made.")
		return
	}
	w.Header().Set("Content-Type", "application/atom+xml; charset=utf-8")
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(out)
}

// statusView is the status page of one API or all.
type statusView struct {
	Replica string
	APIs    []apiStatus
}

type apiStatus struct {
	Name    string
	Figures []Figures
	Notices []noticeView
}

func (h *handler) statusOf(name string) apiStatus {
	s := apiStatus{Name: name, Notices: h.noticesFor(name)}
	if h.status != nil {
		s.Figures = h.status.Report(name)
	}
	return s
}

func (h *handler) statusPage(w http.ResponseWriter, r *http.Request) {
	v := statusView{}
	if h.status != nil {
		v.Replica = h.status.Replica()
	}
	for _, a := range h.apis {
		v.APIs = append(v.APIs, h.statusOf(a.Name))
	}
	h.render(w, r, http.StatusOK, "status", "API status", v)
}

func (h *handler) statusAPIPage(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("api")
	if _, ok := h.api(name); !ok {
		h.fail(w, r, http.StatusNotFound, "There is no such API.")
		return
	}
	v := statusView{APIs: []apiStatus{h.statusOf(name)}}
	if h.status != nil {
		v.Replica = h.status.Replica()
	}
	h.render(w, r, http.StatusOK, "status", name+" status", v)
}

type homeView struct {
	APIs    []string
	Notices []noticeView
}

func (h *handler) home(w http.ResponseWriter, r *http.Request) {
	v := homeView{Notices: h.noticesFor("")}
	for _, a := range h.apis {
		v.APIs = append(v.APIs, a.Name)
	}
	h.render(w, r, http.StatusOK, "home", "fhirwall developer portal", v)
}
