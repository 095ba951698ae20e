package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// report renders the results as the Markdown table BENCHMARKS.md carries, with each system's throughput as a
// ratio to the limits and to the peer, and what fhirwall adds to its limit's latency.
func report(rs []result, o options) string {
	by := map[string]result{}
	for _, r := range rs {
		if r.Skipped == "" {
			by[r.Name] = r
		}
	}
	ratio := func(r result, base string) string {
		b, ok := by[base]
		if !ok || b.Saturation == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", r.Saturation/b.Saturation)
	}
	var s strings.Builder
	fmt.Fprintf(&s, "| system | saturation (rps, %d concurrent) | × bare proxy | × Envoy alone | × peer |", o.workers)
	for _, rate := range o.rates {
		fmt.Fprintf(&s, " p50 / p99 / p99.9 at %d rps |", rate)
	}
	s.WriteString(" CPU s per 1,000 req | peak RSS |\n|---|---|---|---|---|")
	for range o.rates {
		s.WriteString("---|")
	}
	s.WriteString("---|---|\n")
	for _, r := range rs {
		if r.Skipped != "" {
			fmt.Fprintf(&s, "| %s | not measured: %s |\n", r.Title, r.Skipped)
			continue
		}
		fmt.Fprintf(&s, "| %s | %.0f | %s | %s | %s |", r.Title, r.Saturation, ratio(r, "bare"), ratio(r, "envoy"), ratio(r, "peer"))
		for _, rr := range r.Rates {
			fail := ""
			if rr.Success < 0.999 {
				fail = fmt.Sprintf(" (%.1f%% ok)", 100*rr.Success)
			}
			fmt.Fprintf(&s, " %s / %s / %s%s |", ms(rr.P50), ms(rr.P99), ms(rr.P999), fail)
		}
		fmt.Fprintf(&s, " %.3f | %.0f MB |\n", r.CPUPer1000, float64(r.PeakRSS)/(1<<20))
	}
	for _, pair := range [][2]string{{"standalone", "bare"}, {"envoy-fhirwall", "envoy"}, {"envoy-fhirwall", "peer"}} {
		f, okf := by[pair[0]]
		l, okl := by[pair[1]]
		if !okf || !okl {
			continue
		}
		fmt.Fprintf(&s, "\n%s over %s:", f.Title, l.Title)
		for i, rr := range f.Rates {
			if i < len(l.Rates) {
				fmt.Fprintf(&s, " at %d rps p50 %+.2f ms, p99 %+.2f ms;", rr.Rate, msf(rr.P50-l.Rates[i].P50), msf(rr.P99-l.Rates[i].P99))
			}
		}
		fmt.Fprintf(&s, " throughput %.0f%% of it.", 100*f.Saturation/l.Saturation)
	}
	for _, r := range rs {
		if len(r.CPUByProcess) > 1 {
			var parts []string
			for _, name := range slices.Sorted(maps.Keys(r.CPUByProcess)) {
				parts = append(parts, fmt.Sprintf("%s %.3f", name, r.CPUByProcess[name]))
			}
			fmt.Fprintf(&s, "\n%s: CPU s per 1,000 requests by process: %s.", r.Title, strings.Join(parts, ", "))
		}
	}
	for _, r := range rs {
		if len(r.RunSaturations) > 1 {
			fmt.Fprintf(&s, "\n%s: medians of %d runs; saturation per run %s rps.", r.Title, len(r.RunSaturations), joinRPS(r.RunSaturations))
		}
	}
	s.WriteString("\n")
	return s.String()
}

// median is one result whose every figure is the median of that figure over rs (the same scenario measured
// several times); with an even count, the upper middle one. One run, or a skipped scenario, is itself.
func median(rs []result) result {
	if len(rs) == 1 {
		return rs[0]
	}
	mid := func(n int, v func(int) float64) float64 {
		vs := make([]float64, n)
		for i := range n {
			vs[i] = v(i)
		}
		slices.Sort(vs)
		return vs[n/2]
	}
	m := rs[0]
	m.Rates = slices.Clone(rs[0].Rates)
	m.RunSaturations = nil
	for _, r := range rs {
		m.RunSaturations = append(m.RunSaturations, r.Saturation)
	}
	n := len(rs)
	m.Saturation = mid(n, func(i int) float64 { return rs[i].Saturation })
	m.SatP99 = time.Duration(mid(n, func(i int) float64 { return float64(rs[i].SatP99) }))
	m.CPUPer1000 = mid(n, func(i int) float64 { return rs[i].CPUPer1000 })
	m.PeakRSS = int64(mid(n, func(i int) float64 { return float64(rs[i].PeakRSS) }))
	if m.CPUByProcess != nil {
		m.CPUByProcess = map[string]float64{}
		for name := range rs[0].CPUByProcess {
			m.CPUByProcess[name] = mid(n, func(i int) float64 { return rs[i].CPUByProcess[name] })
		}
	}
	for j := range m.Rates {
		at := func(i int) rateResult {
			if j < len(rs[i].Rates) {
				return rs[i].Rates[j]
			}
			return rateResult{}
		}
		rr := &m.Rates[j]
		rr.Achieved = mid(n, func(i int) float64 { return at(i).Achieved })
		rr.Success = mid(n, func(i int) float64 { return at(i).Success })
		rr.P50 = time.Duration(mid(n, func(i int) float64 { return float64(at(i).P50) }))
		rr.P99 = time.Duration(mid(n, func(i int) float64 { return float64(at(i).P99) }))
		rr.P999 = time.Duration(mid(n, func(i int) float64 { return float64(at(i).P999) }))
		rr.Max = time.Duration(mid(n, func(i int) float64 { return float64(at(i).Max) }))
		rr.CPUPer1000 = mid(n, func(i int) float64 { return at(i).CPUPer1000 })
	}
	return m
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", msf(d)) }

func joinRPS(vs []float64) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("%.0f", v)
	}
	return strings.Join(parts, " / ")
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
