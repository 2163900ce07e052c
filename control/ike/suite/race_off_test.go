//go:build !race

package suite

// raceEnabled: the race detector makes sync.Pool drop what is put back, so
// the allocation guards of pooled paths do not hold under it.
const raceEnabled = false
