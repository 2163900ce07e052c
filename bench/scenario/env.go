package scenario

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spugate/spugate/bench/traffic"
	"github.com/spugate/spugate/testbed/lab"
	"golang.org/x/sys/unix"
)

// Env is what every scenario runs with: the link settings, where to log,
// the progress display and the directory for artefacts (profiles).
type Env struct {
	Links lab.LinkOptions
	// Dir receives artefacts such as CPU profiles.
	Dir string
	// Log receives one line per step; Verbose adds the lab's commands.
	Log     io.Writer
	Verbose bool
	// NoSignalHandler is passed to the labs (tests own their cleanup).
	NoSignalHandler bool
	Progress        *Progress
}

// Logf writes a line to the log, above the progress bar.
func (e *Env) Logf(format string, args ...any) {
	if e.Log == nil {
		return
	}
	e.Progress.clear()
	fmt.Fprintf(e.Log, format+"\n", args...)
	e.Progress.redraw()
}

// Debugf logs only when Verbose.
func (e *Env) Debugf(format string, args ...any) {
	if e.Verbose {
		e.Logf(format, args...)
	}
}

func (e *Env) live(label string, l traffic.Live) {
	e.Progress.Live(label, l)
}

// Progress is a one-line progress bar on a terminal (a line every 10 s
// otherwise): the share of the run's planned work done, the time left at
// that pace, and the current measurement. A nil *Progress does nothing.
type Progress struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	start    time.Time
	total    time.Duration // planned work
	done     time.Duration // finished work
	cur      time.Duration // planned length of the current step
	curFrac  float64
	label    string
	rate     string
	lastDraw time.Time
	drawn    bool
}

// NewProgress draws on w (a terminal gets a live bar).
func NewProgress(w io.Writer) *Progress {
	p := &Progress{w: w, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

// Plan adds work expected to take d.
func (p *Progress) Plan(d time.Duration) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.total += d
	p.mu.Unlock()
}

// Step starts a step of planned length d (closing the previous one).
func (p *Progress) Step(label string, d time.Duration) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.done += p.cur
	p.cur, p.curFrac, p.label, p.rate = d, 0, label, ""
	p.mu.Unlock()
	p.draw(true)
}

// Live updates the current step from a running measurement.
func (p *Progress) Live(label string, l traffic.Live) {
	frac, note := 0.0, ""
	if l.Total > 0 {
		frac = float64(l.Elapsed) / float64(l.Total)
	}
	if l.Elapsed > 0 {
		note = fmt.Sprintf("%.0f kpps rx", float64(l.Received)/l.Elapsed.Seconds()/1e3)
	}
	p.Update(label, frac, note)
}

// Update sets how far the current step is (0..1) and a note on it.
func (p *Progress) Update(label string, frac float64, note string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.curFrac = min(1, max(0, frac))
	p.rate = note
	if label != "" {
		p.label = label
	}
	p.mu.Unlock()
	p.draw(false)
}

// Finish closes the last step and ends the bar's line.
func (p *Progress) Finish() {
	if p == nil {
		return
	}
	p.Step("done", 0)
	p.mu.Lock()
	p.total = p.done
	p.mu.Unlock()
	p.draw(true)
	if p.tty {
		fmt.Fprintln(p.w)
	}
	p.mu.Lock()
	p.drawn = false
	p.mu.Unlock()
}

func (p *Progress) line() string {
	total := max(p.total, p.done+p.cur)
	frac := 0.0
	if total > 0 {
		frac = min(1, (float64(p.done)+p.curFrac*float64(p.cur))/float64(total))
	}
	el := time.Since(p.start)
	left := "?"
	if frac > 0.02 {
		left = (time.Duration(float64(el)/frac) - el).Round(time.Second).String()
	}
	const width = 30
	n := int(frac * width)
	bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
	s := fmt.Sprintf("[%s] %3.0f%% %s elapsed, ~%s left | %s", bar, frac*100, el.Round(time.Second), left, p.label)
	if p.rate != "" {
		s += " (" + p.rate + ")"
	}
	return s
}

func (p *Progress) draw(force bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	every := 10 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	if !force && time.Since(p.lastDraw) < every {
		return
	}
	p.lastDraw = time.Now()
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", p.line())
		p.drawn = true
	} else {
		fmt.Fprintln(p.w, p.line())
	}
}

func (p *Progress) clear() {
	if p == nil || !p.tty {
		return
	}
	p.mu.Lock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
	p.mu.Unlock()
}

func (p *Progress) redraw() {
	if p == nil || !p.tty {
		return
	}
	p.draw(true)
}
