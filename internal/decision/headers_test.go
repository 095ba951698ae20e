package decision

import (
	"net/http"
	"slices"
	"testing"
)

func TestAnswerHeadersHideTheServerBannerForbidCachingAndKeepBulkPollsHonest(t *testing.T) {
	poll := func(t *testing.T, method string) *Decision {
		return exportDecision(t, "provider-org-a", method, "/$export-poll-status", "_jobId=job-1")
	}
	read := exportDecision(t, "provider-org-a", "GET", "/Patient/member-01", "")
	for _, tc := range []struct {
		name     string
		d        *Decision
		status   int
		upstream http.Header
		want     map[string]string
	}{
		{"a poll in progress keeps the server's Retry-After", poll(t, "GET"), 202, http.Header{"Retry-After": {"120"}}, map[string]string{}},
		{"a poll in progress keeps an HTTP-date", poll(t, "GET"), 202, http.Header{"Retry-After": {"Wed, 09 Dec 2026 10:00:00 GMT"}}, map[string]string{}},
		{"a poll in progress without one gets the default", poll(t, "GET"), 202, http.Header{}, map[string]string{"Retry-After": DefaultRetryAfter}},
		{"a poll in progress with nonsense gets the default", poll(t, "GET"), 202, http.Header{"Retry-After": {"soon"}}, map[string]string{"Retry-After": DefaultRetryAfter}},
		{"a poll in progress saying 0 gets the default", poll(t, "GET"), 202, http.Header{"Retry-After": {"0"}}, map[string]string{"Retry-After": DefaultRetryAfter}},
		{"the complete manifest is application/json", poll(t, "GET"), 200, http.Header{"Content-Type": {"application/json;charset=ISO-8859-1"}}, map[string]string{"Content-Type": "application/json"}},
		{"a cancel is left alone", poll(t, "DELETE"), 202, http.Header{}, map[string]string{}},
		{"a read is left alone", read, 200, http.Header{"Content-Type": {"application/fhir+json;charset=UTF-8"}}, map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := AnswerHeaders(tc.d, tc.status, tc.upstream.Get)
			if !slices.Contains(e.Remove, "X-Powered-By") {
				t.Errorf("X-Powered-By not removed: %v", e.Remove)
			}
			if e.Set["Cache-Control"] != "no-store" || e.Set["Pragma"] != "no-cache" {
				t.Errorf("an answer that may carry patient data is cacheable: %v", e.Set)
			}
			delete(e.Set, "Cache-Control")
			delete(e.Set, "Pragma")
			for _, k := range []string{"Retry-After", "Content-Type"} {
				got, set := e.Set[k]
				if want, wanted := tc.want[k]; set != wanted || got != want {
					t.Errorf("%s set to %q (%v), want %q (%v)", k, got, set, want, wanted)
				}
			}
		})
	}
}

func TestTheFHIRServersOwn503SaysWhenToComeBack(t *testing.T) {
	read := exportDecision(t, "provider-org-a", "GET", "/Patient/member-01", "")
	if e := AnswerHeaders(read, 503, http.Header{}.Get); e.Set["Retry-After"] != DefaultRetryAfter {
		t.Errorf("a 503 without Retry-After: %v", e.Set)
	}
	if e := AnswerHeaders(read, 503, http.Header{"Retry-After": {"30"}}.Get); e.Set["Retry-After"] != "" {
		t.Errorf("the server's own Retry-After was replaced: %v", e.Set)
	}
	if e := AnswerHeaders(read, 200, http.Header{}.Get); e.Set["Retry-After"] != "" {
		t.Errorf("a 200 got Retry-After: %v", e.Set)
	}
}
