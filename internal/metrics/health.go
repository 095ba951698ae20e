package metrics

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the registry in Prometheus' exposition format (GET /metrics).
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// Check is one readiness condition: Ready returns nil when it holds.
type Check struct {
	Name  string
	Ready func(ctx context.Context) error
}

// Readyz answers 200 when every check holds and 503 with a one-line reason (the first that fails) otherwise.
// Each check gets at most timeout, so a probe never waits on a hung dependency. detail, when set, adds a
// word to the ready line (the policy revision, say).
func Readyz(timeout time.Duration, detail func() string, checks ...Check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		for _, c := range checks {
			ctx, cancel := context.WithTimeout(r.Context(), timeout)
			err := c.Ready(ctx)
			cancel()
			if err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintf(w, "not ready: %s: %v\n", c.Name, oneLine(err))
				return
			}
		}
		if detail != nil {
			_, _ = fmt.Fprintf(w, "ready %s\n", detail())
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	}
}

func oneLine(err error) string {
	b := []byte(err.Error())
	for i, c := range b {
		if c == '\n' || c == '\r' {
			b[i] = ' '
		}
	}
	return string(b)
}
