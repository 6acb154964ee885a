# Gale — build, run and test. `make run` and `make test` are the two set-up commands.
GO        ?= go
BIN       := bin/gale
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
export GOFLAGS ?= -mod=mod

.PHONY: build run test test-race test-mochi bench bench-mem images vet fmt clean fuzz

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/gale

run: build
	./$(BIN) up

# The scenario suite (./scenarios) asserts latencies and sample counts of
# whole runs, so it runs after the other packages, on a machine of its own
# rather than beside two other test binaries.
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/scenarios$$')
	$(GO) test -count=1 -timeout 20m ./scenarios

test-race:
	$(GO) test -race -count=1 -timeout 20m ./platform/... ./twins/...

# The forked mochi (third_party/README.md) is a module of its own, outside
# ./...: its tests (the storage hooks' included, which download their
# databases' modules) run here.
test-mochi:
	cd third_party/mochi && $(GO) test -race -count=1 -timeout 20m ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

# Memory per active series through the ingest path (issue 13 part 6), one
# size per process so RSS is the size's own, under the GC settings of the
# environment (GOGC, GOMEMLIMIT: a node sets them from memory.*), and TSDB
# bytes per sample on disk after compaction, a day of twin data (part 7).
# Figures in docs/benchmarks.md.
bench-mem:
	for n in 50000 200000; do \
		$(GO) test -run '^$$' -bench "SeriesMemory/series=$$n\$$" -benchtime 1x -timeout 10m ./platform/ingest/ || exit 1; \
	done
	$(GO) test -run '^$$' -bench DiskBytesPerSample -benchtime 1x -timeout 30m ./platform/tsdb/

# Every Fuzz target of the module, listed by its test binary (nothing to keep
# up to date), fuzzed for FUZZTIME each: go fuzzes one target per run, so the
# instrumented test binary of each package is built once and run per target.
# One line per target; fails if any target fails. A failing input lands in
# the package's testdata/fuzz/FuzzXxx/: fix the code and commit the input,
# and plain `go test` replays it from then on. FUZZPKGS narrows the packages
# (default: those with a test file declaring a Fuzz function), FUZZPARALLEL
# the workers (default GOMAXPROCS).
FUZZTIME     ?= 10s
FUZZPKGS     ?= $(shell find . -name '*_test.go' -not -path '*/testdata/*' -not -path './.*' | xargs grep -l '^func Fuzz' | xargs -r -n1 dirname | sort -u)
FUZZPARALLEL ?=

fuzz:
	@[ -n "$(strip $(FUZZPKGS))" ] || { echo "fuzz: no package declares a Fuzz function"; exit 1; }; \
	tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; cache=$$($(GO) env GOCACHE)/fuzz; \
	failed=0; total=0; start=$$(date +%s); \
	for pkg in $$($(GO) list $(FUZZPKGS)); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); bin=$$tmp/fuzz.test; \
		if ! $(GO) test -c -fuzz . -o $$bin $$pkg >$$tmp/log 2>&1 || ! names=$$(cd $$dir && $$bin -test.list '^Fuzz') 2>>$$tmp/log; then \
			printf 'fuzz %-4s %-48s %s\n' FAIL "$$pkg" "(build or list)"; sed 's/^/    /' $$tmp/log | tail -40; \
			failed=$$((failed + 1)); total=$$((total + 1)); continue; \
		fi; \
		for name in $$names; do \
			total=$$((total + 1)); t0=$$(date +%s); \
			if (cd $$dir && $$bin -test.run '^$$' -test.fuzz "^$$name\$$" -test.fuzztime $(FUZZTIME) -test.timeout 10m \
				-test.fuzzcachedir $$cache/$$pkg $(if $(FUZZPARALLEL),-test.parallel $(FUZZPARALLEL))) >$$tmp/log 2>&1; then \
				result=ok note=; \
			elif ! grep -q 'Failing input written to' $$tmp/log && grep -A1 -- "--- FAIL: $$name " $$tmp/log | grep -q '^    context deadline exceeded$$'; then \
				result=ok note="(go.dev/issue/75804: the -fuzztime deadline raced a worker; no failing input)"; \
			else \
				result=FAIL note=; failed=$$((failed + 1)); \
			fi; \
			printf 'fuzz %-4s %-48s %-22s %4ss %s\n' "$$result" "$$pkg" "$$name" "$$(( $$(date +%s) - t0 ))" "$$note"; \
			[ "$$result" != FAIL ] || sed "s|^|    |; s|Failing input written to |Failing input written to $$dir/|" $$tmp/log | tail -40; \
		done; \
	done; \
	echo "fuzz: $$total targets, $$failed failed, $$(( $$(date +%s) - start ))s"; \
	[ $$failed -eq 0 ]

images: build
	docker build -t gale:$(VERSION) -t gale:latest -f ci/Dockerfile .

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin data

# Container suite (ci/suite, build tag `containers`): the scenarios marked
# `runOn: [containers]` on Gale's own image, built FROM scratch by `images`,
# as a Kafka node and cloud nodes on two Docker networks of their own, with
# faults injected under load. Needs a Docker engine; pulls no image.
# GALE_SCENARIOS=a.yaml,b.yaml runs only those. JUnit reports and figures
# land in ci/reports/, the logs of a failed scenario's containers in ci/logs/.
GOTESTSUM ?= $(GO) run gotest.tools/gotestsum@v1.13.0

.PHONY: test-containers
test-containers: images
	mkdir -p ci/reports
	$(GOTESTSUM) --format testname --junitfile ci/reports/containers.xml -- \
		-tags containers -count=1 -timeout 15m ./ci/... ; \
		status=$$?; cat ci/reports/summary.txt 2>/dev/null; exit $$status
