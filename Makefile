# walship — see README.md.
GO      ?= go
BIN     ?= bin/walship
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build test test-majors test-short fuzz bench demo lint clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/walship

# The whole suite: unit tests, the storage conformance suite, and the
# end-to-end tests against real PostgreSQL clusters (run as an unprivileged
# user when root). Nothing is skipped for a missing dependency: install it
# (.ci/run shows how).
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 25m ./...
	$(MAKE) test-majors

# The tests of what differs between PostgreSQL majors (archiving, wait and
# failover, tail across a segment boundary and a timeline switch, backup
# and PITR, restore --standby, a fetch standby), on every other major: the
# server binaries .ci/pg-majors installs (13, 14, 16, 17, 18). The whole
# suite runs on the default one, Debian's 15. A major not installed is a
# failure: run .ci/pg-majors install. MAJORS="13 17" narrows the run.
MAJOR_E2E   ?= ^(TestMajor.*|TestIncremental.*|TestPushArchivesEverySegment|TestWarmStandby(Smart|Fast)Failover|TestTailFailoverLosesAtMostOneInterval|TestBackup(PITR|FromStandby|AcrossTimelines|RestoreStandby)|TestRestoreSignalStandby|TestContribStandbySignalFetch)$$
MAJOR_UNITS ?= ^(TestTailPG.*|TestBackupRestoreTablespace|TestStandby)$$
MAJORS      ?=
test-majors:
	@set -e; installed=$$(.ci/pg-majors list); \
	echo "$$installed" | while read -r major bindir; do \
	  case " $(MAJORS) " in "  "|*" $$major "*) ;; *) continue ;; esac; \
	  echo "==> PostgreSQL $$major ($$bindir)"; start=$$(date +%s); \
	  WALSHIP_PG_BINDIR=$$bindir $(GO) test -count=1 -timeout 10m -run '$(MAJOR_E2E)' ./e2e || exit 1; \
	  WALSHIP_PG_BINDIR=$$bindir $(GO) test -count=1 -timeout 5m -run '$(MAJOR_UNITS)' ./backup ./shipper ./internal/pgtest || exit 1; \
	  echo "==> PostgreSQL $$major passed in $$(( $$(date +%s) - start ))s"; \
	done

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

# Side-by-side benchmarks against the alternatives, the S3 rows included
# (bench/s3.sh with at most 50 segments per pass; S3=0 skips them); see
# BENCHMARKS.md.
bench: build
	bash bench/run

# The S3 rows alone (100 segments per pass): walship on S3 (versitygw on
# loopback) beside the local backend and beside pgBackRest's S3 repository.
bench-s3: build
	bash bench/s3.sh

demo: build
	bash contrib/demo/demo.sh

lint:
	gofmt -l . | (! grep .)
	$(GO) vet ./...

clean:
	rm -rf bin
