package worker

// Every test of the package checks Predecessor's hints against its search.
func init() { verifyHints = true }

// HintHits is how many Predecessor hints were taken (and verified).
func HintHits() int64 { return hintHits.Load() }

// The unauthenticated log budget, for tests that flood.
const (
	UnauthLogBurst    = unauthLogBurst
	UnauthLogInterval = unauthLogInterval
)
