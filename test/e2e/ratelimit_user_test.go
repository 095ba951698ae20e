//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/smartclient"
)

// TestMembersOfOnePatientAppHaveTheirOwnBucketsAndABurstIsTold429Not503: with Patient Access's standard
// tier at 10 a second for the app and 1 a second (burst 3) for each member, member01 over its own rate is
// refused while member02 of the same app is served, in both modes; and a burst of 160 at once from member01
// (more than proxy.max_in_flight, 64, and than Envoy's authz cluster admitted before) gets 200s and 429s
// with Retry-After, never a 503.
func TestMembersOfOnePatientAppHaveTheirOwnBucketsAndABurstIsTold429Not503(t *testing.T) {
	evidence.Proves(t, "OPS-RATE-01")
	member01 := member01Token(t)
	tok, err := smartclient.AuthorizationCodePKCE(ctx(t), issuer, "patient-app", "http://127.0.0.1:8089/callback",
		[]string{"openid", "launch/patient", "patient/*.rs"}, "member02", "fhirwall-demo")
	if err != nil {
		t.Fatalf("login member02: %v", err)
	}
	member02 := tok.AccessToken
	const own, others = "/Patient/member-01", "/Patient/member-02"

	overrideConfig(t, func(doc *yaml.Node) error {
		if err := setMapping(doc, []string{"rate_limits", "per_user"}, map[string]rate{"standard": {1, 3}}); err != nil {
			return err
		}
		return setAPIRates(doc, "patient-access", map[string]rate{"standard": {10, 20}})
	}, func() error {
		for _, m := range modes {
			if err := burstAllowed(m.base+own, member01, 4); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
		}
		return nil
	})
	deadline := time.Now().Add(rateChangeBound)
	for _, m := range modes {
		if _, err := waitThrottled(m.base+own, member01, deadline); err != nil {
			t.Fatalf("%s: member01 never throttled by its own bucket: %v", m.name, err)
		}
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			// The global limit (rate_limits.global) counts one window a second for both modes together, and the
			// other mode's subtest ended with member02's request: start a new window, in which member02 has
			// asked nothing yet.
			time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
			// The other mode's subtest let member01's bucket here refill: empty it again.
			if _, err := waitThrottled(m.base+own, member01, time.Now().Add(5*time.Second)); err != nil {
				t.Fatalf("member01 over its own rate: %v", err)
			}
			if r := fetch(m.base+others, member02); r.err != nil || r.status != 200 {
				t.Fatalf("member02 of the same app, while member01 is throttled: %v %d %.200s", r.err, r.status, r.body)
			}

			time.Sleep(3 * time.Second) // member01's bucket refills to its burst: the burst gets some 200s
			answers := make([]fetched, 160)
			var wg sync.WaitGroup
			for i := range answers {
				wg.Go(func() { answers[i] = fetch(m.base+own, member01) })
			}
			wg.Wait()
			count := map[int]int{}
			for _, a := range answers {
				if a.err != nil {
					t.Fatalf("burst: %v", a.err)
				}
				count[a.status]++
				switch a.status {
				case 200:
				case 429:
					if err := a.throttledProperly(); err != nil {
						t.Fatalf("burst: %v", err)
					}
				default:
					t.Errorf("burst: %d Retry-After=%q %.200s", a.status, a.header.Get("Retry-After"), a.body)
				}
			}
			t.Logf("a burst of 160 from member01: %v", count)
			if count[429] == 0 || count[200] == 0 || count[200] > 4 {
				t.Errorf("a burst of 160 over a bucket of 3: %v, want about 3 served and the rest 429", count)
			}
			if r := fetch(m.base+others, member02); r.err != nil || r.status != 200 {
				t.Fatalf("member02 after member01's burst: %v %d %.200s", r.err, r.status, r.body)
			}
		})
	}
}

// overrideConfig edits the stack's runtime config file as overrideRates does, with edit on the YAML nodes.
func overrideConfig(t *testing.T, edit func(*yaml.Node) error, restored func() error) {
	t.Helper()
	path := runtimeConfigPath(t)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(orig, &doc); err != nil || len(doc.Content) == 0 {
		t.Fatalf("config: %v", err)
	}
	if err := edit(doc.Content[0]); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := replaceFile(path, orig); err != nil {
			t.Errorf("restore %s: %v (run `bash test/stack/fhirwall.sh reset-config`)", path, err)
			return
		}
		var err error
		for end := time.Now().Add(rateRestoreBound); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
			if err = restored(); err == nil {
				return
			}
		}
		t.Errorf("the original rate limits did not come back within %v: %v", rateRestoreBound, err)
	})
	if err := replaceFile(path, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
}

func rateNode(rates map[string]rate) *yaml.Node {
	scalar := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }
	n := &yaml.Node{Kind: yaml.MappingNode}
	for tier, r := range rates {
		n.Content = append(n.Content, scalar(tier), &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle,
			Content: []*yaml.Node{scalar("per_second"), scalar(strconv.Itoa(r.perSecond)), scalar("burst"), scalar(strconv.Itoa(r.burst))}})
	}
	return n
}

// setMapping sets the value at path (mapping keys from the root) to rates, adding the last key if absent.
func setMapping(root *yaml.Node, path []string, rates map[string]rate) error {
	m := root
	for _, k := range path[:len(path)-1] {
		if m = mappingValue(m, k); m == nil {
			return fmt.Errorf("config has no %s", k)
		}
	}
	last := path[len(path)-1]
	if v := mappingValue(m, last); v != nil {
		*v = *rateNode(rates)
		return nil
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: last}, rateNode(rates))
	return nil
}

func setAPIRates(root *yaml.Node, api string, rates map[string]rate) error {
	apis := mappingValue(root, "apis")
	if apis == nil {
		return fmt.Errorf("config has no apis")
	}
	for _, a := range apis.Content {
		if n := mappingValue(a, "name"); n != nil && n.Value == api {
			return setMapping(a, []string{"rate_limits"}, rates)
		}
	}
	return fmt.Errorf("config has no API %q", api)
}
