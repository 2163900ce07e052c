// Package gomem is how spugate's daemons trade memory for CPU in the Go
// runtime: the GC target percent (GOGC) and the soft memory limit
// (GOMEMLIMIT), from a flag, the environment or the daemon's default.
package gomem

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGCPercent is the GOGC the daemons run with when neither -gogc nor
// the environment's GOGC sets one. Go's default, 100, lets the heap grow to
// twice what is live before a collection: right for a program whose live
// heap is small next to what it allocates, but a daemon's live heap here is
// its table of IKE SAs or SAs, large and mostly still, so that at 100 about
// half its RSS is garbage waiting for the next collection. 50 keeps that
// headroom at a third of the RSS for about a tenth more CPU per IKE setup
// (docs/iked.md gives the figures); spud's packet path allocates nothing,
// so that it costs spud nothing there.
const DefaultGCPercent = 50

// Memory is how a daemon's Go runtime trades memory for CPU: the GC target
// percent (GOGC) and the soft memory limit (GOMEMLIMIT).
type Memory struct {
	// GCPercent is the heap growth that triggers a collection, in percent
	// of the live heap; negative turns collections off until Limit.
	GCPercent int
	// Limit is the soft memory limit in bytes (math.MaxInt64: none): the
	// runtime collects as often as it must to stay under it, whatever
	// GCPercent says.
	Limit int64
	// GCFrom and LimitFrom say where each setting came from: "-gogc",
	// "GOGC", "default"; "-memory-limit", "GOMEMLIMIT", "none".
	GCFrom, LimitFrom string
}

// Settings works out the runtime's memory settings from the flags' values
// ("" when not given) and the environment: a flag wins over the
// environment, which wins over the defaults (DefaultGCPercent, no limit).
func Settings(gogc, limit string) (Memory, error) {
	m := Memory{GCPercent: DefaultGCPercent, GCFrom: "default", Limit: math.MaxInt64, LimitFrom: "none"}
	if v, ok := os.LookupEnv("GOGC"); ok && v != "" {
		p, err := ParseGCPercent(v)
		if err != nil {
			return m, fmt.Errorf("GOGC: %w", err)
		}
		m.GCPercent, m.GCFrom = p, "GOGC"
	}
	if gogc != "" {
		p, err := ParseGCPercent(gogc)
		if err != nil {
			return m, fmt.Errorf("-gogc: %w", err)
		}
		m.GCPercent, m.GCFrom = p, "-gogc"
	}
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok && v != "" {
		n, err := ParseMemoryLimit(v)
		if err != nil {
			return m, fmt.Errorf("GOMEMLIMIT: %w", err)
		}
		m.Limit, m.LimitFrom = n, "GOMEMLIMIT"
	}
	if limit != "" {
		n, err := ParseMemoryLimit(limit)
		if err != nil {
			return m, fmt.Errorf("-memory-limit: %w", err)
		}
		m.Limit, m.LimitFrom = n, "-memory-limit"
	}
	if m.GCPercent < 0 && m.Limit == math.MaxInt64 {
		return m, fmt.Errorf("GC off (%s) without a memory limit: the heap would grow without bound", m.GCFrom)
	}
	return m, nil
}

// Apply sets the runtime's GC percent and memory limit.
func (m Memory) Apply() {
	debug.SetGCPercent(m.GCPercent)
	debug.SetMemoryLimit(m.Limit)
}

// String formats the settings for a daemon's start line.
func (m Memory) String() string {
	gc := "off"
	if m.GCPercent >= 0 {
		gc = strconv.Itoa(m.GCPercent)
	}
	lim := "none"
	if m.Limit != math.MaxInt64 {
		lim = FormatSize(m.Limit)
	}
	return fmt.Sprintf("gogc %s (%s), memory limit %s (%s)", gc, m.GCFrom, lim, m.LimitFrom)
}

// ParseGCPercent reads a GOGC value: a percent (0 and up) or "off".
func ParseGCPercent(s string) (int, error) {
	if strings.EqualFold(s, "off") {
		return -1, nil
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 0 {
		return 0, fmt.Errorf("%q is not a percent (0 and up) or off", s)
	}
	return p, nil
}

// units are GOMEMLIMIT's suffixes, longest first.
var units = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

// ParseMemoryLimit reads a memory limit as GOMEMLIMIT writes it: bytes
// with an optional B, KiB, MiB, GiB or TiB suffix ("1536MiB"), or "off"
// (no limit, math.MaxInt64).
func ParseMemoryLimit(s string) (int64, error) {
	if strings.EqualFold(s, "off") {
		return math.MaxInt64, nil
	}
	num, shift := s, uint(0)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, shift = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size (bytes, or a number with B, KiB, MiB, GiB or TiB) or off", s)
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n << shift, nil
}

// FormatSize writes a byte count in the largest of GOMEMLIMIT's units
// that divides it.
func FormatSize(n int64) string {
	for _, u := range units {
		if u.shift > 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
