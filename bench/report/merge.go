package report

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spugate/spugate/bench/scenario"
)

// Merge combines runs of the same scenarios into one result whose every
// entry is the median run of that entry across them (the whole run, so
// that its loss and latency go with its rate), and recomputes the ratios
// from those medians. On a machine shared with other work, single runs
// vary; the median of a few is the figure to quote. The first result
// gives the machine and settings; Command says what was merged.
func Merge(rs []*Results, sources []string) (*Results, error) {
	if len(rs) == 0 {
		return nil, fmt.Errorf("report: nothing to merge")
	}
	out := *rs[0]
	out.Command = fmt.Sprintf("median of %d runs: %s", len(rs), strings.Join(sources, ", "))
	out.Quick = false
	var before, after []string
	for _, r := range rs {
		before = append(before, r.Settings.LoadBefore)
		after = append(after, r.Settings.LoadAfter)
		out.Quick = out.Quick || r.Quick
		if r.Started.Before(out.Started) {
			out.Started = r.Started
		}
		if r.Finished.After(out.Finished) {
			out.Finished = r.Finished
		}
	}
	out.Settings.LoadBefore, out.Settings.LoadAfter = strings.Join(before, "; "), strings.Join(after, "; ")
	// Ceiling, by packet size.
	ceil := map[string][]scenario.CeilingRun{}
	var ceilOrder []string
	for _, r := range rs {
		for _, c := range r.Ceiling {
			if _, ok := ceil[c.Mix]; !ok {
				ceilOrder = append(ceilOrder, c.Mix)
			}
			ceil[c.Mix] = append(ceil[c.Mix], c)
		}
	}
	out.Ceiling = nil
	for _, m := range ceilOrder {
		out.Ceiling = append(out.Ceiling, median(ceil[m], func(c scenario.CeilingRun) float64 {
			if c.Result == nil {
				return 0
			}
			return c.Result.PPS
		}))
	}
	// Throughput, by system, suite and size.
	if rs[0].Throughput != nil {
		t := *rs[0].Throughput
		groups := map[[3]string][]scenario.ThroughputRun{}
		var order [][3]string
		var suites []string
		seen := map[string]bool{}
		for _, r := range rs {
			if r.Throughput == nil {
				continue
			}
			for _, x := range r.Throughput.Runs {
				k := [3]string{x.System, x.Suite, x.Mix}
				if _, ok := groups[k]; !ok {
					order = append(order, k)
				}
				groups[k] = append(groups[k], x)
				if x.Suite != "" && !seen[x.Suite] {
					seen[x.Suite] = true
					suites = append(suites, x.Suite)
				}
			}
		}
		t.Runs = nil
		for _, k := range order {
			t.Runs = append(t.Runs, median(groups[k], func(x scenario.ThroughputRun) float64 { return x.PPS }))
		}
		t.Ratios = scenario.Ratios(t.Runs, suites)
		out.Throughput = &t
	}
	// TCP, by system, suite and streams.
	if rs[0].TCP != nil {
		t := *rs[0].TCP
		groups := map[string][]scenario.TCPRun{}
		var order []string
		for _, r := range rs {
			if r.TCP == nil {
				continue
			}
			for _, x := range r.TCP.Runs {
				k := fmt.Sprint(x.System, "/", x.Suite, "/", x.Streams)
				if _, ok := groups[k]; !ok {
					order = append(order, k)
				}
				groups[k] = append(groups[k], x)
			}
		}
		t.Runs = nil
		for _, k := range order {
			t.Runs = append(t.Runs, median(groups[k], func(x scenario.TCPRun) float64 { return x.Gbps }))
		}
		out.TCP = &t
	}
	if rs[0].Scaling != nil {
		s := *rs[0].Scaling
		groups := map[string][]scenario.ScalingRun{}
		var order []string
		for _, r := range rs {
			if r.Scaling == nil {
				continue
			}
			for _, x := range r.Scaling.Runs {
				k := fmt.Sprint(x.SPUs, "/", x.Mix)
				if _, ok := groups[k]; !ok {
					order = append(order, k)
				}
				groups[k] = append(groups[k], x)
			}
		}
		s.Runs = nil
		for _, k := range order {
			s.Runs = append(s.Runs, median(groups[k], func(x scenario.ScalingRun) float64 { return x.PPS }))
		}
		out.Scaling = &s
	}
	if rs[0].Tunnels != nil {
		t := *rs[0].Tunnels
		groups := map[int][]scenario.TunnelRun{}
		var order []int
		for _, r := range rs {
			if r.Tunnels == nil {
				continue
			}
			for _, x := range r.Tunnels.Runs {
				if _, ok := groups[x.Tunnels]; !ok {
					order = append(order, x.Tunnels)
				}
				groups[x.Tunnels] = append(groups[x.Tunnels], x)
			}
		}
		t.Runs = nil
		for _, k := range order {
			t.Runs = append(t.Runs, median(groups[k], func(x scenario.TunnelRun) float64 { return x.PPS }))
		}
		out.Tunnels = &t
	}
	if rs[0].IKE != nil {
		k := *rs[0].IKE
		groups := map[[3]string][]scenario.IKERun{}
		var order [][3]string
		for _, r := range rs {
			if r.IKE == nil {
				continue
			}
			for _, x := range r.IKE.Runs {
				key := [3]string{x.Initiator, x.Responder, x.Auth}
				if _, ok := groups[key]; !ok {
					order = append(order, key)
				}
				groups[key] = append(groups[key], x)
			}
		}
		k.Runs = nil
		for _, key := range order {
			k.Runs = append(k.Runs, median(groups[key], func(x scenario.IKERun) float64 { return x.Rate }))
		}
		k.Ratios = scenario.IKERatios(k.Runs)
		k.CPURatios = scenario.IKECPURatios(k.Runs)
		out.IKE = &k
	}
	if rs[0].Rekey != nil {
		// Both runs of one rekey result belong together: take the result
		// whose run with rekeying lost the median share.
		var all []*scenario.RekeyResults
		for _, r := range rs {
			if r.Rekey != nil && len(r.Rekey.Runs) == 2 {
				all = append(all, r.Rekey)
			}
		}
		if len(all) > 0 {
			out.Rekey = median(all, func(x *scenario.RekeyResults) float64 {
				if x.Runs[1].Result == nil {
					return 1
				}
				return x.Runs[1].Result.LossRatio
			})
		}
	}
	// The profile of the first run stands for all: profiles do not merge.
	return &out, nil
}

// median returns the element whose value is the median (the lower middle
// for an even count).
func median[T any](xs []T, value func(T) float64) T {
	s := append([]T(nil), xs...)
	sort.SliceStable(s, func(i, j int) bool { return value(s[i]) < value(s[j]) })
	return s[(len(s)-1)/2]
}
