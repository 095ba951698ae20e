// Package file is a client registry read from a YAML file (config/clients.yaml), validated whole and
// reloaded when the file changes; a file that does not validate leaves the running registry as it was.
//
// Besides id, name, active, apis, scopes, tier and org, an entry may list notify_hosts: the hosts the client
// registered to receive notifications (Prior Authorization Subscriptions send rest-hook notifications to
// these hosts only). Each is a host name or an IP address, optionally with ":port" ([v6]:port for IPv6);
// without a port any port on that host is allowed. No scheme, no path, no wildcard.
package file

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.yaml.in/yaml/v3"

	"github.com/fhirwall/fhirwall/internal/decision"
)

var _ decision.Registry = (*Registry)(nil)

// DefaultTier is the rate tier of a client whose entry names none.
const DefaultTier = "standard"

// Registry serves lookups from an immutable snapshot swapped whole on reload; readers never lock.
type Registry struct {
	path  string
	known []string // API names an entry may enable
	snap  atomic.Pointer[snapshot]
}

type snapshot struct {
	clients map[string]decision.Client
	sum     [32]byte // of the file's bytes: an event that changed nothing does not rebuild
}

// entry is one client as written in the file.
type entry struct {
	ID     string   `yaml:"id"`
	Name   string   `yaml:"name"`
	Active *bool    `yaml:"active"` // required: a client is never active by omission
	APIs   []string `yaml:"apis"`
	Scopes []string `yaml:"scopes"`
	Tier   string   `yaml:"tier"`
	Org    string   `yaml:"org"`
	// NotifyHosts: host, host:port, IP, IP:port or [IPv6]:port; no scheme, path or wildcard.
	NotifyHosts []string `yaml:"notify_hosts"`
}

// Load reads and validates the file at path. knownAPIs are the API names entries may enable.
func Load(path string, knownAPIs []string) (*Registry, error) {
	r := &Registry{path: path, known: slices.Clone(knownAPIs)}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Lookup implements decision.Registry.
func (r *Registry) Lookup(_ context.Context, clientID string) (decision.Client, error) {
	c, ok := r.snap.Load().clients[clientID]
	if !ok {
		return decision.Client{}, decision.ErrUnknownClient
	}
	// The snapshot is shared by every request: hand out copies of its slices.
	c.APIs, c.Scopes, c.NotifyHosts = slices.Clone(c.APIs), slices.Clone(c.Scopes), slices.Clone(c.NotifyHosts)
	return c, nil
}

// Len is the number of registered clients.
func (r *Registry) Len() int { return len(r.snap.Load().clients) }

// Reload reads the file again. On any error the registry keeps serving the snapshot it had.
func (r *Registry) Reload() error {
	data, err := os.ReadFile(r.path)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	sum := sha256.Sum256(data)
	if old := r.snap.Load(); old != nil && old.sum == sum {
		return nil
	}
	clients, err := Parse(data, r.known)
	if err != nil {
		return fmt.Errorf("registry: %s: %w", r.path, err)
	}
	r.snap.Store(&snapshot{clients: clients, sum: sum})
	return nil
}

// Parse decodes and validates a registry file, naming every bad entry at once.
func Parse(data []byte, knownAPIs []string) (map[string]decision.Client, error) {
	var doc struct {
		Clients []entry `yaml:"clients"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a misspelt key is an error, not a silently missing setting
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a registry file: %w", err)
	}
	if len(doc.Clients) == 0 {
		// Also what a half-written file looks like to a watcher: never swap in "nobody is registered".
		return nil, errors.New("clients: no client registered")
	}
	var errs []error
	clients := make(map[string]decision.Client, len(doc.Clients))
	for i, e := range doc.Clients {
		bad := func(err error) { errs = append(errs, fmt.Errorf("clients[%d] (%s): %w", i, e.ID, err)) }
		c := decision.Client{ID: e.ID, Name: e.Name, APIs: e.APIs, Scopes: e.Scopes, Tier: e.Tier, Org: e.Org, NotifyHosts: e.NotifyHosts}
		if c.Name == "" {
			c.Name = c.ID
		}
		if c.Tier == "" {
			c.Tier = DefaultTier
		}
		if e.Active == nil {
			bad(errors.New("active: required (true or false)"))
		} else {
			c.Active = *e.Active
		}
		if err := c.Validate(); err != nil {
			bad(err)
		}
		for _, a := range e.APIs {
			if !slices.Contains(knownAPIs, a) {
				bad(fmt.Errorf("apis: %q is not one of %v", a, knownAPIs))
			}
		}
		for _, h := range e.NotifyHosts {
			if err := validNotifyHost(h); err != nil {
				bad(fmt.Errorf("notify_hosts: %q: %w", h, err))
			}
		}
		if _, dup := clients[e.ID]; dup {
			bad(errors.New("id registered twice"))
		}
		clients[e.ID] = c
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return clients, nil
}

// validNotifyHost accepts a host name or IP address, optionally with a port: what a notification endpoint's
// URL authority must equal (or, without a port, its host). Anything looser (a scheme, a path, a wildcard, user
// info) would let a notification go somewhere the registry's reader did not see written.
func validNotifyHost(h string) error {
	if h == "" {
		return errors.New("empty")
	}
	if strings.ContainsAny(h, "/\\?#@*% \t\r\n") {
		return errors.New("want a host name or IP, optionally :port (no scheme, path, user or wildcard)")
	}
	host, port := h, ""
	if hp, p, err := net.SplitHostPort(h); err == nil {
		host, port = hp, p
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") { // [IPv6] without a port
		host = h[1 : len(h)-1]
	} else if strings.Count(h, ":") > 1 { // a bare IPv6 address
		host = h
	} else if strings.Contains(h, ":") {
		return fmt.Errorf("bad host:port: %w", err)
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return errors.New("port: want 1-65535")
		}
	}
	if host == "" {
		return errors.New("no host")
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if strings.Contains(host, ":") {
		return errors.New("not an IP address")
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("not a host name")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return errors.New("not a host name")
			}
		}
	}
	return nil
}

// concerns reports whether an event on name in the watched directory may have changed the registry file
// at path: the file itself, or Kubernetes' ConfigMap/Secret swap (the "..data" link and its "..<timestamp>"
// directories) behind a mounted file. Other files written beside it (logs, other configs) reload nothing.
func concerns(name, path string) bool {
	base := filepath.Base(name)
	return base == filepath.Base(path) || strings.HasPrefix(base, "..")
}

// Watch reloads the registry whenever its file changes (watched through its directory: editors and Kubernetes
// ConfigMaps replace files by rename, which a watch on the file itself would miss) until ctx ends.
// onReload, if not nil, is told the outcome of each reload; a failed one leaves the old snapshot in place.
func (r *Registry) Watch(ctx context.Context, log *slog.Logger, onReload func(error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("registry: watch: %w", err)
	}
	if err := w.Add(filepath.Dir(r.path)); err != nil {
		_ = w.Close()
		return fmt.Errorf("registry: watch %s: %w", filepath.Dir(r.path), err)
	}
	go func() {
		defer w.Close()
		// A burst of events (truncate, write, chmod) becomes one reload once the file has settled.
		const settle = 100 * time.Millisecond
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if concerns(ev.Name, r.path) {
					timer.Reset(settle)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn("client registry watch error", "path", r.path, "error", err)
			case <-timer.C:
				err := r.Reload()
				if err != nil {
					log.Error("client registry not reloaded; keeping the previous one", "path", r.path, "error", err)
				} else {
					log.Info("client registry loaded", "path", r.path, "clients", r.Len())
				}
				if onReload != nil {
					onReload(err)
				}
			}
		}
	}()
	return nil
}
