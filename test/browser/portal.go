package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// PageStep is one step of portal.mjs, the generic step runner (see its header for the ops).
type PageStep struct {
	Op       string `json:"op"`
	URL      string `json:"url,omitempty"`
	Sel      string `json:"sel,omitempty"`
	Text     string `json:"text,omitempty"`
	Name     string `json:"name,omitempty"`
	Attr     string `json:"attr,omitempty"`
	Path     string `json:"path,omitempty"`
	Nav      bool   `json:"nav,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// Steps are constructors for PageStep, so scenarios read as what the user does.
func Goto(url string) PageStep       { return PageStep{Op: "goto", URL: url} }
func Type(sel, text string) PageStep { return PageStep{Op: "type", Sel: sel, Text: text} }
func Click(sel string) PageStep      { return PageStep{Op: "click", Sel: sel} }
func ClickNav(sel string) PageStep   { return PageStep{Op: "click", Sel: sel, Nav: true} }
func Check(sel string) PageStep      { return PageStep{Op: "check", Sel: sel} }
func Uncheck(sel string) PageStep    { return PageStep{Op: "uncheck", Sel: sel} }
func Wait(sel string) PageStep       { return PageStep{Op: "wait", Sel: sel} }
func Text(sel, name string) PageStep { return PageStep{Op: "text", Sel: sel, Name: name} }
func Attr(sel, attr, name string) PageStep {
	return PageStep{Op: "attr", Sel: sel, Attr: attr, Name: name}
}
func Count(sel, name string) PageStep { return PageStep{Op: "count", Sel: sel, Name: name} }
func URLOf(name string) PageStep      { return PageStep{Op: "url", Name: name} }
func StatusOf(name string) PageStep   { return PageStep{Op: "status", Name: name} }
func Screenshot(path string) PageStep { return PageStep{Op: "screenshot", Path: path} }

// Login fills in Keycloak's login form.
func Login(username, password string) PageStep {
	return PageStep{Op: "login", Username: username, Password: password}
}

// Session is one browser (a fresh profile: its own cookies) running steps in order.
type Session struct {
	Steps             []PageStep `json:"steps"`
	SPKI              []string   `json:"spki,omitempty"`
	TimeoutMs         int        `json:"timeoutMs"`
	Chromium          string     `json:"chromium"`
	FailureScreenshot string     `json:"failureScreenshot,omitempty"`
}

// SessionResult is what the steps read, where the browser ended, and its log of failed requests and HTTP
// errors; Error and FailedStep say where a run stopped.
type SessionResult struct {
	Values            map[string]string `json:"values"`
	URL               string            `json:"url"`
	Log               []string          `json:"log"`
	Error             string            `json:"error"`
	FailedStep        int               `json:"failedStep"`
	FailureScreenshot string            `json:"failureScreenshot"`
}

// Err is the run's failure with the step it stopped at, or nil.
func (r *SessionResult) Err(s Session) error {
	if r.Error == "" {
		return nil
	}
	step := PageStep{}
	if r.FailedStep >= 0 && r.FailedStep < len(s.Steps) {
		step = s.Steps[r.FailedStep]
	}
	return fmt.Errorf("browser stopped at step %d %+v at %s: %s (screenshot %s)\nlog: %v", r.FailedStep, step, r.URL, r.Error, r.FailureScreenshot, r.Log)
}

// RunSession drives one Chromium through s with portal.mjs.
func RunSession(ctx context.Context, tools Tools, s Session) (*SessionResult, error) {
	s.Chromium = tools.Chromium
	if s.TimeoutMs == 0 {
		s.TimeoutMs = 30000
	}
	arg, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, tools.Node, filepath.Join(dir(), "portal.mjs"), string(arg))
	cmd.Env = append(os.Environ(), "FHIRWALL_NODE_MODULES="+tools.NodeModules)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("portal.mjs: %w\n%s", err, stderr.String())
	}
	var res SessionResult
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil {
		return nil, fmt.Errorf("portal.mjs printed %q: %w (stderr %s)", stdout.String(), err, stderr.String())
	}
	return &res, nil
}
