// Command fhirwall is the operator's tool for the audit trail, the prior-authorization review queue, the app
// registry and the CMS reports:
//
//	fhirwall audit keygen -out FILE
//	fhirwall audit verify (-spool DIR | -kafka BROKERS) -key FILE [-head FILE]
//	fhirwall audit query  (-spool DIR | -kafka BROKERS | -file FILE) [-kind access|admin] [-patient ID] [-client ID] [-api NAME] [-since T] [-until T]
//	fhirwall audit export -format auditevent (source) (filters) [-observer NAME]
//	fhirwall audit report cms-patient-access -year YYYY (source) [-api NAME] [-repeat day|request] [-json]
//	fhirwall prior-auth queue  [-admin URL] [-token-file FILE]
//	fhirwall prior-auth show   -id ID [-admin URL] [-token-file FILE]
//	fhirwall prior-auth decide -id ID -verdict approved|denied -reviewer NAME [-reason-code C [-reason-system S] [-reason-display D]] [-extended] [-after-appeal]
//	fhirwall report prior-auth -year YYYY [-postgres DSN] [-rules FILE] [-format markdown|json]
//	fhirwall apps list|show -id ID|history -id ID [-admin URL] [-token-file FILE]
//	fhirwall apps register -file app.json -reviewer NAME [-reason R]
//	fhirwall apps approve -id ID -reviewer NAME [-reason R] [-apis A,B] [-scopes S,T]
//	fhirwall apps activate|suspend|reactivate|deactivate -id ID -reviewer NAME [-reason R]   (suspend, deactivate: -reason required)
//	fhirwall apps import -clients config/clients.yaml -postgres DSN -spool DIR -key FILE
//	fhirwall policy replay -candidate DIR [-baseline DIR] [-config FILE] (-kafka BROKERS [-topic T] | -spool DIR | -file FILE) [-api A] [-client C] [-since T] [-until T] [-examples N] [-json]
//	fhirwall selftest --against URL -config selftest.yaml -key AUDIT_KEY -out DIR [-ca FILE] [-only IDS] [-audit-kafka BROKERS] [-rate-limit-burst N]
//	fhirwall evidence verify -key FILE.pub[,…] matrix.signed.json
//
// The prior-auth commands are clients of fhirwall-proxy's review admin API (default http://127.0.0.1:9190,
// the token from $FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE); the prior-auth report reads PostgreSQL directly
// (default $FHIRWALL_JOBS_POSTGRES_DSN). The apps commands but import are clients of the app registry's admin
// API (the token from $FHIRWALL_ADMIN_TOKEN_FILE); import writes PostgreSQL directly and audits into a spool.
//
// policy replay evaluates a candidate policy set on the policy inputs the access records hold and reports
// every decision it would change (docs/policy-replay.md). selftest runs internal/selftest's checks against a
// live deployment with the payer's test clients and writes the compliance matrix, signed with the audit key
// (docs/selftest.md); evidence verify checks such a matrix.
//
// Exit status: 0 done (verify: intact; policy replay: no decision changes; selftest: every check passed or
// skipped), 1 verify found a break or refused the matrix, the admin API refused (not found, already decided),
// policy replay found changes or a selftest check failed, 2 bad usage or an unreadable source.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/adapters/auditsink/kafka"
	"github.com/fhirwall/fhirwall/internal/audit"
)

const usage = `usage: fhirwall audit <keygen|verify|query|export|report> | prior-auth <queue|show|decide> | apps <list|show|register|approve|activate|suspend|reactivate|deactivate|history|import> | report prior-auth | policy replay | selftest --against URL | evidence verify [flags]   (-h after the command for its flags)`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	code, err := run(ctx, os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fhirwall:", err)
	}
	os.Exit(code)
}

// errUsage marks an error that is the caller's to fix (exit status 2).
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, out io.Writer) (int, error) {
	switch {
	case len(args) > 0 && args[0] == "prior-auth":
		return priorAuth(ctx, args[1:], out)
	case len(args) > 0 && args[0] == "apps":
		return appsCmd(ctx, args[1:], out)
	case len(args) > 0 && args[0] == "policy":
		return policyCmd(ctx, args[1:], out)
	case len(args) > 1 && args[0] == "report" && args[1] == "prior-auth":
		return reportPriorAuth(ctx, args[2:], out)
	case len(args) > 0 && args[0] == "selftest":
		return selftestCmd(ctx, args[1:], out)
	case len(args) > 0 && args[0] == "evidence":
		return evidenceCmd(args[1:], out)
	case len(args) > 0 && args[0] == "report":
		return 2, errors.New("report: the one report here is prior-auth: fhirwall report prior-auth -year YYYY (the Patient Access report is fhirwall audit report cms-patient-access)")
	}
	if len(args) < 2 || args[0] != "audit" {
		return 2, errors.New(usage)
	}
	cmd, args := args[1], args[2:]
	fs := flag.NewFlagSet("fhirwall audit "+cmd, flag.ContinueOnError)
	src := sourceFlags(fs)
	var err error
	switch cmd {
	case "keygen":
		outFile := fs.String("out", "", "where to write the private key (FILE.pub gets the public key)")
		if err = fs.Parse(args); err == nil {
			if *outFile == "" {
				return 2, errors.New("keygen: -out FILE is required")
			}
			err = audit.GenerateKey(*outFile)
			if err == nil {
				fmt.Fprintf(out, "wrote %s (private, keep it for fhirwall-proxy: audit.signing_key_file) and %s.pub (for verify)\n", *outFile, *outFile)
			}
		}
	case "verify":
		key := fs.String("key", "", "the signing key's public half (FILE.pub) or the private key file; after a key rotation, the older .pub files too, comma-separated")
		head := fs.String("head", "", "signed heads (each replica spool's head.json), comma-separated, to check the end of their chains in a topic against")
		if err = fs.Parse(args); err == nil {
			return verify(ctx, src, *key, *head, out)
		}
	case "query", "export":
		f := filterFlags(fs)
		format := fs.String("format", "", "export format: auditevent (FHIR R4 AuditEvent, IHE BALP), one per line")
		observer := fs.String("observer", hostname(), "export: the fhirwall instance named as the events' observer")
		if err = fs.Parse(args); err == nil {
			err = query(ctx, src, f, cmd, *format, *observer, out)
		}
	case "report":
		year := fs.Int("year", 0, "calendar year (UTC)")
		api := fs.String("api", audit.DefaultPatientAccessAPI, "the Patient Access API's name (config apis[].name)")
		repeat := fs.String("repeat", audit.RepeatDay, "what counts as \"more than once\": day (transfers on 2+ UTC days) or request")
		asJSON := fs.Bool("json", false, "print JSON")
		if len(args) == 0 || args[0] != "cms-patient-access" {
			return 2, errors.New("report: the one report is cms-patient-access: fhirwall audit report cms-patient-access -year YYYY -kafka BROKERS")
		}
		if err = fs.Parse(args[1:]); err == nil {
			err = report(ctx, src, audit.CMSOptions{Year: *year, API: *api, RepeatUnit: *repeat}, *asJSON, out)
		}
	default:
		return 2, errors.New(usage)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	return 0, nil
}

func hostname() string {
	h, _ := os.Hostname()
	if h == "" {
		return "fhirwall"
	}
	return h
}

type source struct {
	spool, kafka, topic, file *string
}

func sourceFlags(fs *flag.FlagSet) source {
	return source{
		spool: fs.String("spool", "", "a spool directory (audit.spool.dir): entries not yet shipped and trimmed"),
		kafka: fs.String("kafka", "", "Kafka brokers, comma-separated: the whole topic"),
		topic: fs.String("topic", "fhirwall.audit", "the audit topic"),
		file:  fs.String("file", "", "a JSON-lines file of entries (an extract)"),
	}
}

func (s source) check(allowFile bool) error {
	n := 0
	for _, v := range []string{*s.spool, *s.kafka, *s.file} {
		if v != "" {
			n++
		}
	}
	if n != 1 || (!allowFile && *s.file != "") {
		if allowFile {
			return errors.New("name one source: -spool DIR, -kafka HOST:PORT or -file FILE")
		}
		return errors.New("name one source: -spool DIR or -kafka HOST:PORT")
	}
	return nil
}

// each calls fn with every raw entry of the source.
func (s source) each(ctx context.Context, fn func(raw []byte) error) error {
	switch {
	case *s.spool != "":
		return audit.ReadSpool(*s.spool, func(raw []byte, _ string) error { return fn(raw) })
	case *s.file != "":
		return audit.ReadFile(*s.file, func(raw []byte, _ string) error { return fn(raw) })
	}
	return kafka.ReadTopic(ctx, strings.Split(*s.kafka, ","), *s.topic, func(m audit.Message) error { return fn(m.Value) })
}

func verify(ctx context.Context, src source, keyFile, headFile string, out io.Writer) (int, error) {
	if err := src.check(false); err != nil {
		return 2, err
	}
	if keyFile == "" {
		return 2, errors.New("verify: -key FILE is required (the signing key's .pub, from `fhirwall audit keygen`)")
	}
	var keys audit.Keys
	for _, f := range strings.Split(keyFile, ",") {
		k, err := audit.LoadVerifyKey(f)
		if err != nil {
			return 2, err
		}
		keys = append(keys, k)
	}
	var reports []audit.Report
	if *src.spool != "" {
		r, err := audit.VerifySpool(*src.spool, keys)
		if err != nil {
			return 2, err
		}
		reports = []audit.Report{r}
	} else {
		var heads []*audit.Head // one per replica's spool, comma-separated
		if headFile != "" {
			for _, f := range strings.Split(headFile, ",") {
				h, err := audit.ReadHead(f)
				if err != nil {
					return 2, err
				}
				heads = append(heads, h)
			}
		}
		var msgs []audit.Message
		err := kafka.ReadTopic(ctx, strings.Split(*src.kafka, ","), *src.topic, func(m audit.Message) error {
			msgs = append(msgs, m)
			return nil
		})
		if err != nil {
			return 2, err
		}
		if len(msgs) == 0 {
			return 2, fmt.Errorf("topic %s is empty", *src.topic)
		}
		reports = audit.VerifyChains(msgs, keys, heads...)
	}
	code, broken := 0, 0
	for _, r := range reports {
		fmt.Fprintln(out, r.String())
		if r.Break != nil {
			code = 1
			broken++
		}
	}
	if len(reports) > 1 { // a topic with one chain per replica: say it of all of them
		if broken == 0 {
			fmt.Fprintf(out, "OK: %d chains, each whole from its first to its last entry\n", len(reports))
		} else {
			fmt.Fprintf(out, "BROKEN: %d of %d chains\n", broken, len(reports))
		}
	}
	return code, nil
}

type filter struct {
	kind, patient, client, api, since, until *string
}

func filterFlags(fs *flag.FlagSet) filter {
	return filter{
		kind:    fs.String("kind", audit.KindAccess, "which entries: access (requests) or admin (changes to apps: who, what, before, after; -client selects one app)"),
		patient: fs.String("patient", "", "only records whose patients include this id"),
		client:  fs.String("client", "", "only records of this client_id"),
		api:     fs.String("api", "", "only records of this API"),
		since:   fs.String("since", "", "from this time on (RFC 3339 or YYYY-MM-DD, UTC)"),
		until:   fs.String("until", "", "before this time (RFC 3339 or YYYY-MM-DD, UTC)"),
	}
}

func (f filter) build() (audit.Filter, error) {
	af := audit.Filter{Kind: *f.kind, Patient: *f.patient, Client: *f.client, API: *f.api}
	if af.Kind != audit.KindAccess && af.Kind != audit.KindAdmin {
		return af, fmt.Errorf("-kind %q: want access or admin", af.Kind)
	}
	if af.Kind == audit.KindAdmin && (af.Patient != "" || af.API != "") {
		return af, errors.New("-kind admin: an admin entry concerns an app, not a patient or an API; select with -client and -since/-until")
	}
	for _, t := range []struct {
		in  string
		out *time.Time
	}{{*f.since, &af.Since}, {*f.until, &af.Until}} {
		if t.in == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, t.in)
		if err != nil {
			if v, err = time.Parse(time.DateOnly, t.in); err != nil {
				return af, fmt.Errorf("time %q: want RFC 3339 (2027-01-31T12:00:00Z) or YYYY-MM-DD", t.in)
			}
		}
		*t.out = v.UTC()
	}
	return af, nil
}

// query prints the matching records (access records, or admin entries with -kind admin) once each (a retry's
// duplicates dropped by id), as JSON lines as written or, access records only, as AuditEvents.
func query(ctx context.Context, src source, f filter, cmd, format, observer string, out io.Writer) error {
	if err := src.check(true); err != nil {
		return err
	}
	af, err := f.build()
	if err != nil {
		return err
	}
	if cmd == "export" && format != "auditevent" {
		return errors.New("export: -format auditevent is the one format (FHIR R4 AuditEvent following IHE BALP)")
	}
	if cmd == "export" && af.Kind != audit.KindAccess {
		return errors.New("export: AuditEvents are rendered for access records only; list admin entries with fhirwall audit query -kind admin")
	}
	w := bufio.NewWriter(out)
	defer w.Flush()
	seen := map[string]bool{}
	return src.each(ctx, func(raw []byte) error {
		var r audit.Record
		if err := json.Unmarshal(raw, &r); err != nil || r.Kind != af.Kind || seen[r.ID] || !af.Match(r) {
			return nil
		}
		seen[r.ID] = true
		line := raw
		if cmd == "export" {
			if line, err = audit.AuditEvent(r, audit.AuditEventOptions{Observer: observer}); err != nil {
				return fmt.Errorf("record %s: %w", r.ID, err)
			}
		}
		w.Write(line)
		return w.WriteByte('\n')
	})
}

func report(ctx context.Context, src source, o audit.CMSOptions, asJSON bool, out io.Writer) error {
	if err := src.check(true); err != nil {
		return err
	}
	if o.Year < 2000 {
		return errors.New("report: -year YYYY is required")
	}
	acc, err := audit.NewCMSReport(o)
	if err != nil {
		return err
	}
	if err := src.each(ctx, func(raw []byte) error {
		var r audit.Record
		if json.Unmarshal(raw, &r) == nil && r.Kind == audit.KindAccess {
			acc.Add(r)
		}
		return nil
	}); err != nil {
		return err
	}
	res := acc.Result()
	if asJSON {
		return json.NewEncoder(out).Encode(res)
	}
	_, err = io.WriteString(out, res.Text())
	return err
}
