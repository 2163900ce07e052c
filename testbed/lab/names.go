package lab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// Every namespace a lab makes is named NamePrefix + runID + "-" + host, so
// that two runs never collide and a later run can tell a leftover (its run
// ID has a state file whose owner is dead, or none) from a live neighbour.
const NamePrefix = "spg-"

// runIDLen hex digits: 2^24 run IDs is plenty for runs that overlap in time,
// and keeps "spg-xxxxxx-client-a" short enough to read in `ip netns`.
const runIDLen = 6

var (
	runIDRe    = regexp.MustCompile(`^[0-9a-f]{6}$`)
	hostNameRe = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	// Linux interface names are at most 15 bytes (IFNAMSIZ-1).
	ifNameRe = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$`)
)

func newRunID() string {
	var b [runIDLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("lab: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// nsName is the namespace name of host in run id.
func nsName(runID, host string) string {
	return NamePrefix + runID + "-" + host
}

// parseNSName splits a namespace name made by nsName; ok is false for names
// that are not a lab's, which Sweep must never touch.
func parseNSName(name string) (runID, host string, ok bool) {
	rest, found := strings.CutPrefix(name, NamePrefix)
	if !found || len(rest) < runIDLen+2 || rest[runIDLen] != '-' {
		return "", "", false
	}
	runID, host = rest[:runIDLen], rest[runIDLen+1:]
	if !runIDRe.MatchString(runID) || !hostNameRe.MatchString(host) {
		return "", "", false
	}
	return runID, host, true
}

func checkHostName(name string) error {
	if !hostNameRe.MatchString(name) {
		return fmt.Errorf("lab: host name %q: want lower-case letters, digits and '-', starting with a letter, at most 32", name)
	}
	return nil
}

func checkIfName(name string) error {
	if !ifNameRe.MatchString(name) {
		return fmt.Errorf("lab: interface name %q: want at most 15 letters, digits, '_', '.', '-', starting with a letter", name)
	}
	return nil
}
