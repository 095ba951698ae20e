// Command bulkmatch measures Payer-to-Payer's $bulk-member-match through the real stack: one request of
// -members members (10,000) from payer-b, from the kick-off to the status URL's result, through each face,
// with fhirwall-proxy's resident memory sampled while the job runs.
//
//	make stack-up && go run ./test/bench/bulkmatch -members 10000
//
// It loads -members Patients and Coverages (bulkmatch-NNNNN, tagged, PUT by id so a rerun adds nothing) into
// the stack's HAPI, sends one request per face, and afterwards deletes what the runs wrote (the Consents of the
// matched members, the result Groups), so the stack's other suites see payer-b's opt-ins as before.
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
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/test/membermatch"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

const (
	tagSystem = "https://fhirwall.example/bench"
	tagCode   = "bulk-match"
	idSystem  = "https://payer-a.example.org/member-id"
	// The tag payerexchange puts on the Consents it stores, with the client that sent them.
	consentTag = "https://fhirwall.dev/CodeSystem/payer-to-payer-consent-from|payer-b"
)

func main() {
	members := flag.Int("members", 10_000, "members in the one $bulk-member-match request")
	only := flag.String("mode", "", "envoy or standalone; empty: both")
	flag.Parse()
	if err := run(*members, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bulkmatch:", err)
		os.Exit(1)
	}
}

func run(n int, only string) error {
	ctx := context.Background()
	client, err := stackenv.Client(10 * time.Minute)
	if err != nil {
		return err
	}
	if err := load(client, n); err != nil {
		return err
	}
	body := request(n)
	fmt.Printf("request: %d members, %.1f MiB\n", n, float64(len(body))/(1<<20))
	tok, err := stackauth.Backend(ctx, "payer-b", "system/*.rs")
	if err != nil {
		return err
	}
	fmt.Println("| face | kick-off | until the result | matched | result size | fhirwall-proxy RSS before → peak |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, m := range []struct{ name, base string }{
		{"envoy", stackenv.EnvoyURL() + "/payer-to-payer/fhir"},
		{"standalone", stackenv.StandaloneURL + "/payer-to-payer/fhir"},
	} {
		if only != "" && only != m.name {
			continue
		}
		err := measure(client, m.name, m.base, tok.AccessToken, body, n)
		if cerr := cleanup(client); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// load PUTs the members and their Coverages into HAPI, 500 a transaction, unless they are there already.
func load(c *http.Client, n int) error {
	var count struct {
		Total int `json:"total"`
	}
	if err := getJSON(c, stackenv.HAPIURL+"/Coverage?_tag="+tagSystem+"|"+tagCode+"&_summary=count", &count); err != nil {
		return err
	}
	if count.Total >= n {
		fmt.Printf("HAPI holds %d bench members already\n", count.Total)
		return nil
	}
	tag := []any{map[string]any{"system": tagSystem, "code": tagCode}}
	start := time.Now()
	for from := 0; from < n; from += 500 {
		var entries []any
		for i := from; i < min(from+500, n); i++ {
			id, number := fmt.Sprintf("bulkmatch-%05d", i), fmt.Sprintf("BM-%05d", i)
			entries = append(entries,
				map[string]any{"request": map[string]any{"method": "PUT", "url": "Patient/" + id}, "resource": map[string]any{
					"resourceType": "Patient", "id": id, "meta": map[string]any{"tag": tag},
					"name":      []any{map[string]any{"family": "Benchmark", "given": []any{"Member" + strconv.Itoa(i)}}},
					"birthDate": "1970-01-01", "gender": "female",
					"identifier": []any{map[string]any{"type": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MB"}}}, "system": idSystem, "value": number}},
				}},
				map[string]any{"request": map[string]any{"method": "PUT", "url": "Coverage/" + id}, "resource": map[string]any{
					"resourceType": "Coverage", "id": id, "meta": map[string]any{"tag": tag}, "status": "active",
					"beneficiary": map[string]any{"reference": "Patient/" + id}, "subscriberId": number,
					"identifier": []any{map[string]any{"system": idSystem, "value": number}},
					"payor":      []any{map[string]any{"reference": "Organization/payer-a"}},
					"period":     map[string]any{"start": "2020-01-01"},
				}})
		}
		if err := send(c, "POST", stackenv.HAPIURL, map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries}); err != nil {
			return err
		}
		fmt.Printf("\rloaded %d/%d members (%s)", min(from+500, n), n, time.Since(start).Round(time.Second))
	}
	fmt.Println()
	return nil
}

// request is PDex multi-member-match-bundle-in with one MemberBundle per member, each with a Consent naming
// payer-b, valid from yesterday for a year.
func request(n int) []byte {
	consent := membermatch.OptIn("Organization/payer-b", membermatch.PolicyRegular)
	members := make([][]any, 0, n)
	for i := range n {
		m := membermatch.Member{Name: membermatch.Name("Benchmark", "Member"+strconv.Itoa(i)), BirthDate: "1970-01-01",
			Gender: "female", IDSystem: idSystem, MemberID: fmt.Sprintf("BM-%05d", i)}
		members = append(members, m.Parts(consent))
	}
	return membermatch.Bulk(members...)
}

// measure sends the request through one face and polls its status URL until the result.
func measure(c *http.Client, face, base, token string, body []byte, n int) error {
	rssBefore := proxyRSS()
	peak := rssBefore
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				peak = max(peak, proxyRSS())
			}
		}
	}()
	start := time.Now()
	status, header, out, err := do(c, "POST", base+"/Group/$bulk-member-match", token, body)
	kickoff := time.Since(start)
	if err != nil || status != http.StatusAccepted {
		close(stop)
		return fmt.Errorf("%s kick-off: %d %v %.300s", face, status, err, out)
	}
	loc := header.Get("Content-Location")
	for {
		time.Sleep(500 * time.Millisecond)
		status, _, out, err = do(c, "GET", loc, token, nil)
		if err != nil {
			close(stop)
			return err
		}
		if status != http.StatusAccepted {
			break
		}
	}
	total := time.Since(start)
	close(stop)
	<-done
	if status != http.StatusOK {
		return fmt.Errorf("%s result: %d %.300s", face, status, out)
	}
	var res struct {
		Parameter []struct {
			Name     string `json:"name"`
			Resource struct {
				Member []any `json:"member"`
			} `json:"resource"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return err
	}
	matched := 0
	for _, p := range res.Parameter {
		if p.Name == "ResourceIdentifier" {
			matched = len(p.Resource.Member)
		}
	}
	if matched != n {
		return fmt.Errorf("%s: %d of %d members matched", face, matched, n)
	}
	fmt.Printf("| %s | %s | %s | %d | %.1f MiB | %d → %d MiB |\n", face, kickoff.Round(time.Millisecond), total.Round(100*time.Millisecond),
		matched, float64(len(out))/(1<<20), rssBefore>>20, peak>>20)
	return nil
}

func do(c *http.Client, method, url, token string, body []byte) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Prefer", "respond-async")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, out, err
}

// proxyRSS is fhirwall-proxy's resident set in bytes (the stack's pid file), 0 when unknown.
func proxyRSS() int64 {
	pid, err := os.ReadFile(filepath.Join(stackenv.Root(), ".fhirwall", "run", "proxy.pid"))
	if err != nil {
		return 0
	}
	status, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cleanup deletes what a run wrote: the Consents payer-b's bulk match stored for bench members, and the
// result Groups it created (managed by payer-b, with the bench job's identifier system).
func cleanup(c *http.Client) error {
	for _, search := range []string{
		"/Consent?_tag=" + consentTag + "&patient.identifier=" + idSystem + "|&_elements=id&_count=500",
		"/Group?managing-entity=Organization/payer-b&identifier=https://fhirwall.dev/bulk-member-match|&_elements=id&_count=500",
	} {
		for {
			var b struct {
				Entry []struct {
					Resource struct {
						ResourceType string `json:"resourceType"`
						ID           string `json:"id"`
					} `json:"resource"`
				} `json:"entry"`
			}
			if err := getJSON(c, stackenv.HAPIURL+search, &b); err != nil {
				return err
			}
			if len(b.Entry) == 0 {
				break
			}
			var entries []any
			for _, e := range b.Entry {
				entries = append(entries, map[string]any{"request": map[string]any{"method": "DELETE", "url": e.Resource.ResourceType + "/" + e.Resource.ID}})
			}
			if err := send(c, "POST", stackenv.HAPIURL, map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries}); err != nil {
				return err
			}
		}
	}
	return nil
}

func send(c *http.Client, method, url string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, _ := http.NewRequest(method, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		out, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: %d %.300s", method, url, resp.StatusCode, out)
	}
	return nil
}

func getJSON(c *http.Client, url string, v any) error {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return errors.New(url + ": " + resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
