package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fhirwall/fhirwall/adapters/registry/admin"
	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	fileregistry "github.com/fhirwall/fhirwall/adapters/registry/file"
	"github.com/fhirwall/fhirwall/adapters/registry/postgres"
	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
)

const appsUsage = `usage: fhirwall apps <list|show|register|approve|activate|suspend|reactivate|deactivate|history|import> [flags]   (fhirwall apps <command> -h for flags)`

// Environment the apps commands read their defaults from.
const (
	envAppsAdminTokenFile = "FHIRWALL_ADMIN_TOKEN_FILE"
	envSpoolDir           = "FHIRWALL_AUDIT_SPOOL_DIR"
	envSigningKeyFile     = "FHIRWALL_AUDIT_SIGNING_KEY_FILE"
)

// appsCmd runs `fhirwall apps ...`: a reviewer's client of the app registry's admin API (every command but
// import), and the one-off import of config/clients.yaml straight into PostgreSQL.
func appsCmd(ctx context.Context, args []string, out io.Writer) (int, error) {
	if len(args) == 0 {
		return 2, errors.New(appsUsage)
	}
	cmd, args := args[0], args[1:]
	if cmd == "import" {
		return appsImport(ctx, args, out)
	}
	fs := flag.NewFlagSet("fhirwall apps "+cmd, flag.ContinueOnError)
	adminURL := fs.String("admin", "http://127.0.0.1:9190", "the admin listener of fhirwall-proxy (proxy.admin)")
	tokenFile := fs.String("token-file", os.Getenv(envAppsAdminTokenFile), "the admin token file (admin.token_file; default $"+envAppsAdminTokenFile+")")
	var run func(c adminClient) error
	idFlag := func() *string { return fs.String("id", "", "the app's client id (from `fhirwall apps list`)") }
	needID := func(id string) error {
		if id == "" {
			return usageErr(cmd + ": -id CLIENT_ID is required (from `fhirwall apps list`)")
		}
		return nil
	}
	switch cmd {
	case "list":
		run = func(c adminClient) error { return appsList(ctx, c, out) }
	case "show", "history":
		id := idFlag()
		run = func(c adminClient) error {
			if err := needID(*id); err != nil {
				return err
			}
			if cmd == "history" {
				return appsHistory(ctx, c, *id, out)
			}
			return appsShow(ctx, c, *id, out)
		}
	case "register":
		file := fs.String("file", "", "the app as JSON (an apps.App: client_id, name, contacts, redirect_uris, requested_apis, ...)")
		reviewer := fs.String("reviewer", "", "your name, recorded with the registration")
		reason := fs.String("reason", "", "why, recorded with the registration")
		run = func(c adminClient) error {
			body, err := registrationBody(*file, *reviewer, *reason)
			if err != nil {
				return err
			}
			return appsRegister(ctx, c, body, out)
		}
	case "approve", "activate", "suspend", "reactivate", "deactivate":
		id := idFlag()
		reviewer := fs.String("reviewer", "", "your name, recorded with the change")
		reason := fs.String("reason", "", "why (required to suspend or deactivate: the developer and the auditors are told)")
		var apisFlag, scopesFlag *string
		if cmd == "approve" {
			apisFlag = fs.String("apis", "", "approve only these of the requested APIs, comma-separated (default: all requested)")
			scopesFlag = fs.String("scopes", "", "approve only these scopes, each covered by a requested one, comma-separated (default: all requested)")
		}
		run = func(c adminClient) error {
			if err := needID(*id); err != nil {
				return err
			}
			if strings.TrimSpace(*reviewer) == "" {
				return usageErr(cmd + ": -reviewer NAME is required: it is recorded with the change")
			}
			if (cmd == "suspend" || cmd == "deactivate") && strings.TrimSpace(*reason) == "" {
				return usageErr(cmd + ": -reason TEXT is required: the developer and the auditors are told why")
			}
			body := admin.Approval{Reviewer: *reviewer, Reason: *reason}
			if apisFlag != nil {
				body.APIs, body.Scopes = splitList(*apisFlag), splitList(*scopesFlag)
			}
			return appsTransition(ctx, c, *id, cmd, body, out)
		}
	default:
		return 2, errors.New(appsUsage)
	}
	return runAdmin(fs, args, "apps "+cmd, func() (adminClient, error) {
		return newAdminClient(*adminURL, *tokenFile, envAppsAdminTokenFile, "admin.token_file",
			"no app registry admin API there; fhirwall-proxy serves it with registry.source postgres and admin.token_file set")
	}, run)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// registrationBody is the app of file with the reviewer and reason added: the file's fields are sent as
// they are, for the admin API to judge.
func registrationBody(file, reviewer, reason string) (map[string]json.RawMessage, error) {
	switch {
	case file == "":
		return nil, usageErr("register: -file app.json is required (the app: client_id, name, contacts, requested_apis, ...; docs/app-registry.md)")
	case strings.TrimSpace(reviewer) == "":
		return nil, usageErr("register: -reviewer NAME is required: it is recorded with the registration")
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, usageErr(fmt.Sprintf("register: %v", err))
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, usageErr(fmt.Sprintf("register: %s is not a JSON object: %v", file, err))
	}
	r, _ := json.Marshal(reviewer)
	body["reviewer"] = r
	if reason != "" {
		r, _ := json.Marshal(reason)
		body["reason"] = r
	}
	return body, nil
}

func appsList(ctx context.Context, c adminClient, out io.Writer) error {
	var list []apps.App
	if err := c.call(ctx, http.MethodGet, "/admin/apps/", nil, &list); err != nil {
		return err
	}
	if len(list) == 0 {
		_, err := fmt.Fprintln(out, "no apps registered")
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CLIENT_ID\tSTATE\tENVIRONMENT\tAPIS\tTIER\tNAME")
	for _, a := range list {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", a.ClientID, a.State, a.Environment, strings.Join(a.ApprovedAPIs, ","), dash(a.Tier), a.Name)
	}
	return w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func appsShow(ctx context.Context, c adminClient, id string, out io.Writer) error {
	var r json.RawMessage
	if err := c.call(ctx, http.MethodGet, "/admin/apps/"+url.PathEscape(id), nil, &r); err != nil {
		return err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, r, "", "  "); err != nil {
		return err
	}
	b.WriteByte('\n')
	_, err := out.Write(b.Bytes())
	return err
}

func appsHistory(ctx context.Context, c adminClient, id string, out io.Writer) error {
	var evs []apps.Event
	if err := c.call(ctx, http.MethodGet, "/admin/apps/"+url.PathEscape(id)+"/history", nil, &evs); err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TIME (UTC)\tACTION\tACTOR\tSTATE\tREASON")
	for _, e := range evs {
		state := "-"
		if e.After != nil {
			state = string(e.After.State)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format("2006-01-02 15:04:05"), e.Action, e.Actor, state, dash(oneLine(e.Reason)))
	}
	return w.Flush()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func appsRegister(ctx context.Context, c adminClient, body any, out io.Writer) error {
	var a apps.App
	if err := c.call(ctx, http.MethodPost, "/admin/apps/", body, &a); err != nil {
		return err
	}
	next := "a reviewer approves it: fhirwall apps approve -id " + a.ClientID + " -reviewer NAME"
	if a.State == apps.StateActive {
		next = "its tokens are honoured now (sandbox)"
	}
	_, err := fmt.Fprintf(out, "%s: registered %s, %s (version %d); %s\n", a.ClientID, a.Environment, a.State, a.Version, next)
	return err
}

func appsTransition(ctx context.Context, c adminClient, id, action string, body admin.Approval, out io.Writer) error {
	var payload any = body
	if action != "approve" {
		payload = admin.Review{Reviewer: body.Reviewer, Reason: body.Reason}
	}
	var a apps.App
	if err := c.call(ctx, http.MethodPost, "/admin/apps/"+url.PathEscape(id)+"/"+action, payload, &a); err != nil {
		return err
	}
	line := fmt.Sprintf("%s: %s by admin:%s (version %d)", a.ClientID, a.State, strings.TrimSpace(body.Reviewer), a.Version)
	if action == "approve" {
		line += fmt.Sprintf("; apis %s, scopes %s", strings.Join(a.ApprovedAPIs, ","), strings.Join(a.ApprovedScopes, " "))
	}
	_, err := fmt.Fprintln(out, line)
	return err
}

// appsImport runs `fhirwall apps import`: the file registry's clients registered in PostgreSQL as active (or
// suspended) production apps, each change audited into the spool. Run it once before switching
// registry.source to postgres; running it again registers only clients not there yet.
func appsImport(ctx context.Context, args []string, out io.Writer) (int, error) {
	fs := flag.NewFlagSet("fhirwall apps import", flag.ContinueOnError)
	clientsFile := fs.String("clients", "config/clients.yaml", "the file registry (registry.file)")
	dsn := fs.String("postgres", os.Getenv(envJobsDSN), "PostgreSQL of the app registry (jobs.postgres_dsn; default $"+envJobsDSN+")")
	spoolDir := fs.String("spool", os.Getenv(envSpoolDir), "the audit spool the import's records go to (audit.spool.dir; default $"+envSpoolDir+"); fhirwall-proxy ships them")
	keyFile := fs.String("key", os.Getenv(envSigningKeyFile), "the spool's signing key (audit.signing_key_file; default $"+envSigningKeyFile+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	switch {
	case fs.NArg() > 0:
		return 2, fmt.Errorf("apps import: unexpected argument %q", fs.Arg(0))
	case *dsn == "":
		return 2, errors.New("apps import: -postgres DSN is required (jobs.postgres_dsn, or $" + envJobsDSN + ")")
	case *spoolDir == "" || *keyFile == "":
		return 2, errors.New("apps import: -spool DIR and -key FILE are required: every registration is audited (audit.spool.dir and audit.signing_key_file, or $" + envSpoolDir + " and $" + envSigningKeyFile + ")")
	}
	data, err := os.ReadFile(*clientsFile)
	if err != nil {
		return 2, fmt.Errorf("apps import: %v (-clients FILE names registry.file)", err)
	}
	parsed, err := fileregistry.Parse(data, config.KnownAPIs)
	if err != nil {
		return 2, fmt.Errorf("apps import: %s: %v", *clientsFile, err)
	}
	clients := make([]decision.Client, 0, len(parsed))
	for _, c := range parsed {
		clients = append(clients, c)
	}
	slices.SortFunc(clients, func(a, b decision.Client) int { return strings.Compare(a.ID, b.ID) })
	key, err := audit.LoadSigningKey(*keyFile)
	if err != nil {
		return 2, fmt.Errorf("apps import: the signing key: %v (-key FILE names audit.signing_key_file)", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	spool, err := audit.Open(*spoolDir, audit.Options{Key: key, Log: log})
	if err != nil {
		return 2, fmt.Errorf("apps import: %v (a running fhirwall-proxy holds its spool: stop it, or give -spool a directory of its own)", err)
	}
	defer func() { _ = spool.Close() }()
	openCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	store, err := postgres.Open(openCtx, *dsn, apps.NewAuditor(spool), log)
	if err != nil {
		return 2, fmt.Errorf("apps import: %v", err)
	}
	defer store.Close()
	n, err := postgres.Import(ctx, store, clients, "import")
	if err != nil {
		return 1, fmt.Errorf("apps import: %d registered before: %v (run it again: registered clients are skipped)", n, err)
	}
	_, err = fmt.Fprintf(out, "imported %d of %d clients from %s (the others were registered already); set registry.source: postgres to serve them\n", n, len(clients), *clientsFile)
	return 0, err
}
