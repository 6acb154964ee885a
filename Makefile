# Gale — build, run and test. `make run` and `make test` are the two set-up commands.
GO        ?= go
BIN       := bin/gale
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
export GOFLAGS ?= -mod=mod

.PHONY: build run test test-race bench images vet fmt clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/gale

run: build
	./$(BIN) up

test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

test-race:
	$(GO) test -race -count=1 -timeout 20m ./platform/... ./twins/...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

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
