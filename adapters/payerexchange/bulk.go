package payerexchange

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/fhirwall/fhirwall/adapters/synthetic"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

// PDex 2.1.0 Group/$bulk-member-match: many members in one asynchronous request. The kick-off answers 202
// with a status URL bound to the client that sent it (another client gets the 404 of a job that does not
// exist); the job matches every member by the rules of $member-match, stores the Consents of the matched ones,
// and writes up to three Groups on the FHIR server (PDex pdex-member-match-group for the matched members,
// whose id the payer then exports; pdex-member-no-match-group for those not matched and for those matched
// whose Consent does not permit sharing, holding only what the payer sent). When done, the status URL answers
// the PDex multi-member-match-bundle-out Parameters with the three Groups.
//
// State lives in the job store every replica shares (Invariant 4): the job's owner, a heartbeat while it
// runs, and its result (the Groups' ids). A job whose replica died stops beating, and its status says so.

const (
	matchAlive decision.ExportKind = "match-alive"  // job id → "running", refreshed while the job runs
	matchDone  decision.ExportKind = "match-result" // job id → the result's JSON (resultRef)

	jobTTL         = 24 * time.Hour
	bulkJobsAtOnce = 2
	heartbeat      = 20 * time.Second
	heartbeatTTL   = 90 * time.Second
	jobBudget      = 30 * time.Minute
	chunkMembers   = 40 // members judged per Coverage search
	maxBulkMembers = 20000

	codeSystemResult = "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PdexMultiMemberMatchResultCS"
	extMatchParams   = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/base-ext-match-parameters"
	profileMatched   = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-member-match-group"
	profileNoMatch   = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-member-no-match-group"
	profileResult    = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-parameters-multi-member-match-bundle-out"
)

// resultRef is what a finished job leaves: the answer its status URL gives (PDex
// multi-member-match-bundle-out, with the Groups as written on the FHIR server), the matched members for the
// audit record, or why it failed. Kept whole, so a poll answers from the job store at once: reading a Group
// of 10,000 members back from the FHIR server takes longer than Envoy gives ext_proc.
type resultRef struct {
	Result   json.RawMessage `json:"result,omitempty"`
	Patients []string        `json:"patients,omitempty"`
	Error    string          `json:"error,omitempty"`
}

type bulkRunner struct {
	a *Adapter
	// running bounds the jobs this replica runs at once (bulkJobsAtOnce); more wait their turn in their
	// goroutine. Made with the runner: started lazily it was a race between two kick-offs.
	running chan struct{}
}

func newJobID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// start validates every member, binds a new job to the caller and runs it in the background.
func (b *bulkRunner) start(ctx context.Context, d *decision.Decision, payer, base string) (decision.Answer, error) {
	bundles, err := parametersOf(d.Input.Body, "MemberBundle")
	if err != nil {
		return badRequest(err.Error()), nil
	}
	if len(bundles) == 0 || len(bundles) > maxBulkMembers {
		return badRequest(fmt.Sprintf("send between 1 and %d MemberBundle parameters", maxBulkMembers)), nil
	}
	subs := make([]*submission, len(bundles))
	for i, mb := range bundles {
		s, err := parseSubmission(list(obj(mb)["part"]))
		if err != nil {
			return badRequest(fmt.Sprintf("MemberBundle %d: %v", i+1, err)), nil
		}
		subs[i] = s
	}
	id := newJobID()
	client := decision.ExportOwner(d)
	if err := b.a.jobs.Bind(ctx, decision.ExportRef{Kind: decision.MatchJob, ID: id}, client, jobTTL); err != nil {
		return decision.Answer{}, fmt.Errorf("payerexchange: bind job: %w", err)
	}
	if err := b.a.jobs.Bind(ctx, decision.ExportRef{Kind: matchAlive, ID: id}, "running", heartbeatTTL); err != nil {
		return decision.Answer{}, fmt.Errorf("payerexchange: bind job: %w", err)
	}
	go b.run(context.WithoutCancel(ctx), id, subs, payer, client, d.Sandbox())
	h := http.Header{}
	h.Set("Content-Location", base+"/$bulk-member-match-status?_jobId="+id)
	return decision.Answer{Status: http.StatusAccepted, Header: h, Outcome: "accepted:" + strconv.Itoa(len(subs))}, nil
}

// run does the job and records its result; it never panics the process.
func (b *bulkRunner) run(ctx context.Context, id string, subs []*submission, payer, client string, sandbox bool) {
	b.running <- struct{}{}
	defer func() { <-b.running }()
	ctx, cancel := context.WithTimeout(ctx, jobBudget)
	defer cancel()
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = b.a.jobs.Bind(ctx, decision.ExportRef{Kind: matchAlive, ID: id}, "running", heartbeatTTL)
			}
		}
	}()
	res, err := b.match(ctx, id, subs, payer, client, sandbox)
	close(stop)
	if err != nil {
		b.a.log.Error("bulk member match failed", "job", id, "error", err)
		res = resultRef{Error: "the job could not be completed; submit it again"}
	}
	raw, _ := json.Marshal(res)
	if err := b.a.jobs.Bind(context.WithoutCancel(ctx), decision.ExportRef{Kind: matchDone, ID: id}, string(raw), jobTTL); err != nil {
		b.a.log.Error("bulk member match result lost", "job", id, "error", err)
	}
}

// match judges every member and writes the Groups; a sandbox job (sandbox.go) matches synthetic members only
// and tags everything it writes and answers.
func (b *bulkRunner) match(ctx context.Context, id string, subs []*submission, payer, client string, sandbox bool) (resultRef, error) {
	a := b.a
	now := a.now()
	var matched, noMatch, constrained []member
	for start := 0; start < len(subs); start += chunkMembers {
		chunk := subs[start:min(start+chunkMembers, len(subs))]
		var ids []string
		for _, s := range chunk {
			ids = append(ids, s.ids...)
		}
		var c *candidates
		err := retry(ctx, func() (err error) {
			c, err = a.lookup(ctx, ids, sandbox)
			return err
		})
		if err != nil {
			return resultRef{}, err
		}
		var consents []any
		for i, s := range chunk {
			res, err := a.judge(ctx, s, c, payer, now)
			if err != nil {
				return resultRef{}, err
			}
			m := member{n: start + i + 1, sub: s}
			switch res.kind {
			case "matched":
				m.patient = str(res.patient["id"])
				matched = append(matched, m)
				stored, err := consentToStore(s.consent, m.patient, payer, client, sandbox)
				if err != nil {
					return resultRef{}, err
				}
				consents = append(consents, object{"resource": stored, "request": object{"method": "POST", "url": "Consent"}})
			case "consent_refused":
				constrained = append(constrained, m)
			default:
				noMatch = append(noMatch, m)
			}
		}
		if err := retry(ctx, func() error { return a.transaction(ctx, consents) }); err != nil {
			return resultRef{}, err
		}
	}
	var params []any
	var patients []string
	for _, g := range []struct {
		param, code, display, profile string
		members                       []member
		matched                       bool
	}{
		{"ResourceIdentifier", "match", "Matched", profileMatched, matched, true},
		{"NoMatch", "nomatch", "Not Matched", profileNoMatch, noMatch, false},
		{"ConsentConstraint", "consentconstraint", "Consent Constraint", profileNoMatch, constrained, false},
	} {
		if len(g.members) == 0 {
			continue
		}
		group := matchGroup(id, g.code, g.display, g.profile, payer, g.members, g.matched, sandbox)
		gid, err := a.createGroup(ctx, group)
		if err != nil {
			return resultRef{}, err
		}
		group["id"] = gid
		if g.matched {
			if err := a.jobs.Bind(ctx, decision.ExportRef{Kind: decision.MatchGroup, ID: gid}, client, jobTTL); err != nil {
				return resultRef{}, err
			}
			for _, m := range g.members {
				patients = append(patients, m.patient)
			}
		}
		params = append(params, object{"name": g.param, "resource": group})
	}
	result := object{"resourceType": "Parameters", "meta": object{"profile": []any{profileResult}}, "parameter": params}
	if sandbox {
		synthetic.Tag(result)
	}
	out, err := json.Marshal(result)
	if err != nil {
		return resultRef{}, err
	}
	return resultRef{Result: out, Patients: patients}, nil
}

// retry runs one step of a job again while the FHIR server is briefly unavailable (a failed exchange, an open
// breaker), for about half a minute: a job of thousands of members is not lost to one bad moment. A
// transaction that failed wrote nothing (FHIR transactions are all or nothing), so running it again is safe.
func retry(ctx context.Context, step func() error) error {
	var err error
	for attempt := range retryAttempts {
		if err = step(); err == nil {
			return nil
		}
		if attempt == retryAttempts-1 {
			break
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(retryWait):
		}
	}
	return err
}

const (
	retryAttempts = 6
	retryWait     = 6 * time.Second // longer than a breaker stays open (fhirserver: 10 s over two waits)
)

// member is one submitted member and, when matched, the Patient it matched.
type member struct {
	n       int
	sub     *submission
	patient string
}

// matchGroup builds a PDex result Group. Each member is the Patient the payer sent, contained (id "m<n>");
// a matched member's entity is this server's Patient, with the base-ext-match-parameters extension pointing
// at what was sent; a member not matched or not shared is only what was sent, so the Group reveals nothing
// the payer did not already have. A sandbox Group and what it contains carry the sandbox tag.
func matchGroup(job, code, display, profile, payer string, members []member, matched, sandbox bool) object {
	contained := make([]any, 0, len(members))
	entries := make([]any, 0, len(members))
	for _, m := range members {
		cid := "m" + strconv.Itoa(m.n)
		p, _ := deepCopy(m.sub.patient)
		p["id"] = cid
		delete(p, "meta")
		delete(p, "text")
		if sandbox {
			synthetic.Tag(p)
		}
		contained = append(contained, p)
		entity := object{"extension": []any{object{"url": extMatchParams, "valueReference": object{"reference": "#" + cid}}}}
		if matched {
			entity["reference"] = "Patient/" + m.patient
		} else {
			entity["reference"] = "#" + cid
			delete(entity, "extension")
		}
		entries = append(entries, object{"entity": entity})
	}
	g := object{
		"resourceType":   "Group",
		"meta":           object{"profile": []any{profile}},
		"contained":      contained,
		"identifier":     []any{object{"system": "https://fhirwall.dev/bulk-member-match", "value": job + "-" + code}},
		"type":           "person",
		"actual":         true,
		"code":           object{"coding": []any{object{"system": codeSystemResult, "code": code, "display": display}}},
		"managingEntity": object{"reference": payer},
		"quantity":       len(members),
		"member":         entries,
	}
	if sandbox {
		synthetic.Tag(g)
	}
	return g
}

// createGroup writes a Group on the FHIR server and returns its id.
func (a *Adapter) createGroup(ctx context.Context, g object) (string, error) {
	body, err := json.Marshal(g)
	if err != nil {
		return "", err
	}
	r, err := a.jobFHIR.Do(ctx, "POST", "Group", nil, nil, body)
	if err != nil {
		return "", fmt.Errorf("payerexchange: create group: %w", err)
	}
	var created object
	if r.Status != 201 || json.Unmarshal(r.Body, &created) != nil || str(created["id"]) == "" {
		return "", fmt.Errorf("payerexchange: create group: the FHIR server answered %d: %.300s", r.Status, r.Body)
	}
	return str(created["id"]), nil
}

// transaction writes entries in one FHIR transaction (all or nothing).
func (a *Adapter) transaction(ctx context.Context, entries []any) error {
	if len(entries) == 0 {
		return nil
	}
	body, err := json.Marshal(object{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	if err != nil {
		return err
	}
	r, err := a.jobFHIR.Do(ctx, "POST", "", nil, nil, body)
	if err != nil {
		return fmt.Errorf("payerexchange: store consents: %w", err)
	}
	if r.Status != 200 {
		return fmt.Errorf("payerexchange: store consents: the FHIR server answered %d: %.300s", r.Status, r.Body)
	}
	return nil
}

// status answers a poll of the status URL: 202 while the job runs, the result when done.
func (b *bulkRunner) status(ctx context.Context, d *decision.Decision) (decision.Answer, error) {
	id := d.Request.Query.Get("_jobId")
	raw, done, err := b.a.jobs.Owner(ctx, decision.ExportRef{Kind: matchDone, ID: id})
	if err != nil {
		return decision.Answer{}, err
	}
	if !done {
		_, alive, err := b.a.jobs.Owner(ctx, decision.ExportRef{Kind: matchAlive, ID: id})
		if err != nil {
			return decision.Answer{}, err
		}
		if !alive {
			return decision.RefusalAnswer(outcome.Internal.WithDiagnostics("the bulk member match job stopped before it finished; submit it again"), "job_lost"), nil
		}
		h := http.Header{}
		h.Set("X-Progress", "matching")
		h.Set("Retry-After", "2")
		return decision.Answer{Status: http.StatusAccepted, Header: h, Outcome: "in_progress"}, nil
	}
	var res resultRef
	if err := json.Unmarshal([]byte(raw), &res); err != nil {
		return decision.Answer{}, fmt.Errorf("payerexchange: job result: %w", err)
	}
	if res.Error != "" || len(res.Result) == 0 {
		return decision.RefusalAnswer(outcome.Internal.WithDiagnostics(cmp.Or(res.Error, "the job left no result; submit it again")), "job_failed"), nil
	}
	h := http.Header{}
	h.Set("Content-Type", "application/fhir+json;charset=utf-8")
	return decision.Answer{Status: http.StatusOK, Header: h, Body: res.Result, Patients: res.Patients,
		Outcome: fmt.Sprintf("done:matched=%d", len(res.Patients))}, nil
}
