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
	"text/tabwriter"
	"time"

	"github.com/fhirwall/fhirwall/adapters/priorauth"
	"github.com/fhirwall/fhirwall/adapters/priorauth/um"
)

const priorAuthUsage = `usage: fhirwall prior-auth <queue|show|decide> [flags]   (fhirwall prior-auth <command> -h for flags)`

// Environment the prior-auth commands read their defaults from (test/stack/fhirwall.sh exports both).
const (
	envAdminTokenFile = "FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE"
	envJobsDSN        = "FHIRWALL_JOBS_POSTGRES_DSN"
)

// defaultReasonSystem is X12 886 (health care service review decision reason codes), as PAS codes HCR03.
const defaultReasonSystem = "https://codesystem.x12.org/external/886"

// priorAuth runs `fhirwall prior-auth queue|show|decide`, a reviewer's client of the review admin API.
func priorAuth(ctx context.Context, args []string, out io.Writer) (int, error) {
	if len(args) == 0 {
		return 2, errors.New(priorAuthUsage)
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("fhirwall prior-auth "+cmd, flag.ContinueOnError)
	admin := fs.String("admin", "http://127.0.0.1:9190", "the admin listener of fhirwall-proxy (proxy.admin)")
	tokenFile := fs.String("token-file", os.Getenv(envAdminTokenFile), "the admin token file (prior_auth.admin_token_file; default $"+envAdminTokenFile+")")
	var run func(c adminClient) error
	switch cmd {
	case "queue":
		run = func(c adminClient) error { return priorAuthQueue(ctx, c, out) }
	case "show":
		id := fs.String("id", "", "the request's id (from `fhirwall prior-auth queue`)")
		run = func(c adminClient) error {
			if *id == "" {
				return usageErr("show: -id ID is required (from `fhirwall prior-auth queue`)")
			}
			return priorAuthShow(ctx, c, *id, out)
		}
	case "decide":
		id := fs.String("id", "", "the request's id (from `fhirwall prior-auth queue`)")
		verdict := fs.String("verdict", "", "approved or denied: applies to every item still pended")
		reviewer := fs.String("reviewer", "", "your name, recorded with the decision")
		reasonSystem := fs.String("reason-system", "", "the denial reason's code system (default "+defaultReasonSystem+", X12 886)")
		reasonCode := fs.String("reason-code", "", "the denial reason's code (required to deny: CMS-0057-F asks a specific reason for every denial)")
		reasonDisplay := fs.String("reason-display", "", "the denial reason's text")
		extended := fs.Bool("extended", false, "the review timeframe was extended (a CMS public metric)")
		afterAppeal := fs.Bool("after-appeal", false, "this approval follows an appeal (a CMS public metric)")
		run = func(c adminClient) error {
			d, err := decisionFromFlags(*id, *verdict, *reviewer, *reasonSystem, *reasonCode, *reasonDisplay, *extended, *afterAppeal)
			if err != nil {
				return err
			}
			return priorAuthDecide(ctx, c, *id, d, out)
		}
	default:
		return 2, errors.New(priorAuthUsage)
	}
	return runAdmin(fs, args, cmd, func() (adminClient, error) {
		return newAdminClient(*admin, *tokenFile, envAdminTokenFile, "prior_auth.admin_token_file",
			"no prior-auth admin API there; fhirwall-proxy serves it with a prior-auth API and prior_auth.admin_token_file (or admin.token_file) set")
	}, run)
}

// usageErr is a mistake in the arguments (exit status 2).
func usageErr(msg string) error { return fmt.Errorf("%w: %s", errUsage, msg) }

func decisionFromFlags(id, verdict, reviewer, reasonSystem, reasonCode, reasonDisplay string, extended, afterAppeal bool) (priorauth.AdminDecision, error) {
	switch {
	case id == "":
		return priorauth.AdminDecision{}, usageErr("decide: -id ID is required (from `fhirwall prior-auth queue`)")
	case verdict != priorauth.AdminApproved && verdict != priorauth.AdminDenied:
		return priorauth.AdminDecision{}, usageErr("decide: -verdict approved or -verdict denied is required")
	case strings.TrimSpace(reviewer) == "":
		return priorauth.AdminDecision{}, usageErr("decide: -reviewer NAME is required: it is recorded with the decision")
	case reasonCode == "" && (reasonSystem != "" || reasonDisplay != ""):
		return priorauth.AdminDecision{}, usageErr("decide: -reason-system and -reason-display need -reason-code")
	case verdict == priorauth.AdminDenied && reasonCode == "":
		return priorauth.AdminDecision{}, usageErr("decide: a denial needs -reason-code C (and -reason-display D): CMS-0057-F asks a specific reason for every denial")
	}
	d := priorauth.AdminDecision{Reviewer: reviewer, Verdict: verdict, Extended: extended, AfterAppeal: afterAppeal}
	if reasonCode != "" {
		if reasonSystem == "" {
			reasonSystem = defaultReasonSystem
		}
		d.Reason = &priorauth.Code{System: reasonSystem, Code: reasonCode, Display: reasonDisplay}
	}
	return d, nil
}

func priorAuthQueue(ctx context.Context, c adminClient, out io.Writer) error {
	var q []priorauth.AdminRequest
	if err := c.call(ctx, http.MethodGet, "/admin/prior-auth/requests?status=pended", nil, &q); err != nil {
		return err
	}
	if len(q) == 0 {
		_, err := fmt.Fprintln(out, "no pended requests")
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tDEADLINE (UTC)\tOVERDUE\tEXPEDITED\tPROVIDER\tPATIENT\tITEMS")
	for _, r := range q {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Deadline.UTC().Format("2006-01-02 15:04"), yes(r.Overdue),
			yes(r.Expedited), r.Provider, r.Patient, itemsCell(r.Items))
	}
	return w.Flush()
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

// itemsCell is "1:33510 pended, 2:70551 approved".
func itemsCell(items []priorauth.ItemDecision) string {
	words := map[priorauth.Verdict]string{priorauth.VerdictApproved: "approved", priorauth.VerdictDenied: "denied",
		priorauth.VerdictPended: "pended", priorauth.VerdictNotRequired: "no-PA"}
	parts := make([]string, len(items))
	for i, it := range items {
		v := words[it.Verdict]
		if v == "" {
			v = string(it.Verdict)
		}
		parts[i] = fmt.Sprintf("%d:%s %s", it.Sequence, it.Product.Code, v)
	}
	return strings.Join(parts, ", ")
}

func priorAuthShow(ctx context.Context, c adminClient, id string, out io.Writer) error {
	var r json.RawMessage
	if err := c.call(ctx, http.MethodGet, "/admin/prior-auth/requests/"+url.PathEscape(id), nil, &r); err != nil {
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

func priorAuthDecide(ctx context.Context, c adminClient, id string, d priorauth.AdminDecision, out io.Writer) error {
	var r priorauth.AdminRequest
	if err := c.call(ctx, http.MethodPost, "/admin/prior-auth/requests/"+url.PathEscape(id)+"/decision", d, &r); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(out, "%s: %s by %s (version %d); items: %s\n", r.ID, r.Status, d.Reviewer, r.Version, itemsCell(r.Items)); err != nil {
		return err
	}
	if r.Warning != "" {
		_, err := fmt.Fprintf(out, "warning: %s\n", r.Warning)
		return err
	}
	return nil
}

// reportPriorAuth runs `fhirwall report prior-auth`: the CMS-0057-F public metrics of a year, read from
// the review queue's PostgreSQL and the rules file.
func reportPriorAuth(ctx context.Context, args []string, out io.Writer) (int, error) {
	fs := flag.NewFlagSet("fhirwall report prior-auth", flag.ContinueOnError)
	year := fs.Int("year", 0, "calendar year (UTC) of the requests' receipt")
	dsn := fs.String("postgres", os.Getenv(envJobsDSN), "PostgreSQL holding the requests (jobs.postgres_dsn; default $"+envJobsDSN+")")
	rulesFile := fs.String("rules", "config/prior-auth-rules.yaml", "the prior-auth rules file (prior_auth.rules_file): the list of items that need prior auth")
	format := fs.String("format", "markdown", "markdown or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	switch {
	case fs.NArg() > 0:
		return 2, fmt.Errorf("report prior-auth: unexpected argument %q", fs.Arg(0))
	case *year < 2000 || *year > 9999:
		return 2, errors.New("report prior-auth: -year YYYY is required")
	case *format != "markdown" && *format != "json":
		return 2, fmt.Errorf("report prior-auth: -format %q: want markdown or json", *format)
	case *dsn == "":
		return 2, errors.New("report prior-auth: -postgres DSN is required (jobs.postgres_dsn, or $" + envJobsDSN + ")")
	}
	rules, err := um.LoadRules(*rulesFile)
	if err != nil {
		return 2, fmt.Errorf("report prior-auth: the rules file: %v (-rules FILE names prior_auth.rules_file)", err)
	}
	var listed []priorauth.ListedItem
	for _, l := range rules.Listed() {
		listed = append(listed, priorauth.ListedItem(l))
	}
	openCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	store, err := priorauth.OpenPostgres(openCtx, *dsn)
	if err != nil {
		return 2, fmt.Errorf("report prior-auth: %v", err)
	}
	defer store.Close()
	from, to := priorauth.YearRange(*year)
	b := priorauth.NewReportBuilder(*year, listed)
	if err := store.EachReceived(ctx, from, to, func(r priorauth.Request) error { b.Add(r); return nil }); err != nil {
		return 2, fmt.Errorf("report prior-auth: %v", err)
	}
	rep := b.Report()
	if *format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return 0, enc.Encode(rep)
	}
	_, err = io.WriteString(out, rep.Markdown())
	return 0, err
}
