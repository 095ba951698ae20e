// Command attribution measures Provider Access at a real attribution size through the real stack: a search
// for one attributed member, answered while the provider's attribution holds the seed's few members, then
// while it also holds a Group of -members (100,000) members. fhirwall decides on a membership fact from an
// index built once per attribution refresh, so the two should answer in the same time (issue 13).
//
//	make stack-up && go run ./test/bench/attribution -members 100000
//
// It loads -members Patients (bench-member-NNNNNN, tagged, PUT by id so a rerun adds nothing) and a Group
// zz-bench-attribution managed by Organization/org-a into the stack's HAPI, measures, and deletes the Group
// again (the Patients stay; they belong to nobody's attribution once it is gone). Between phases it waits
// for fhirwall's attribution cache (60 s) to expire.
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
	"slices"
	"time"

	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

const (
	groupID  = "zz-bench-attribution" // sorts after attribution-org-a: org-a's export group stays the seed's
	benchTag = "https://fhirwall.example/bench|large-group"
	cacheTTL = 61 * time.Second // attribution.Options.TTL's default, plus a second
)

func main() {
	members := flag.Int("members", 100_000, "members of the large attribution Group")
	requests := flag.Int("requests", 300, "requests per phase and mode")
	flag.Parse()
	if err := run(*members, *requests); err != nil {
		fmt.Fprintln(os.Stderr, "attribution:", err)
		os.Exit(1)
	}
}

func run(members, requests int) error {
	ctx := context.Background()
	client, err := stackenv.Client(30 * time.Second)
	if err != nil {
		return err
	}
	if err := loadPatients(client, members); err != nil {
		return err
	}
	modes := []struct{ name, base string }{
		{"envoy", stackenv.EnvoyURL() + "/provider-access/fhir"},
		{"standalone", stackenv.StandaloneURL + "/provider-access/fhir"},
	}
	probe := fmt.Sprintf("/Patient/bench-member-%06d", members/2)
	results := map[string][2]latencies{}
	for phase, size := range []int{0, members} {
		if size == 0 {
			if err := deleteGroup(client); err != nil {
				return err
			}
		} else if err := putGroup(client, members); err != nil {
			return err
		}
		fmt.Printf("waiting %s for fhirwall's attribution cache to expire…\n", cacheTTL)
		time.Sleep(cacheTTL)
		tok, err := stackauth.Backend(ctx, "provider-org-a", "system/*.rs") // a fresh one each phase: they last minutes
		if err != nil {
			return err
		}
		// The large group is in force when one of its members is visible, and only then. Reading it may
		// take longer than one request waits (that request fails closed, 503): ask again for a while.
		st := 0
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
			if st = status(client, modes[1].base+probe, tok.AccessToken); st != http.StatusServiceUnavailable {
				break
			}
		}
		if (st == 200) != (size > 0) {
			return fmt.Errorf("phase with %d extra members: %s answered %d", size, probe, st)
		}
		for _, m := range modes {
			l, err := measure(client, m.base+"/Observation?patient=member-01&_count=5", tok.AccessToken, requests)
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			r := results[m.name]
			r[phase] = l
			results[m.name] = r
		}
	}
	if err := deleteGroup(client); err != nil {
		return err
	}
	fmt.Printf("\nGET /provider-access/fhir/Observation?patient=member-01&_count=5 as provider-org-a, %d sequential requests per row\n\n", requests)
	fmt.Println("| mode | attribution of org-a | p50 | p90 | p99 |")
	fmt.Println("|---|---|---|---|---|")
	for _, m := range modes {
		for phase, label := range []string{"seed (9 permitted)", fmt.Sprintf("seed + %d", members)} {
			l := results[m.name][phase]
			fmt.Printf("| %s | %s | %s | %s | %s |\n", m.name, label, l.pct(50), l.pct(90), l.pct(99))
		}
	}
	return nil
}

type latencies []time.Duration

func (l latencies) pct(p int) string {
	s := slices.Clone(l)
	slices.Sort(s)
	return fmt.Sprintf("%.1f ms", float64(s[(len(s)-1)*p/100].Microseconds())/1000)
}

func measure(c *http.Client, url, token string, n int) (latencies, error) {
	out := make(latencies, 0, n)
	for i := 0; i < n+20; i++ { // the first 20 warm up
		start := time.Now()
		if st := status(c, url, token); st != 200 {
			return nil, fmt.Errorf("%s answered %d", url, st)
		}
		if i >= 20 {
			out = append(out, time.Since(start))
		}
	}
	return out, nil
}

func status(c *http.Client, url, token string) int {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// loadPatients PUTs the bench Patients in transactions of 1,000 unless HAPI already holds them all.
func loadPatients(c *http.Client, n int) error {
	var count struct {
		Total int `json:"total"`
	}
	if err := getJSON(c, stackenv.HAPIURL+"/Patient?_tag="+benchTag+"&_summary=count", &count); err != nil {
		return err
	}
	if count.Total >= n {
		fmt.Printf("HAPI holds %d bench Patients already\n", count.Total)
		return nil
	}
	start := time.Now()
	for from := 0; from < n; from += 1000 {
		var entries []any
		for i := from; i < min(from+1000, n); i++ {
			id := fmt.Sprintf("bench-member-%06d", i)
			entries = append(entries, map[string]any{
				"resource": map[string]any{"resourceType": "Patient", "id": id, "active": true,
					"meta": map[string]any{"tag": []any{map[string]any{"system": "https://fhirwall.example/bench", "code": "large-group"}}}},
				"request": map[string]any{"method": "PUT", "url": "Patient/" + id},
			})
		}
		if err := send(c, "POST", stackenv.HAPIURL, map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries}); err != nil {
			return err
		}
		fmt.Printf("\rloaded %d/%d Patients (%s)", min(from+1000, n), n, time.Since(start).Round(time.Second))
	}
	fmt.Println()
	return nil
}

func putGroup(c *http.Client, n int) error {
	member := make([]any, n)
	for i := range member {
		member[i] = map[string]any{"entity": map[string]any{"reference": fmt.Sprintf("Patient/bench-member-%06d", i)}}
	}
	start := time.Now()
	err := send(c, "PUT", stackenv.HAPIURL+"/Group/"+groupID, map[string]any{"resourceType": "Group", "id": groupID,
		"type": "person", "actual": true, "managingEntity": map[string]any{"reference": "Organization/org-a"},
		"meta":   map[string]any{"tag": []any{map[string]any{"system": "https://fhirwall.example/bench", "code": "large-group"}}},
		"member": member})
	fmt.Printf("Group/%s with %d members stored in %s\n", groupID, n, time.Since(start).Round(time.Second))
	return err
}

func deleteGroup(c *http.Client) error {
	req, _ := http.NewRequest("DELETE", stackenv.HAPIURL+"/Group/"+groupID, nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode != 404 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("DELETE Group/%s: %d %.300s", groupID, resp.StatusCode, b)
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
	resp, err := (&http.Client{Timeout: 10 * time.Minute, Transport: c.Transport}).Do(req)
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
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return errors.New(url + ": " + resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
