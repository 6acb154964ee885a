// Package suite is Gale's container suite: it starts Gale's own image
// (ci/Dockerfile, FROM scratch, no image is pulled) as a `gale kafka` node and
// two `gale cloud` nodes on a Docker network of their own with
// testcontainers-go, drives QoS 1 devices against both nodes from the test
// host, injects faults (a cloud node killed, the Kafka node restarted, a
// cloud node cut off the network) and checks that every acknowledged sample
// is stored.
//
// The tests carry the build tag `containers`, so `go test ./...` skips them.
// Run them with `make test-containers`, which builds the image first
// (`make images`), or by hand:
//
//	make images && go test -tags containers -count=1 -v ./ci/...
//
// GALE_IMAGE names another image than gale:latest. Each test appends its
// figures to ci/reports/summary.txt; the logs of every container of a failed
// test are kept under ci/logs/.
package suite
