//go:build race

package loadgen

// raceEnabled: the race detector slows the node and the generator several times over.
const raceEnabled = true
