package iked

// SegmentStats lets the privileged tests (package iked_test) look into a
// state folder: see segmentStats.
func SegmentStats(dir string) (live, stale, dead int, unreadable int64, err error) {
	return segmentStats(dir)
}
