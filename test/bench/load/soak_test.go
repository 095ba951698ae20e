package main

import (
	"strconv"
	"testing"
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
