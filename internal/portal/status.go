package portal

import (
	"context"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fhirwall/fhirwall/internal/metrics"
)

// Status computes each API's availability and latency from this replica's own metrics
// (fhirwall_requests_total and the request or decision duration histograms): it keeps a snapshot every
// SnapshotEvery in a ring covering the longest window, and compares the live counters with the snapshot a
// window ago. Figures are per replica (each keeps its own counters), which the page says.
type Status struct {
	g       prometheus.Gatherer
	now     func() time.Time
	started time.Time

	mu   sync.Mutex
	ring []snapshot // oldest first
}

// SnapshotEvery is how often Run records a snapshot.
const SnapshotEvery = 15 * time.Second

// Windows the status page reports besides the replica's lifetime.
var windows = []struct {
	Name string
	Span time.Duration
}{{"last 5 minutes", 5 * time.Minute}, {"last hour", time.Hour}}

const ringSize = int(time.Hour/SnapshotEvery) + 2

type snapshot struct {
	at   time.Time
	apis map[string]counts
}

// counts are one API's counters at one time.
type counts struct {
	total, ok float64   // answers, and answers that were not 5xx
	latency   histogram // request duration (standalone), else decision duration (Envoy mode)
}

type histogram struct {
	upper []float64 // bucket upper bounds, ascending, +Inf last
	cum   []float64 // cumulative counts
	count float64
}

// NewStatus reads g (the registry fhirwall's metrics are registered on); now nil: time.Now.
func NewStatus(g prometheus.Gatherer, now func() time.Time) *Status {
	if now == nil {
		now = time.Now
	}
	return &Status{g: g, now: now, started: now()}
}

// Run records a snapshot now and every SnapshotEvery until ctx ends.
func (s *Status) Run(ctx context.Context) {
	t := time.NewTicker(SnapshotEvery)
	defer t.Stop()
	for {
		_ = s.Record()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Record takes a snapshot into the ring.
func (s *Status) Record() error {
	snap, err := s.take()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring = append(s.ring, snap)
	if len(s.ring) > ringSize {
		s.ring = slices.Delete(s.ring, 0, len(s.ring)-ringSize)
	}
	return nil
}

func (s *Status) take() (snapshot, error) {
	snap := snapshot{at: s.now(), apis: map[string]counts{}}
	mfs, err := s.g.Gather()
	if err != nil {
		return snap, err
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	if mf := byName[metrics.RequestsTotal]; mf != nil {
		for _, m := range mf.GetMetric() {
			api, code := label(m, "api"), label(m, "code")
			c := snap.apis[api]
			v := m.GetCounter().GetValue()
			switch {
			case code == "none": // the client went away before any answer: neither up nor down
			case strings.HasPrefix(code, "5"):
				c.total += v
			default:
				c.total += v
				c.ok += v
			}
			snap.apis[api] = c
		}
	}
	for _, name := range []string{metrics.RequestDuration, metrics.DecisionDuration} {
		mf := byName[name]
		if mf == nil {
			continue
		}
		per := map[string]histogram{}
		for _, m := range mf.GetMetric() {
			api := label(m, "api")
			per[api] = per[api].add(m.GetHistogram())
		}
		for api, hs := range per {
			c := snap.apis[api]
			if c.latency.count == 0 && hs.count > 0 {
				c.latency = hs
			}
			snap.apis[api] = c
		}
	}
	return snap, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// add sums a histogram of another mode into h (the same buckets: one metric, one bucket layout).
func (h histogram) add(p *dto.Histogram) histogram {
	if len(h.upper) == 0 {
		for _, b := range p.GetBucket() {
			h.upper = append(h.upper, b.GetUpperBound())
			h.cum = append(h.cum, 0)
		}
		h.upper = append(h.upper, math.Inf(1))
		h.cum = append(h.cum, 0)
	}
	for i, b := range p.GetBucket() {
		if i < len(h.cum)-1 {
			h.cum[i] += float64(b.GetCumulativeCount())
		}
	}
	h.cum[len(h.cum)-1] += float64(p.GetSampleCount())
	h.count += float64(p.GetSampleCount())
	return h
}

func (h histogram) minus(base histogram) histogram {
	if len(base.upper) != len(h.upper) {
		return h
	}
	out := histogram{upper: h.upper, cum: make([]float64, len(h.cum)), count: h.count - base.count}
	for i := range h.cum {
		out.cum[i] = h.cum[i] - base.cum[i]
	}
	return out
}

// quantile interpolates within the bucket the rank falls in, as PromQL's histogram_quantile does.
func (h histogram) quantile(q float64) (float64, bool) {
	if h.count <= 0 || len(h.upper) == 0 {
		return 0, false
	}
	rank := q * h.count
	lower, prev := 0.0, 0.0
	for i, up := range h.upper {
		if h.cum[i] >= rank {
			if math.IsInf(up, 1) {
				return lower, true
			}
			in := h.cum[i] - prev
			if in <= 0 {
				return up, true
			}
			return lower + (up-lower)*(rank-prev)/in, true
		}
		lower, prev = up, h.cum[i]
	}
	return lower, true
}

// Figures are one API's availability and latency over one window.
type Figures struct {
	Window       string
	Since        time.Time // where the window really starts (later than asked while the replica is young)
	Requests     float64
	Availability float64 // share of answers that were not 5xx; meaningful when Requests > 0
	P50, P99     float64 // seconds; meaningful when HasLatency
	HasLatency   bool
}

// Report is every window's figures for api, from a fresh snapshot against the ring.
func (s *Status) Report(api string) []Figures {
	cur, err := s.take()
	if err != nil {
		return nil
	}
	s.mu.Lock()
	ring := slices.Clone(s.ring)
	s.mu.Unlock()
	var out []Figures
	for _, w := range windows {
		base, since := snapshot{}, s.started
		for _, snap := range ring {
			if snap.at.After(cur.at.Add(-w.Span)) {
				break
			}
			base, since = snap, snap.at
		}
		if base.apis == nil && len(ring) > 0 {
			base, since = ring[0], ring[0].at
		}
		out = append(out, figures(w.Name, since, cur.apis[api], base.apis[api]))
	}
	return append(out, figures("since this replica started", s.started, cur.apis[api], counts{}))
}

func figures(name string, since time.Time, cur, base counts) Figures {
	f := Figures{Window: name, Since: since, Requests: cur.total - base.total}
	if f.Requests > 0 {
		f.Availability = (cur.ok - base.ok) / f.Requests
	}
	lat := cur.latency
	if base.latency.count > 0 {
		lat = cur.latency.minus(base.latency)
	}
	f.P50, f.HasLatency = lat.quantile(0.5)
	f.P99, _ = lat.quantile(0.99)
	return f
}

// Replica names this process on the status page.
func (s *Status) Replica() string {
	h, _ := os.Hostname()
	return h
}
