package scenario

import (
	"fmt"
	"io/fs"

	"path/filepath"
	"syscall"
	"time"

	"github.com/spugate/spugate/bench/system"
)

// IKEPoint is one reading of the responder's established IKE SAs during
// a run's setup, with the CPU time the responder took so far (iked's and
// spud's, or charon's): on a shared machine, CPU per IKE SA tells a
// setup cost that grows with the table from a machine that got busier.
type IKEPoint struct {
	Elapsed time.Duration `json:"elapsed_ns"`
	Up      int           `json:"up"`
	CPU     time.Duration `json:"cpu_ns"`
}

// IKEHold is what a run's tunnels look like after being held, untouched,
// for a while after the setup: they should all still be there, and the
// memory should not have moved.
type IKEHold struct {
	Duration time.Duration `json:"duration_ns"`
	// Min is the fewest established IKE SAs the responder held at any
	// reading during the hold.
	Min               int `json:"min_established"`
	LiveIKESAs        int `json:"live_ike_sas"`
	LiveChildSAs      int `json:"live_child_sas"`
	DataPlaneSAs      int `json:"dataplane_sas,omitempty"`
	DataPlanePolicies int `json:"dataplane_policies,omitempty"`
	// Memory and StateBytes are the responder's at the end of the hold;
	// DataPlane spud's.
	Memory     system.Memory `json:"memory"`
	StateBytes uint64        `json:"state_bytes,omitempty"`
	DataPlane  system.Memory `json:"dataplane_memory"`
	// Failures are the responder's failure counters that grew during the
	// hold (iked's).
	Failures map[string]uint64 `json:"failures,omitempty"`
	// Rekeys are the Child SAs the responder installed during the hold
	// (each a rekey's, with -ike-child-rekey); CPUPerRekey its CPU per
	// rekey in ms (iked, and spud's DataPlaneCPUPerRekey); Workers its
	// workers' share, with the time they were blocked on spud.
	Rekeys               uint64      `json:"rekeys,omitempty"`
	CPUPerRekey          float64     `json:"cpu_ms_per_rekey,omitempty"`
	DataPlaneCPUPerRekey float64     `json:"dataplane_cpu_ms_per_rekey,omitempty"`
	Workers              []IKEWorker `json:"workers,omitempty"`
	Error                string      `json:"error,omitempty"`
}

// curveSteps is how many points of the setup curve a run keeps: one per
// percent of its IKE SAs.
const curveSteps = 100

// rateWindow is the IKE SAs the first and last setup rates are taken
// over: 10,000 (the "rate at 10k"), or a tenth of a smaller run.
func rateWindow(n int) int {
	return min(10000, n/10)
}

// crossing is the setup curve when it reached k IKE SAs: time and CPU
// interpolated between the readings around it; false when it never did.
func crossing(pts []IKEPoint, k int) (IKEPoint, bool) {
	if k <= 0 {
		return IKEPoint{}, true
	}
	prev := IKEPoint{}
	for _, p := range pts {
		if p.Up >= k {
			if p.Up == prev.Up {
				return IKEPoint{Elapsed: p.Elapsed, Up: k, CPU: p.CPU}, true
			}
			f := float64(k-prev.Up) / float64(p.Up-prev.Up)
			return IKEPoint{Elapsed: prev.Elapsed + time.Duration(f*float64(p.Elapsed-prev.Elapsed)), Up: k,
				CPU: prev.CPU + time.Duration(f*float64(p.CPU-prev.CPU))}, true
		}
		if p.Up > prev.Up {
			prev = p
		}
	}
	return IKEPoint{}, false
}

// rateBetween is the setup rate from a to b IKE SAs and the responder's
// CPU per IKE SA over them (ms); 0 when the curve does not reach b or the
// readings cannot tell the times apart.
func rateBetween(pts []IKEPoint, a, b int) (rate, cpu float64) {
	pa, ok1 := crossing(pts, a)
	pb, ok2 := crossing(pts, b)
	if !ok1 || !ok2 || pb.Elapsed <= pa.Elapsed || b <= a {
		return 0, 0
	}
	return float64(b-a) / (pb.Elapsed - pa.Elapsed).Seconds(), perSA(pb.CPU-pa.CPU, b-a)
}

// setupRates fills the run's setup figures from the readings: the rate
// over each tenth of the IKE SAs it established, over the first and the
// last rateWindow of them, and a curve of curveSteps points.
func setupRates(run *IKERun, pts []IKEPoint) {
	n := 0
	if len(pts) > 0 {
		n = pts[len(pts)-1].Up
	}
	run.Deciles, run.DecileCPU, run.Curve, run.RateWindow = nil, nil, nil, 0
	run.FirstRate, run.LastRate, run.FirstCPU, run.LastCPU = 0, 0, 0, 0
	if n < 10 {
		return
	}
	for i := range 10 {
		r, c := rateBetween(pts, n*i/10, n*(i+1)/10)
		run.Deciles, run.DecileCPU = append(run.Deciles, r), append(run.DecileCPU, c)
	}
	run.RateWindow = rateWindow(n)
	run.FirstRate, run.FirstCPU = rateBetween(pts, 0, run.RateWindow)
	run.LastRate, run.LastCPU = rateBetween(pts, n-run.RateWindow, n)
	for i := 1; i <= curveSteps; i++ {
		k := max(1, n*i/curveSteps)
		if p, ok := crossing(pts, k); ok && (len(run.Curve) == 0 || run.Curve[len(run.Curve)-1].Up < k) {
			run.Curve = append(run.Curve, p)
		}
	}
}

// pollEvery is how often a run of n IKE SAs reads the responder's
// counters: often enough for a small run's rate, seldom enough not to
// take a large run's CPU.
func pollEvery(n int) time.Duration {
	if n > 20000 {
		return 250 * time.Millisecond
	}
	return 20 * time.Millisecond
}

// dirBytes is the space the files under dir take (blocks allocated, as
// du counts them: iked's state folder is on tmpfs, memory the process's
// RSS does not show).
func dirBytes(dir string) (uint64, error) {
	var total uint64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += uint64(st.Blocks) * 512
		} else {
			total += uint64(info.Size())
		}
		return nil
	})
	if err != nil {
		return total, fmt.Errorf("ike: state folder %s: %w", dir, err)
	}
	return total, nil
}

// grown are the counters of after that are above before's.
func grown(before, after map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range after {
		if v > before[k] {
			out[k] = v - before[k]
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
