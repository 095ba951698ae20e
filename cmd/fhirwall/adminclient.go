package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// adminClient calls an admin API on fhirwall-proxy's admin listener (the prior-auth reviewers', the app
// registry's) with the admin token. Both answer JSON and refuse with {"error": "..."}.
type adminClient struct {
	base  string
	token string
	http  *http.Client
	// tokenSetting is the config setting the token comes from; notServed says what a 404 without an
	// admin API's answer means. Both only make the errors say how to fix them.
	tokenSetting, notServed string
}

// runAdmin parses a subcommand's flags, builds its admin client and runs it: exit status 0 done, 2 a
// mistake in the arguments, 1 a refusal or an unreachable admin API.
func runAdmin(fs *flag.FlagSet, args []string, name string, client func() (adminClient, error), run func(adminClient) error) (int, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))
	}
	c, err := client()
	if err == nil {
		err = run(c)
	}
	switch {
	case err == nil:
		return 0, nil
	case errors.Is(err, errUsage):
		return 2, err
	}
	return 1, err
}

// newAdminClient reads the token from tokenFile (envName is the environment variable that defaults it).
func newAdminClient(base, tokenFile, envName, tokenSetting, notServed string) (adminClient, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return adminClient{}, usageErr(fmt.Sprintf("-admin %q: want the admin listener's URL, http://127.0.0.1:9190", base))
	}
	if tokenFile == "" {
		return adminClient{}, usageErr("the admin token is required: -token-file FILE or $" + envName + " (the file " + tokenSetting + " names)")
	}
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		return adminClient{}, usageErr(fmt.Sprintf("the admin token: %v", err))
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return adminClient{}, usageErr("the admin token file " + tokenFile + " is empty")
	}
	return adminClient{base: strings.TrimRight(base, "/"), token: tok, http: &http.Client{Timeout: 30 * time.Second},
		tokenSetting: tokenSetting, notServed: notServed}, nil
}

// call sends body (nil: none) and decodes a 2xx answer into out; a refusal is a one-line error with the
// API's message and, where it helps, the fix.
func (c adminClient) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("the admin API at %s: %v (is fhirwall-proxy running, and is -admin its proxy.admin address?)", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("the admin API at %s: %w", c.base, err)
	}
	if resp.StatusCode/100 == 2 {
		return json.Unmarshal(raw, out)
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &e) != nil || e.Error == "" {
		if resp.StatusCode == http.StatusNotFound && c.notServed != "" {
			return fmt.Errorf("%s %s: 404: %s", method, path, c.notServed)
		}
		e.Error = strings.Join(strings.Fields(string(raw)), " ")
	}
	if len(e.Error) > 600 {
		e.Error = e.Error[:600] + "…"
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return errors.New("the admin API refused the token (401): -token-file must hold the token of " + c.tokenSetting)
	}
	return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, e.Error)
}
