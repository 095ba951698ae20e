package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/policy/replay"
)

// policyCmd is `fhirwall policy replay`: a candidate policy set evaluated on the recorded decisions' inputs
// (docs/policy-replay.md). Exit 0: no decision would change; 1: some would; 2: bad usage, an unreadable source
// or a candidate that does not compile.
func policyCmd(ctx context.Context, args []string, out io.Writer) (int, error) {
	if len(args) == 0 || args[0] != "replay" {
		return 2, errors.New("policy: the one command is replay: fhirwall policy replay -candidate DIR (-kafka BROKERS | -spool DIR | -file FILE)")
	}
	fs := flag.NewFlagSet("fhirwall policy replay", flag.ContinueOnError)
	src := sourceFlags(fs)
	candidate := fs.String("candidate", "", "the candidate policy set: a directory of .rego files (default: the config's policies.dry_run_dir)")
	baseline := fs.String("baseline", "", "compare with this policy set evaluated on the same inputs, rather than with the recorded verdicts")
	cfgPath := fs.String("config", envOr("FHIRWALL_CONFIG", "config/fhirwall.yaml"), "the fhirwall.yaml whose APIs the policies see as data.config (as fhirwall-proxy gives them)")
	client := fs.String("client", "", "only decisions of this client_id")
	api := fs.String("api", "", "only decisions of this API")
	since := fs.String("since", "", "from this time on (RFC 3339 or YYYY-MM-DD, UTC)")
	until := fs.String("until", "", "before this time (RFC 3339 or YYYY-MM-DD, UTC)")
	examples := fs.Int("examples", 5, "decision ids listed per group of changes")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, fmt.Errorf("policy replay: unexpected argument %q", fs.Arg(0))
	}
	if err := src.check(true); err != nil {
		return 2, err
	}
	if *examples < 0 {
		return 2, errors.New("policy replay: -examples must be 0 or more")
	}
	kind, patient := audit.KindAccess, ""
	filt, err := filter{kind: &kind, patient: &patient, client: client, api: api, since: since, until: until}.build()
	if err != nil {
		return 2, err
	}
	cfg, err := config.LoadFor(*cfgPath, config.ForXDS)
	if err != nil {
		return 2, fmt.Errorf("policy replay: -config %s: %s", *cfgPath, oneLine(err.Error()))
	}
	if *candidate == "" {
		*candidate = cfg.Policies.DryRunDir
	}
	if *candidate == "" {
		return 2, fmt.Errorf("policy replay: name the candidate policy set: -candidate DIR (or policies.dry_run_dir in %s)", *cfgPath)
	}
	o := replay.Options{Filter: filt, Examples: *examples}
	if o.Candidate, err = loadPolicySet(ctx, "-candidate", *candidate, cfg.PolicyData()); err != nil {
		return 2, err
	}
	if *baseline != "" {
		if o.Baseline, err = loadPolicySet(ctx, "-baseline", *baseline, cfg.PolicyData()); err != nil {
			return 2, err
		}
	}
	rep, err := replay.Run(ctx, src.each, o)
	if err != nil {
		return 2, fmt.Errorf("policy replay: reading the records: %w", err)
	}
	if *asJSON {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return 2, err
		}
		_, err = out.Write(append(b, '\n'))
		if err != nil {
			return 2, err
		}
	} else if err := rep.WriteText(out); err != nil {
		return 2, err
	}
	if rep.Changed > 0 {
		return 1, nil
	}
	return 0, nil
}

// loadPolicySet compiles the .rego files of dir (tests skipped) with the config's data; an error is one line
// that names the flag, the directory and, for a compile error, the file and line OPA reports.
func loadPolicySet(ctx context.Context, flagName, dir string, data map[string]any) (*policy.Engine, error) {
	fsys := os.DirFS(dir)
	names, err := fs.Glob(fsys, "*.rego")
	if err != nil || len(names) == 0 {
		if _, serr := os.Stat(dir); serr != nil {
			return nil, fmt.Errorf("policy replay: %s %s: %s", flagName, dir, oneLine(serr.Error()))
		}
		return nil, fmt.Errorf("policy replay: %s %s: no .rego files in it", flagName, dir)
	}
	e, err := policy.New(ctx, fsys, data)
	if err != nil {
		return nil, fmt.Errorf("policy replay: %s %s: %s", flagName, dir, oneLine(err.Error()))
	}
	return e, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
