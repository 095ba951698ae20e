package apps

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/fhirwall/fhirwall/internal/audit"
)

// fakeSink keeps what it is given; err, when set, is returned instead.
type fakeSink struct {
	got []audit.Record
	err error
}

func (f *fakeSink) Write(_ context.Context, r audit.Record) error {
	if f.err != nil {
		return f.err
	}
	f.got = append(f.got, r)
	return nil
}

func suspension() Event {
	before := validPatientApp()
	before.State, before.Version = StateActive, 4
	after := before
	after.State, after.Version = StateSuspended, 5
	return Event{ID: "MZXW6YTBOI3DEMBSGA2TIMZQGE", Time: time.Date(2027, 2, 3, 4, 5, 6, 7, time.FixedZone("CET", 3600)),
		Actor: "admin:alice", Action: "suspend", ClientID: "my-app", Reason: "callback host changed hands",
		Before: &before, After: &after}
}

func TestAuditorWritesTheEventAsAnAdminEntry(t *testing.T) {
	sink := &fakeSink{}
	ev := suspension()
	if err := NewAuditor(sink)(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if len(sink.got) != 1 {
		t.Fatalf("%d records written, want 1", len(sink.got))
	}
	r := sink.got[0]
	if r.Kind != audit.KindAdmin || r.Schema != audit.SchemaVersion || r.ID != ev.ID || !r.Time.Equal(ev.Time) ||
		r.Time.Location() != time.UTC || r.Actor != ev.Actor || r.Action != ev.Action || r.Target != "my-app" || r.Reason != ev.Reason {
		t.Errorf("record %+v does not carry the event %+v", r, ev)
	}
	if r.ClientID != "" || r.API != "" || len(r.Patients) != 0 {
		t.Errorf("admin record has access members set: %+v", r)
	}
	for name, raw := range map[string]json.RawMessage{"before": r.Before, "after": r.After} {
		var a App
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := ev.Before
		if name == "after" {
			want = ev.After
		}
		if a.ClientID != want.ClientID || a.State != want.State || a.Version != want.Version {
			t.Errorf("%s = %s, want the app %s at version %d", name, raw, want.State, want.Version)
		}
	}
}

func TestRegistrationIsAuditedWithBeforeNull(t *testing.T) {
	sink := &fakeSink{}
	ev := suspension()
	ev.Action, ev.Before = "register", nil
	if err := NewAuditor(sink)(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(sink.got[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"before":null`)) {
		t.Errorf("registration entry %s, want before null", b)
	}
}

func TestAuditEntryNeverHoldsASecret(t *testing.T) {
	ev := suspension()
	a := *ev.After
	a.TokenAuthMethod, a.LaunchTypes, a.RedirectURIs = AuthPrivateKeyJWT, []string{"backend"}, nil
	// Whatever reached the App (policy refuses private keys): an RSA private key, a symmetric key, a secret.
	a.JWKS = json.RawMessage(`{"keys":[` +
		`{"kty":"RSA","kid":"rsa-1","n":"PUBLIC-N","e":"AQAB","d":"PRIV-D","p":"PRIV-P","q":"PRIV-Q","dp":"PRIV-DP","dq":"PRIV-DQ","qi":"PRIV-QI","oth":[{"r":"PRIV-R"}]},` +
		`{"kty":"oct","kid":"hmac","k":"PRIV-K"},` + publicJWK + `],` +
		`"client_secret":"PRIV-SECRET","registration_access_token":"PRIV-RAT","Password":"PRIV-PW"}`)
	ev.After = &a
	sink := &fakeSink{}
	if err := NewAuditor(sink)(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	got := string(sink.got[0].After)
	if strings.Contains(got, "PRIV-") {
		t.Errorf("the audit entry holds secret material: %s", got)
	}
	for _, keep := range []string{`"kid":"rsa-1"`, `"n":"PUBLIC-N"`, `"e":"AQAB"`, `"kid":"hmac"`, `"crv":"P-256"`, `"token_endpoint_auth_method":"private_key_jwt"`, `"version":5`} {
		if !strings.Contains(got, keep) {
			t.Errorf("redaction removed %s, which is not secret: %s", keep, got)
		}
	}
}

func TestAuditorFailsClosed(t *testing.T) {
	ev := suspension()
	full := errors.New("spool full")
	noAfter := ev
	noAfter.After = nil
	badJWKS := ev
	a := *ev.After
	a.JWKS = json.RawMessage(`{"keys":`)
	badJWKS.After = &a
	cases := []struct {
		name string
		sink AuditSink
		ev   Event
		want error
	}{
		{"no sink", nil, ev, ErrNoAuditSink},
		{"the sink refuses", &fakeSink{err: full}, ev, full},
		{"no app after the change", &fakeSink{}, noAfter, audit.ErrIncomplete},
		{"an app that is not JSON", &fakeSink{}, badJWKS, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := NewAuditor(c.sink)(context.Background(), c.ev)
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if f, ok := c.sink.(*fakeSink); ok && len(f.got) > 0 {
				t.Errorf("written despite the error: %+v", f.got)
			}
		})
	}
}

func TestEventWithoutIDOrTimeGetsThem(t *testing.T) {
	ev := suspension()
	ev.ID, ev.Time = "", time.Time{}
	r, err := AuditRecord(ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ID) != 32 || r.Time.IsZero() || time.Since(r.Time) > time.Minute {
		t.Errorf("id %q time %v, want a new id and now", r.ID, r.Time)
	}
}

// TestAuditedEventsAreSealedVerifiedAndMatchTheSchema runs the Auditor against a real spool: a registration
// and a suspension join the chain, the chain verifies, and each line is a valid admin entry of the schema.
func TestAuditedEventsAreSealedVerifiedAndMatchTheSchema(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spool, err := audit.Open(dir, audit.Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	auditor := NewAuditor(spool)
	reg := suspension()
	reg.ID, reg.Action, reg.Before = rand.Text(), "register", nil // ids as the PostgreSQL store makes them
	for _, ev := range []Event{reg, suspension()} {
		if err := auditor(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := spool.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.VerifySpool(dir, audit.Keys{pub})
	if err != nil || rep.Break != nil || rep.Admin != 2 {
		t.Fatalf("verify: %v %s", err, rep)
	}
	schema := compileAuditSchema(t)
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	f, err := os.Open(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	admin := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(sc.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if err := schema.Validate(v); err != nil {
			t.Errorf("%s: %v", sc.Bytes(), err)
		}
		if e, _ := audit.ParseLine(sc.Bytes()); e.Kind == audit.KindAdmin {
			admin++
		}
	}
	if admin != 2 {
		t.Errorf("%d admin entries in the spool, want 2", admin)
	}
}

func compileAuditSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("../../../docs/audit/record.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("record.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("record.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}
