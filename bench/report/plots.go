package report

import (
	"fmt"
	"image/color"
	"path/filepath"

	"github.com/spugate/spugate/bench/scenario"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WritePlots draws the run's figures into dir, each as SVG and PNG, and
// returns the files' base names (without extension).
func WritePlots(r *Results, dir string) ([]string, error) {
	var names []string
	save := func(p *plot.Plot, name string) error {
		for _, ext := range []string{".svg", ".png"} {
			if err := p.Save(18*vg.Centimeter, 10*vg.Centimeter, filepath.Join(dir, name+ext)); err != nil {
				return fmt.Errorf("report: plot %s: %w", name, err)
			}
		}
		names = append(names, name)
		return nil
	}
	if t := r.Throughput; t != nil {
		for _, suite := range suitesOf(t) {
			p, err := throughputPlot(t, r.Ceiling, suite)
			if err != nil {
				return names, err
			}
			if p != nil {
				if err := save(p, "throughput-"+suite); err != nil {
					return names, err
				}
			}
		}
	}
	if s := r.Scaling; s != nil && len(s.Runs) > 0 {
		p, err := scalingPlot(s)
		if err != nil {
			return names, err
		}
		if err := save(p, "scaling"); err != nil {
			return names, err
		}
	}
	if t := r.Tunnels; t != nil && len(t.Runs) > 0 {
		for _, mem := range []bool{false, true} {
			p, err := tunnelsPlot(t, mem)
			if err != nil {
				return names, err
			}
			name := "tunnels-throughput"
			if mem {
				name = "tunnels-memory"
			}
			if err := save(p, name); err != nil {
				return names, err
			}
		}
	}
	if k := r.IKE; k != nil {
		for _, cpu := range []bool{false, true} {
			p, err := ikeSetupPlot(k, cpu)
			if err != nil {
				return names, err
			}
			if p == nil {
				break
			}
			name := "ike-setup-rate"
			if cpu {
				name = "ike-setup-cpu"
			}
			if err := save(p, name); err != nil {
				return names, err
			}
		}
	}
	return names, nil
}

// ikeSetupPlot draws, for every IKE run with a setup curve, the setup
// rate (or the responder's CPU per IKE SA) over each percent of its IKE
// SAs against the IKE SAs established: flat when a setup costs the same
// at any table size. Nil when no run has a curve.
func ikeSetupPlot(k *scenario.IKEResults, cpu bool) (*plot.Plot, error) {
	p := plot.New()
	p.X.Label.Text = "IKE SAs established"
	if cpu {
		p.Title.Text = "Responder CPU per IKE SA as the table grows (iked + spud, or charon)"
		p.Y.Label.Text = "ms CPU per IKE SA"
	} else {
		p.Title.Text = "IKE SA setup rate as the table grows"
		p.Y.Label.Text = "IKE SAs per s"
	}
	var args []any
	for _, r := range k.Runs {
		if len(r.Curve) < 2 {
			continue
		}
		var xys plotter.XYs
		prev := scenario.IKEPoint{}
		for _, c := range r.Curve {
			if dt := c.Elapsed - prev.Elapsed; dt > 0 && c.Up > prev.Up {
				y := float64(c.Up-prev.Up) / dt.Seconds()
				if cpu {
					y = float64(c.CPU-prev.CPU) / 1e6 / float64(c.Up-prev.Up)
				}
				xys = append(xys, plotter.XY{X: float64(c.Up), Y: y})
			}
			prev = c
		}
		if len(xys) > 0 {
			args = append(args, fmt.Sprintf("%s ← %s, %s", r.Responder, r.Initiator, r.Auth), xys)
		}
	}
	if len(args) == 0 {
		return nil, nil
	}
	if err := plotutil.AddLines(p, args...); err != nil {
		return nil, err
	}
	p.Legend.Top = true
	return p, nil
}

func suitesOf(t *scenario.ThroughputResults) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range t.Runs {
		if r.Suite != "" && !seen[r.Suite] {
			seen[r.Suite] = true
			out = append(out, r.Suite)
		}
	}
	return out
}

// throughputPlot is a grouped bar chart: Mpps per packet size, one bar per
// system, the generator's ceiling as the last bar.
func throughputPlot(t *scenario.ThroughputResults, ceiling []scenario.CeilingRun, suite string) (*plot.Plot, error) {
	var mixes []string
	seen := map[string]bool{}
	for _, r := range t.Runs {
		if !seen[r.Mix] {
			seen[r.Mix] = true
			mixes = append(mixes, r.Mix)
		}
	}
	type series struct {
		name string
		vals plotter.Values
	}
	var all []series
	for _, sys := range scenario.AllSystems {
		s := series{name: sys, vals: make(plotter.Values, len(mixes))}
		any := false
		for i, mix := range mixes {
			for _, r := range t.Runs {
				want := suite
				if sys == scenario.Kernel || sys == scenario.WireGuard {
					want = ""
				}
				if sys == scenario.WireGuard && suite != scenario.StandardSuites[2] {
					continue
				}
				if r.System == sys && r.Suite == want && r.Mix == mix {
					s.vals[i] = r.PPS / 1e6
					any = any || r.PPS > 0
				}
			}
		}
		if any {
			all = append(all, s)
		}
	}
	if len(ceiling) > 0 {
		s := series{name: "generator ceiling", vals: make(plotter.Values, len(mixes))}
		for i, mix := range mixes {
			for _, c := range ceiling {
				if c.Mix == mix && c.Result != nil {
					s.vals[i] = c.Result.PPS / 1e6
				}
			}
		}
		all = append(all, s)
	}
	if len(all) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = "Throughput, " + suite
	p.Y.Label.Text = "Mpps received"
	p.X.Label.Text = "packet size, bytes"
	w := vg.Points(60 / float64(len(all)))
	for i, s := range all {
		b, err := plotter.NewBarChart(s.vals, w)
		if err != nil {
			return nil, err
		}
		b.Color = plotutil.Color(i)
		b.LineStyle.Width = 0
		b.Offset = w * vg.Length(float64(i)-float64(len(all)-1)/2)
		p.Add(b)
		p.Legend.Add(s.name, b)
	}
	p.Legend.Top = true
	p.NominalX(mixes...)
	return p, nil
}

func scalingPlot(s *scenario.ScalingResults) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("spud SPU scaling, %d tunnels, %d CPUs (beyond: simulated)", s.Tunnels, s.CPUs)
	p.X.Label.Text = "SPUs per gateway"
	p.Y.Label.Text = "Mpps received"
	byMix := map[string]plotter.XYs{}
	var order []string
	for _, r := range s.Runs {
		if _, ok := byMix[r.Mix]; !ok {
			order = append(order, r.Mix)
		}
		byMix[r.Mix] = append(byMix[r.Mix], plotter.XY{X: float64(r.SPUs), Y: r.PPS / 1e6})
	}
	for i, mix := range order {
		l, pts, err := plotter.NewLinePoints(byMix[mix])
		if err != nil {
			return nil, err
		}
		l.Color, pts.Color = plotutil.Color(i), plotutil.Color(i)
		p.Add(l, pts)
		p.Legend.Add(mix+" bytes", l, pts)
	}
	cpus := plotter.XYs{{X: float64(s.CPUs), Y: 0}, {X: float64(s.CPUs), Y: maxY(byMix)}}
	l, err := plotter.NewLine(cpus)
	if err != nil {
		return nil, err
	}
	l.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
	l.Color = color.Gray{Y: 128}
	p.Add(l)
	p.Legend.Add("CPUs", l)
	p.Legend.Top = true
	return p, nil
}

func maxY(m map[string]plotter.XYs) float64 {
	y := 0.0
	for _, xys := range m {
		for _, v := range xys {
			y = max(y, v.Y)
		}
	}
	if y == 0 {
		y = 1
	}
	return y
}

// tunnelsPlot draws, against the tunnel count, the throughput or gw-a's
// memory per tunnel.
func tunnelsPlot(t *scenario.TunnelResults, memory bool) (*plot.Plot, error) {
	p := plot.New()
	p.X.Label.Text = "tunnels"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	var xys plotter.XYs
	for _, r := range t.Runs {
		if r.Tunnels <= 0 {
			continue
		}
		y := r.PPS / 1e6
		if memory {
			y = r.PerTunnel / 1024
		}
		xys = append(xys, plotter.XY{X: float64(r.Tunnels), Y: y})
	}
	if memory {
		p.Title.Text = "spud (gw-a) resident memory per tunnel"
		p.Y.Label.Text = "KiB per tunnel"
	} else {
		p.Title.Text = fmt.Sprintf("spud with N tunnels, %s bytes, one flow per tunnel", t.Mix)
		p.Y.Label.Text = "Mpps received"
	}
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return nil, err
	}
	p.Add(l, pts)
	return p, nil
}
