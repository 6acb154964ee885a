// Package suite is Gale's container suite: it runs every shipped scenario
// whose topology says `runOn: [..., containers]` (scenarios/*.yaml) on a
// cloud of containers of Gale's own image (ci/cluster: FROM scratch,
// nothing is pulled) — a `gale kafka` node and `gale cloud` nodes on Docker
// networks of their own — with the twin plant, edges and load generator on
// this host. Node kills are SIGKILLs, pauses freeze containers and
// partitions disconnect networks.
//
// The tests carry the build tag `containers`, so `go test ./...` skips them.
// Run them with `make test-containers`, which builds the image first
// (`make images`), or by hand:
//
//	make images && go test -tags containers -count=1 -v ./ci/suite/
//
// GALE_IMAGE names another image than gale:latest; GALE_SCENARIOS (a
// comma-separated list of file names, e.g. cloud-node-kill.yaml) runs only
// those. Each scenario's summary goes to ci/reports/summary.txt and its
// assertions to ci/reports/scenarios.xml (JUnit); the logs of every
// container of a failed scenario are kept under ci/logs/SCENARIO/.
package suite
