# meshplug — build, test, benchmark.
# Filters are the folders under filters/ that hold a main package; each builds to build/<name>.wasm
# (filters/meshplug is the bundle of the four, build/meshplug.wasm).

GO        ?= go
BUILD     ?= build
FILTERS   := $(patsubst filters/%/main.go,%,$(wildcard filters/*/main.go))
WASMS     := $(patsubst %,$(BUILD)/%.wasm,$(FILTERS))
BENCHTIME ?= 1s
# staticcheck 2026.2.2 (module v0.8.2) supports Go 1.26; `make tools` installs it.
STATICCHECK_VERSION := v0.8.2
STATICCHECK ?= $(shell command -v staticcheck || echo $$($(GO) env GOPATH)/bin/staticcheck)
# Packages that also run as wasip1 guests: vetted and staticchecked for GOOS=wasip1 too
# (//go:wasmexport functions carry per-line //lint:ignore U1000 directives).
WASIP1_PKGS := ./filters/... ./examples/... ./testenv/conformance/guest ./testenv/benchmarks/guest

.PHONY: all build run test test-istio test-deps bench check lint fmt clean tools staticcheck generate help install image release

all: build

# help: list the targets (the first line of the comment above each)
help:
	@awk '/^# [a-z-]+:/ {sub(/^# /, ""); split($$0, a, ":"); if (!seen[a[1]]++) printf "  %-12s %s\n", a[1], substr($$0, length(a[1]) + 3)}' $(MAKEFILE_LIST) | sort

# install: the meshplug CLI into $(go env GOBIN) or $(go env GOPATH)/bin, with its
# version and commit (meshplug version) from the checkout.
GIT_VERSION = $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null || echo v0.0.0-$$(git rev-parse --short=12 HEAD))$(GIT_DIRTY)
GIT_COMMIT  = $(shell git rev-parse HEAD)$(GIT_DIRTY)
GIT_DIRTY   = $(shell test -z "$$(git status --porcelain)" || echo -dirty)
VERSION_PKG := github.com/meshplug/meshplug/internal/version
install:
	$(GO) install -trimpath -ldflags "-X $(VERSION_PKG).version=$(GIT_VERSION) -X $(VERSION_PKG).commit=$(GIT_COMMIT)" ./cmd/meshplug
	@echo "installed meshplug $(GIT_VERSION) into $$(d=$$($(GO) env GOBIN); echo $${d:-$$($(GO) env GOPATH)/bin})"

# image: the controller image (static meshplug + the filters' .wasm, user 65532, no
# Docker needed) as an OCI layout in build/oci/meshplug; push it with
# `go run ./hack/release push -layout build/oci/meshplug -ref REGISTRY/REPO:TAG`.
image: build
	$(GO) run ./hack/release image -wasm-dir $(BUILD) -out $(BUILD)/oci/meshplug

# release: build/release: the image, the modules as Istio Wasm images (OCI layouts),
# digests.txt, a kustomize tree and Helm values pinning them by digest. IMAGE_REPO and
# MODULE_REPO name where they will be pushed.
IMAGE_REPO  ?= ghcr.io/meshplug/meshplug
MODULE_REPO ?= ghcr.io/meshplug/modules
release: build
	$(GO) run ./hack/release release -wasm-dir $(BUILD) -out $(BUILD)/release -image-repo $(IMAGE_REPO) -module-repo $(MODULE_REPO)

# build: every filter to build/<name>.wasm and the bundle build/meshplug.wasm, then every
# module in build/ rewritten by `meshplug compat` (internal/wasmcompat) so that it runs on
# every Envoy since 1.33 (docs/compatibility.md); the linker's untouched modules are kept
# in build/raw/. COMPAT=0 leaves the untouched modules in build/.
COMPAT ?= 1
build: $(WASMS)
ifeq ($(COMPAT),1)
	$(GO) run ./cmd/meshplug compat -i --raw-dir $(BUILD)/raw $(BUILD)/*.wasm
endif

$(BUILD)/%.wasm: FORCE
	@mkdir -p $(BUILD)
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o $@ ./filters/$*
	@ls -l $@ | awk '{print "built", $$NF, $$5, "bytes"}'

FORCE:

# run: the demo gateway (meshplug run --demo) with the freshly built filters; RUN_LISTEN
# and RUN_LIVE set the addresses of the gateway and of its live view page. The binary
# is built, then run by make itself (not under `go run`, which keeps SIGTERM to
# itself): SIGTERM to make reaches the gateway (GNU make passes it on to its
# children), as does Ctrl-C (the terminal signals the whole process group), and the
# gateway also stops if make dies (--exit-with-parent).
RUN_LISTEN ?= 127.0.0.1:8080
RUN_LIVE   ?= 127.0.0.1:8081
run: build
	$(GO) build -o $(BUILD)/meshplug ./cmd/meshplug
	$(BUILD)/meshplug run --demo --wasm-dir $(BUILD) --listen $(RUN_LISTEN) --live $(RUN_LIVE)

# test: static checks, then every test natively with the race detector (the host runs
# worker VMs concurrently; tests build the .wasm modules they drive). test-deps first
# installs what the tests run against, cached in ~/.cache/meshplug (the first time takes
# several minutes): staticcheck, redis-server + envoyproxy/ratelimit's service for the
# global rate limit test, kube-apiserver + etcd for the controller's envtest, and
# proxy-wasm-cpp-host + WAMR at three Envoy eras for testenv/cpphost (hack/cpphost.sh).
# -timeout: go test stops a package's tests after 10 minutes by default, and
# testenv/cpphost under -race took 549 s of them on a warm 2-core machine (every filter
# on three host builds, each scenario twice); 45 minutes leaves a slow CI machine room.
test: test-deps check
	KUBEBUILDER_ASSETS="$$(hack/kube-binaries.sh)" $(GO) test -race -count=1 -timeout 45m ./...

# test-istio: what the renderers write, put through Istio's own code (istiod's xDS
# generation with the fake discovery server, istio-agent's Wasm fetcher, istioctl
# analyze's analyzers) at the Istio commit istiocheck/go.mod pins. istiocheck/ is a Go
# module of its own, so that the main module does not depend on an unreleased Istio;
# not part of `make test`: its first build takes about 50 minutes on 2 busy cores (see
# istiocheck/README.md), a minute or two once the build cache has it.
test-istio:
	cd istiocheck && $(GO) vet ./... && $(GO) test -count=1 ./...

test-deps: tools
	hack/ratelimit-service.sh
	hack/kube-binaries.sh >/dev/null
	@hack/cpphost.sh >/dev/null || { [ "$$CI" != true ] && \
	  echo "test-deps: proxy-wasm-cpp-host not built (set MESHPLUG_PROXY_WASM_SRC); testenv/cpphost's tests will skip"; }

# bench: the benchmarks of docs/benchmarks.md
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./testenv/... ./filters/...

# check: gofmt, go vet and staticcheck, for the host and for wasip1
check lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet $(WASIP1_PKGS)
	@$(MAKE) --no-print-directory staticcheck

staticcheck:
	@test -x "$(STATICCHECK)" || { echo "staticcheck is not installed: run make tools"; exit 1; }
	$(STATICCHECK) ./...
	GOOS=wasip1 GOARCH=wasm $(STATICCHECK) $(WASIP1_PKGS)

# tools: install staticcheck
tools:
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# fmt: gofmt every Go file
fmt:
	gofmt -w $$(git ls-files '*.go')

# clean: remove build/
clean:
	rm -rf $(BUILD)

# generate: deepcopy functions and the TrafficPolicy CRD from the API types
# (api/v1alpha1 and the filters' config.Spec types), and the controller's RBAC from its
# +kubebuilder:rbac markers; the Helm chart gets copies of both. api/v1alpha1's tests
# fail when deploy/crds/ is stale, controller's when deploy/rbac/ or the chart's copies are.
CONTROLLER_GEN ?= $(GO) run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.21.0
generate:
	$(CONTROLLER_GEN) object paths=./api/... $(patsubst %,paths=./%,$(wildcard filters/*/config))
	$(CONTROLLER_GEN) crd:crdVersions=v1 paths=./api/... output:crd:artifacts:config=deploy/crds
	$(CONTROLLER_GEN) rbac:roleName=meshplug-controller paths=./controller/... output:rbac:artifacts:config=deploy/rbac
	cp deploy/rbac/role.yaml $(CHART)/files/rbac/role.yaml
	cp deploy/crds/meshplug.io_trafficpolicies.yaml $(CHART)/crds/
CHART := deploy/helm/meshplug
