//go:build race

package server_test

// raceEnabled scales heavy tests down: the race detector makes marshalling
// and TLS about ten times slower.
const raceEnabled = true
