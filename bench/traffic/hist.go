package traffic

import (
	"math/bits"
	"time"
)

// Histogram counts durations in log-linear buckets: exact below 32 ns, then
// 16 buckets per power of two (each at most 1/16 = 6% of its value wide,
// about 3% either side). Its zero value is ready; it is not safe for
// concurrent use, and Add allocates nothing.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64
	max    int64
}

const (
	histSub     = 16
	histExact   = 2 * histSub
	histBuckets = histExact + (64-5)*histSub
)

func histIndex(v int64) int {
	if v < histExact {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	e := bits.Len64(uint64(v)) - 5 // v >> e lies in [16, 32)
	return histExact + (e-1)*histSub + int(uint64(v)>>e) - histSub
}

// histUpper is the largest value of bucket i.
func histUpper(i int) int64 {
	if i < histExact {
		return int64(i)
	}
	e := (i-histExact)/histSub + 1
	top := uint64((i-histExact)%histSub + histSub)
	return int64((top+1)<<e - 1)
}

// Add counts one duration in nanoseconds (negative counts as 0).
func (h *Histogram) Add(ns int64) {
	if ns < 0 {
		ns = 0
	}
	h.counts[histIndex(ns)]++
	h.n++
	h.sum += float64(ns)
	if ns > h.max {
		h.max = ns
	}
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count is the number of durations added.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest duration added.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the mean duration.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the duration below which a fraction q (0..1) of the
// counts lie: the upper edge of the bucket holding the q-th count, so at
// most 6% above the true value, never below it (and never above Max).
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(histUpper(i), h.max))
		}
	}
	return time.Duration(h.max)
}
