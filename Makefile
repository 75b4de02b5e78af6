# meshplug — build, test, benchmark.
# Filters are the folders under filters/ that hold a main package; each builds to build/<name>.wasm.

GO        ?= go
BUILD     ?= build
FILTERS   := $(patsubst filters/%/main.go,%,$(wildcard filters/*/main.go))
WASMS     := $(patsubst %,$(BUILD)/%.wasm,$(FILTERS))
BENCHTIME ?= 1s

.PHONY: all build test bench check lint fmt clean

all: build

build: $(WASMS)

$(BUILD)/%.wasm: FORCE
	@mkdir -p $(BUILD)
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o $@ ./filters/$*
	@ls -l $@ | awk '{print "built", $$NF, $$5, "bytes"}'

FORCE:

# test: static checks, then every test natively with the race detector (the host runs
# worker VMs concurrently; tests build the .wasm modules they drive).
test: check
	$(GO) test -race -count=1 ./...

bench:
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./testenv/... ./filters/...

check lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./filters/...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BUILD)
