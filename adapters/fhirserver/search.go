package fhirserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/sony/gobreaker/v2"
)

// bundle is the part of a searchset Bundle a Searcher reads.
type bundle struct {
	ResourceType string `json:"resourceType"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

func (b *bundle) next() string {
	for _, l := range b.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

// maxBundleBytes bounds one page; a page of 1,000 Consents or 100 Groups of a few hundred members fits well
// below it.
const maxBundleBytes = 64 << 20

// ErrTooManyPages means a search had more pages than the Searcher follows: the answer would be incomplete,
// and an incomplete attribution or opt-out list must not be used.
var ErrTooManyPages = errors.New("fhir search: too many pages")

// Searcher runs FHIR searches that must be complete (every page, or an error), through a circuit breaker.
type Searcher struct {
	base     string
	http     *http.Client
	maxPages int
	breaker  *gobreaker.CircuitBreaker[*bundle]
}

// NewSearcher returns a Searcher for the FHIR base URL; name labels its breaker; hc is Upstream.Lookups.
func NewSearcher(name, base string, hc *http.Client, maxPages int) *Searcher {
	return &Searcher{
		base: strings.TrimSuffix(base, "/"), http: hc, maxPages: maxPages,
		breaker: newBreaker[*bundle](name),
	}
}

// Breaker returns the searcher's circuit breaker.
func (c *Searcher) Breaker() Breaker { return c.breaker }

// Search runs GET base/path?query and follows the Bundle's next links, at most maxPages pages, calling
// each for every entry's resource. Every page goes through the breaker: an open breaker fails at once.
func (c *Searcher) Search(ctx context.Context, path string, query url.Values, each func(json.RawMessage) error) error {
	u := c.base + "/" + path + "?" + query.Encode()
	for page := 0; u != ""; page++ {
		if page == c.maxPages {
			return fmt.Errorf("%w: %s after %d", ErrTooManyPages, path, page)
		}
		b, err := call(ctx, c.breaker, func() (*bundle, error) { return c.get(ctx, u) })
		if err != nil {
			return err
		}
		for _, e := range b.Entry {
			if len(e.Resource) == 0 {
				continue
			}
			if err := each(e.Resource); err != nil {
				return err
			}
		}
		if u, err = c.pageURL(b.next()); err != nil {
			return err
		}
	}
	return nil
}

// pageURL turns a next link into a URL under the configured base. HAPI writes paging links with the address
// it believes it has (its configured server address or the Host it saw), which need not be the one fhirwall
// reaches it by; HAPI's paging links are base?_getpages=..., so only the query is kept.
func (c *Searcher) pageURL(next string) (string, error) {
	if next == "" || strings.HasPrefix(next, c.base+"?") || strings.HasPrefix(next, c.base+"/") {
		return next, nil
	}
	u, err := url.Parse(next)
	if err != nil || u.RawQuery == "" {
		return "", fmt.Errorf("fhir search: unusable next link %q", next)
	}
	return c.base + "?" + u.RawQuery, nil
}

func (c *Searcher) get(ctx context.Context, u string) (*bundle, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Cache-Control", "no-cache") // HAPI's search cache would hide a fresh change for a minute
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("fhir server: search: %w", &StatusError{Status: resp.StatusCode})
	}
	var b bundle
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBundleBytes)).Decode(&b); err != nil {
		return nil, fmt.Errorf("fhir server: %w", err)
	}
	if b.ResourceType != "Bundle" {
		return nil, fmt.Errorf("fhir server: search returned a %q, not a Bundle", b.ResourceType)
	}
	return &b, nil
}
