//go:build race

package xsktest

// The race detector's instrumentation allocates: allocation counts mean
// nothing under -race.
const raceEnabled = true
