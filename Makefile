# netdevice-plugin. Targets that touch the network stack or run the kubelet need root.
GO        ?= go
BIN       := bin
CMDS      := netdevice-plugin netdevice-hook
IMAGE     ?= ghcr.io/netdevice-plugin/netdevice-plugin:dev
GOFLAGS_STATIC := CGO_ENABLED=0

.PHONY: all build deps test unit-test lint bench e2e demo check discover clean image kind-demo

all: build

## build: static binaries in bin/
build:
	$(GOFLAGS_STATIC) $(GO) build -trimpath -o $(BIN)/ ./cmd/...

## deps: install what tests and the demo need on a fresh Debian 12 machine (idempotent)
deps:
	hack/install-deps.sh

## lint: gofmt and go vet must be clean
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/...

## unit-test: every Go test (root: real network namespaces), fuzz seed corpora included
unit-test:
	$(GO) test -count=1 ./...

## test: deps, lint, unit tests
test: deps lint unit-test

## e2e: on this machine (root): a cluster from source with the plugin installed by kubectl apply -k
##      and six scenarios (whereabouts among them), plus a standalone kubelet + containerd + runc
##      for what only it shows
e2e: deps build
	test/e2e/run.sh

## check: everything CI runs: lint, unit tests, end-to-end
check: test e2e

## demo: the seed README's demo on a cluster built from source on this machine (root): the install,
##       dummy0 on the node, its allocatable, kubectl exec test -- ip a showing dummy0 in the pod
demo: deps build
	test/e2e/run.sh demo

## discover: what this machine has and where each device lands, with the kind-dummy config
discover: build
	$(BIN)/netdevice-plugin discover --config configs/kind-dummy.yaml

## bench: benchmarks with memory numbers; whole processes on 8 PFs x 128 VFs: discover against the
## ghw floor, and the daemon (registration, link events, RSS, a minute of idle CPU)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	hack/bench-discover.sh
	hack/bench-daemon.sh

## image: container image (needs a Docker engine)
image:
	docker build -t $(IMAGE) .

## kind-demo: kind cluster + plugin + seed pod (needs Docker and kind)
kind-demo:
	deploy/kind/demo.sh

clean:
	rm -rf $(BIN)
