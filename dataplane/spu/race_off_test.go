//go:build !race

package spu

const raceEnabled = false
