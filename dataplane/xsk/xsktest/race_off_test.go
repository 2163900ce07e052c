//go:build !race

package xsktest

const raceEnabled = false
