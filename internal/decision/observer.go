package decision

import "time"

// Modes name the face a request came through; Input.Mode carries one, and metrics label by it.
const (
	ModeEnvoy      = "envoy"      // ext_authz (and ext_proc for the response)
	ModeStandalone = "standalone" // internal/gateway
)

// Observer is told what the core decided and answered, for metrics. Both faces go through the core, so
// both modes are counted here alike. Nil (Core.Observer unset) observes nothing.
type Observer interface {
	// Decided is called once per Decide (took is how long it ran) and per Refuse (took is 0: refused
	// before the core ran, so not timed).
	Decided(d *Decision, took time.Duration)
	// Answered is called once per audit record, with the status the client got: 0 when no answer reached it.
	Answered(d *Decision, status int)
	// UpstreamFailed is called when a call to the FHIR server failed: an adapter's call during the decision
	// here, or the proxied request in the standalone face.
	UpstreamFailed(d *Decision, err error)
}

type noObserver struct{}

func (noObserver) Decided(*Decision, time.Duration) {}
func (noObserver) Answered(*Decision, int)          {}
func (noObserver) UpstreamFailed(*Decision, error)  {}

func (c *Core) observer() Observer {
	if c.Observer == nil {
		return noObserver{}
	}
	return c.Observer
}

// answeredStatus is what the client gets for a record written with status: a face never answers without its
// record, so a failed write turns the answer into 503; a 502 (unchecked) or no answer (0) stays as it was.
func answeredStatus(status int, err error) int {
	if err == nil || status == 0 || status == UncheckedResponse.Status {
		return status
	}
	return 503
}
