# walship — see README.md.
GO      ?= go
BIN     ?= bin/walship
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build test test-short fuzz bench demo lint clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags urfave_cli_no_docs -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/walship

# The whole suite: unit tests, the storage conformance suite, and the
# end-to-end tests against real PostgreSQL clusters (run as an unprivileged
# user when root). Nothing is skipped for a missing dependency: install it
# (.ci/run shows how).
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 14m ./...

# Unit tests only, no PostgreSQL.
test-short:
	$(GO) test -short -count=1 ./...

# A short run of every fuzz target.
FUZZTIME ?= 15s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# Side-by-side benchmarks against the alternatives; see BENCHMARKS.md.
bench: build
	bash bench/run

demo: build
	bash contrib/demo/demo.sh

lint:
	gofmt -l . | (! grep .)
	$(GO) vet ./...

clean:
	rm -rf bin
