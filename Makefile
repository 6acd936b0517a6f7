# Ambit — one workspace, many independently versioned modules.
#
#   make demo    the whole mesh on one machine, a scripted tour (README)
#   make test    every module's tests, plus the e2e suite when root
#
# Every target loops over the modules listed in go.work (via ambit-repo), so a
# new module is never forgotten.

SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
GO           ?= go
ROOT         := $(CURDIR)
BIN          := $(ROOT)/bin
TOOLBIN      := $(ROOT)/.bin
export PATH  := $(TOOLBIN):$(PATH)

GOTESTFLAGS  ?= -count=1 -timeout 15m
# The race detector roughly doubles test time; on by default, RACE= to drop.
RACE         ?= -race
BENCHFLAGS   ?= -run=^$$ -bench=. -benchmem -count=6 -timeout 60m

REPO          = $(TOOLBIN)/ambit-repo
MODULES       = $(shell $(REPO) modules)
IS_ROOT      := $(shell [ "$$(id -u)" = 0 ] && echo yes)

TOOLS := github.com/bufbuild/buf/cmd/buf \
         google.golang.org/protobuf/cmd/protoc-gen-go \
         google.golang.org/grpc/cmd/protoc-gen-go-grpc \
         github.com/cilium/ebpf/cmd/bpf2go \
         honnef.co/go/tools/cmd/staticcheck \
         golang.org/x/perf/cmd/benchstat

# The reference CNI plugins the local runtime chains ambit-cni after
# (versions pinned in tools/go.mod).
CNI_PLUGIN_DIR := $(TOOLBIN)/cni
CNI_PLUGINS    := github.com/containernetworking/plugins/plugins/main/bridge \
                  github.com/containernetworking/plugins/plugins/ipam/host-local \
                  github.com/containernetworking/plugins/plugins/main/loopback
export AMBIT_CNI_PLUGIN_DIR := $(CNI_PLUGIN_DIR)

.PHONY: cni-plugins all build test test-unit test-e2e generate verify bench demo clean tools repo-tool \
        fmt-check vet staticcheck tidy-check generate-check layout-check

all: build

## repo-tool: the layout helper every other target relies on.
repo-tool: $(REPO)
$(REPO): $(wildcard tools/cmd/ambit-repo/*.go) tools/go.mod versions.yaml
	@mkdir -p $(TOOLBIN)
	cd tools && GOWORK=off $(GO) build -o $(REPO) ./cmd/ambit-repo

## tools: pinned code generators and linters from tools/go.mod into .bin/.
tools: $(REPO)
	cd tools && GOWORK=off $(GO) build -o $(TOOLBIN)/ $(TOOLS)

## cni-plugins: bridge, host-local and loopback into .bin/cni/.
cni-plugins:
	@mkdir -p $(CNI_PLUGIN_DIR)
	cd tools && GOWORK=off $(GO) build -o $(CNI_PLUGIN_DIR)/ $(CNI_PLUGINS)

## build: every binary into bin/, stamped with its component version.
build: $(REPO)
	@mkdir -p $(BIN)
	@$(REPO) binaries | while read -r mod bin; do \
		echo "build $$bin ($$mod)"; \
		( cd $$mod && $(GO) build -trimpath -ldflags "$$($(REPO) ldflags $$bin)" -o $(BIN)/$$bin ./cmd/$$bin ); \
	done

## test: unit and integration tests of every module, then e2e when root.
test: test-unit
ifeq ($(IS_ROOT),yes)
test: test-e2e
endif

test-unit: $(REPO) build cni-plugins
	@$(REPO) check
	@for m in $(MODULES); do \
		echo "=== test $$m"; \
		( cd $$m && AMBIT_BIN=$(BIN) $(GO) test $(GOTESTFLAGS) $(RACE) ./... ); \
	done

## test-e2e: the end-to-end suite against the built binaries (root).
test-e2e: build cni-plugins
	@if [ -d tests/e2e ]; then \
		cd tests && AMBIT_BIN=$(BIN) $(GO) test $(GOTESTFLAGS) -tags e2e ./e2e/...; \
	else echo "test-e2e: no e2e suite yet (tests/e2e)"; fi

## generate: protobuf Go code (buf, local plugins) and eBPF objects (bpf2go).
generate: tools
	cd proto && buf generate && buf lint
	@for m in $(MODULES); do ( cd $$m && $(GO) generate ./... ); done

## verify: everything a reviewer would otherwise check by hand.
verify: layout-check fmt-check vet staticcheck tidy-check generate-check

layout-check: $(REPO)
	$(REPO) check

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet: $(REPO)
	@for m in $(MODULES); do echo "vet $$m"; ( cd $$m && $(GO) vet ./... ); done

staticcheck: tools
	@for m in $(MODULES); do echo "staticcheck $$m"; ( cd $$m && staticcheck ./... ); done

tidy-check: $(REPO)
	@for m in $(MODULES); do \
		( cd $$m && GOWORK=off $(GO) mod tidy -diff ) || { echo "go mod tidy needed in $$m"; exit 1; }; \
	done

generate-check: generate
	@git diff --exit-code -- '*.pb.go' '*_bpfel.go' '*_bpfel.o' || \
		{ echo "generated files differ from what is committed: run make generate"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- '*.pb.go' '*_bpfel.go' '*_bpfel.o'); \
	if [ -n "$$untracked" ]; then echo "generated but not committed: $$untracked"; exit 1; fi

## bench: Go benchmarks of every module; results spliced into docs/benchmarks.md.
bench: $(REPO) tools build
	@mkdir -p .bench
	@: > .bench/all.txt
	@for m in $(MODULES); do \
		echo "=== bench $$m"; \
		( cd $$m && AMBIT_BIN=$(BIN) $(GO) test $(BENCHFLAGS) ./... ) | tee .bench/$$(echo $$m | tr / _).txt; \
		cat .bench/$$(echo $$m | tr / _).txt >> .bench/all.txt; \
	done
	@{ echo '```'; benchstat .bench/all.txt; echo '```'; } > .bench/summary.md
	$(REPO) splice docs/benchmarks.md bench .bench/summary.md

## demo: the README's main command.
demo: build cni-plugins
	$(BIN)/ambitctl demo

clean:
	rm -rf $(BIN) $(TOOLBIN) .bench
