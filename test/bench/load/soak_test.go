package main

import (
	"slices"
	"strconv"
	"testing"
	"time"
)

// The soak's GC pause p99 comes from the difference of two cumulative histogram readings.
func TestPauseHistogramQuantile(t *testing.T) {
	before := pauseHistogram{1e-4: 10, 1e-3: 10, 1e-2: 10, inf(): 10}
	after := pauseHistogram{1e-4: 60, 1e-3: 158, 1e-2: 209, inf(): 210}
	d := after.since(before)
	// 200 pauses since: 50 ≤ 100 µs, 98 more ≤ 1 ms, 51 more ≤ 10 ms, 1 above.
	for _, c := range []struct {
		q    float64
		want float64
	}{{0.25, 1e-4}, {0.5, 1e-3}, {0.74, 1e-3}, {0.75, 1e-2}, {0.99, 1e-2}, {1, inf()}} {
		got, n := d.quantile(c.q)
		if got != c.want || n != 200 {
			t.Errorf("quantile(%v) = %v of %d pauses, want %v of 200", c.q, got, n, c.want)
		}
	}
	if got, n := (pauseHistogram{}).quantile(0.99); got != 0 || n != 0 {
		t.Errorf("empty histogram: %v, %d", got, n)
	}
	if got, n := before.since(before).quantile(0.99); got != 0 || n != 0 {
		t.Errorf("no pauses between two equal readings: %v, %d", got, n)
	}
}

func inf() float64 { v, _ := strconv.ParseFloat("+Inf", 64); return v }

// A figure of several runs is each figure's own median, and the runs' saturations are kept for the report.
func TestMedianOfRuns(t *testing.T) {
	rs := []result{
		{Name: "x", Saturation: 900, CPUPer1000: 0.5, Rates: []rateResult{{Rate: 500, P99: 9 * time.Millisecond, Success: 1}}},
		{Name: "x", Saturation: 1200, CPUPer1000: 0.7, Rates: []rateResult{{Rate: 500, P99: 3 * time.Millisecond, Success: 0.98}}},
		{Name: "x", Saturation: 1000, CPUPer1000: 0.6, Rates: []rateResult{{Rate: 500, P99: 5 * time.Millisecond, Success: 1}}},
	}
	m := median(rs)
	if m.Saturation != 1000 || m.CPUPer1000 != 0.6 || m.Rates[0].P99 != 5*time.Millisecond || m.Rates[0].Success != 1 {
		t.Errorf("median = %+v", m)
	}
	if !slices.Equal(m.RunSaturations, []float64{900, 1200, 1000}) || rs[0].Rates[0].P99 != 9*time.Millisecond {
		t.Errorf("runs %v, first run changed: %+v", m.RunSaturations, rs[0])
	}
	if one := median(rs[:1]); one.Saturation != 900 || one.RunSaturations != nil {
		t.Errorf("one run: %+v", one)
	}
}
