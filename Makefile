# GPU telemetry pipeline — developer entry points. `make help` lists them.
# Needs only Go and the PostgreSQL server package: when DATABASE_URL is unset,
# tests and `make run` start a private cluster in .local/pg (as an
# unprivileged user when run as root).

GO        ?= go
APPS      := mqwriter mqreader collector streamer apigw migrate pipeline natsd partition-controller fake-dcgm-exporter
BIN       := bin
DEVDB     := $(GO) run ./test/devdb
SWAG      := $(GO) run github.com/swaggo/swag/cmd/swag@v1.16.6
# Most tests wait on PostgreSQL, sockets, timers or child processes, not on
# the CPU: with go's defaults (-p and -parallel = cores) a 2-core machine
# sat 40 % idle through `make test`. -p 4 -parallel 8 took it from 242 s to
# 191 s there (warm caches). The extra load finds tests that assume an idle
# machine (eight were found and fixed, issue 12); a test should await its
# condition, so a busier machine makes it slower, not wrong.
TEST_FLAGS ?= -race -count=1 -timeout 20m -p 4 -parallel 8
COVER_PKGS := ./domain/...,./ports/...,./internal/...,./adapters/...,./apps/...,./migrations/...

.DEFAULT_GOAL := help
include deployments/k8s.mk

.PHONY: help build test cover lint fmt run swagger ui-vendor test-ui migrate-up migrate-down bench bench-micro bench-api test-faults test-faults helm-lint test-k8s test-alerts db-start db-stop clean

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build every app into ./bin
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./apps/,$(APPS))

# with_devdb runs the shell command $(1) against a real PostgreSQL:
# DATABASE_URL when set, else the local cluster, which the command starts
# when it is not running. A cluster the command started is stopped afterwards;
# one already running (make db-start, make run) keeps running.
define with_devdb
started=0; \
if [ -z "$$DATABASE_URL" ] && ! $(DEVDB) url >/dev/null 2>&1; then started=1; fi; \
$(1); rc=$$?; \
if [ $$started = 1 ]; then $(DEVDB) stop; fi; \
exit $$rc
endef

test: ## unit, contract, integration and end-to-end tests (race detector on) with coverage
	@$(call with_devdb,$(GO) test $(TEST_FLAGS) -covermode=atomic -coverpkg=$(COVER_PKGS) -coverprofile=coverage.out ./...)

cover: ## print total coverage (runs the tests when coverage.out is missing)
	@[ -f coverage.out ] || $(MAKE) test
	@$(GO) tool cover -func=coverage.out | tail -1

lint: ## go vet, gofmt, the no-mutex rule, dependency direction
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@if grep -rnE 'sync\.(RW)?Mutex' --include='*.go' --exclude-dir=.local . ; then echo "sync.Mutex/RWMutex is not allowed (SPEC §4): use an owner goroutine"; exit 1; fi
	$(GO) test -count=1 ./test/archtest/

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

run: build ## run the whole pipeline locally on the shipped CSV, or STREAMER_SOURCE=scrape (SCRAPE_TARGETS, else fake exporters); Ctrl-C stops everything
	@$(GO) build -o $(BIN)/devrun ./test/devrun
	@exec $(BIN)/devrun -bin $(BIN)

swagger: ## regenerate the OpenAPI spec in docs/ from the handlers' annotations
	$(SWAG) init -g doc.go -d adapters/httpapi -o docs --outputTypes go,json,yaml --parseInternal

# ui-vendor re-fetches the dashboard's charting library from the npm registry
# (the only step that needs npm; the result is committed).
UPLOT_VERSION ?= 1.6.32
UI_VENDOR     := adapters/httpapi/ui/vendor
ui-vendor: ## re-fetch the dashboard's vendored uPlot from npm (UPLOT_VERSION=1.6.32) and print the sha256 for ui/vendor/README.md
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	(cd "$$tmp" && npm pack --silent uplot@$(UPLOT_VERSION) >/dev/null && tar xzf uplot-$(UPLOT_VERSION).tgz) && \
	cp "$$tmp/package/dist/uPlot.iife.min.js" "$$tmp/package/dist/uPlot.min.css" $(UI_VENDOR)/ && \
	cp "$$tmp/package/LICENSE" $(UI_VENDOR)/uPlot.LICENSE && \
	cd $(UI_VENDOR) && sha256sum uPlot.iife.min.js uPlot.min.css uPlot.LICENSE

# test-ui drives the dashboard in Debian's headless chromium against a real
# pipeline on the shipped CSV; screenshots go to .local/ui/.
test-ui: ## browser tests of the dashboard (needs /usr/bin/chromium); screenshots in .local/ui/
	@$(call with_devdb,$(GO) test -tags ui -count=1 -timeout 15m -v ./test/ui/)

db-start: ## start the local PostgreSQL (.local/pg) and print its URL
	@$(DEVDB) start

db-stop: ## stop the local PostgreSQL
	@$(DEVDB) stop

migrate-up: build ## apply migrations (DATABASE_URL, or the local cluster)
	@url=$${DATABASE_URL:-$$($(DEVDB) start)}; DATABASE_URL=$$url $(BIN)/migrate up

migrate-down: build ## revert the newest migration (STEPS=n for more, STEPS=0 for all)
	@url=$${DATABASE_URL:-$$($(DEVDB) start)}; DATABASE_URL=$$url $(BIN)/migrate down $${STEPS:-1}

bench: ## end-to-end benchmark: database floor, PostgreSQL-queue and NATS pipelines, scaling, latency; writes bench-results.json (BENCH_FLAGS=-h lists flags)
	$(GO) run ./test/bench $(BENCH_FLAGS)

bench-micro: ## Go benchmarks of every queue and store adapter on the shared workloads, and of the per-message checks in domain
	@$(call with_devdb,$(GO) test -run '^$$' -bench . -benchtime 2s -count 1 ./domain/ ./adapters/...)

bench-api: ## API latency on 10,000,000 telemetry rows (loaded once into database benchapi, reused after); writes bench-api-results.json (BENCH_API_FLAGS=-h lists flags)
	@$(call with_devdb,$(GO) run ./test/benchapi -reuse $(BENCH_API_FLAGS))

# The suite's -v output runs to thousands of lines and CI keeps only its end:
# on a failure the blocks of the failed tests (their logs and failure
# messages, up to 60 lines each) are printed again last. The whole output
# stays in .local/test-faults.log.
test-faults: ## fault-injection and hostile-input suite on its own PostgreSQL (FAULTS_SOAK=30s for a quick run)
	@mkdir -p .local; \
	{ $(GO) test -tags faults -count=1 -timeout 25m -v ./test/faults/; echo $$? > .local/test-faults.rc; } 2>&1 | tee .local/test-faults.log; \
	rc=$$(cat .local/test-faults.rc); \
	if [ "$$rc" != 0 ]; then \
		echo "== test-faults failed (exit $$rc); the failed tests' output again (all of it: .local/test-faults.log):"; \
		awk 'FNR == NR { if ($$1 == "---" && $$2 == "FAIL:") failed[$$3] = 1; next } \
			/^=== (RUN|CONT) / { show = ($$3 in failed); n = 0; if (show) print; next } \
			show && n++ < 60' .local/test-faults.log .local/test-faults.log; \
	fi; \
	exit $$rc

# promtool comes from its own tools module (tools/promtool/go.mod: it needs
# newer Kubernetes libraries than helm in tools/go.mod); built on first use
# (about 6 min cold on 2 cores), cached after. Paths are absolute because
# `go -C` runs it from tools/promtool.
PROMTOOL ?= $(GO) -C $(CURDIR)/tools/promtool tool promtool
RULES    := $(CURDIR)/deployments/prometheus

test-alerts: ## promtool check rules + the alert rules' unit tests (deployments/prometheus)
	$(PROMTOOL) check rules --lint=all --lint-fatal $(RULES)/alerts.yaml
	$(PROMTOOL) test rules $(RULES)/alerts_test.yaml

clean: ## remove build output and the local cluster
	-$(DEVDB) stop
	rm -rf $(BIN) .local coverage.out
