# spugate: `make help` lists the targets. Everything runs as root on Debian 12
# (the lab needs network namespaces, the data plane BPF and AF_XDP).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
# Under 40 minutes on 2 cores for the whole suite; a hung test fails the run.
TEST_TIMEOUT ?= 35m
# One test binary at a time: the privileged tests run gateways, generators
# and receivers in namespaces on 2 cores and count lost packets; two
# packages' labs at once would starve each other.
TESTFLAGS ?=
PKGS ?= ./...
# The release a build says it is (--version, the daemons' version calls):
# git describe, which without tags is the commit's short hash.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/spugate/spugate/internal/version.Version=$(VERSION)
# Where make build puts the binaries (and make deb its package).
BUILDDIR ?= bin

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-zA-Z_-]*:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install the Debian packages tests, demo and benchmarks need (idempotent)
	@deploy/deps.sh

.PHONY: load-tester
load-tester: deps ## Build strongSwan's load-tester plugin (not in Debian) from Debian's source package, for the IKE benchmark (idempotent, ~5 min)
	@deploy/load-tester.sh

.PHONY: build
build: ## Build every binary into bin/ (BUILDDIR)
	@mkdir -p $(BUILDDIR)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BUILDDIR)/ ./cmd/...

.PHONY: generate
generate: deps ## Regenerate what go:generate makes: the bpf2go outputs from bpf/*.c (clang 14) and the enums' String methods (stringer)
	$(GO) generate ./...

.PHONY: check-generate
check-generate: generate ## Fail if the committed generated files differ from their sources
	@git diff --exit-code --stat || { echo "generated files are stale: run 'make generate' and commit them" >&2; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all)" || { git status --short; echo "make generate left uncommitted files" >&2; exit 1; }

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

.PHONY: test
test: deps load-tester ## Every test: unit, privileged (root) and interop with strongSwan (strongSwan's load-tester built once, for the IKE scenario's test), then the unit tests under the race detector
	$(GO) test -json -count=1 -p 1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) $(PKGS) 2>&1 | $(GO) run ./internal/testreport
	$(MAKE) --no-print-directory test-race

.PHONY: test-race
test-race: ## The unit tests under the race detector (lock-free rings, atomics, the SPUs' goroutines)
	$(GO) test -json -race -count=1 -skip '^TestPrivileged' $(TESTFLAGS) $(PKGS) 2>&1 | $(GO) run ./internal/testreport

.PHONY: test-unit
test-unit: ## Unit tests only: no privilege, no packages to install
	$(GO) test -json -count=1 -skip '^TestPrivileged' $(TESTFLAGS) $(PKGS) 2>&1 | $(GO) run ./internal/testreport

.PHONY: test-privileged
test-privileged: deps load-tester ## Only the privileged tests (lab, BPF, AF_XDP, interop)
	$(GO) test -json -count=1 -p 1 -timeout $(TEST_TIMEOUT) -run '^TestPrivileged' $(TESTFLAGS) $(PKGS) 2>&1 | $(GO) run ./internal/testreport

.PHONY: fuzz
FUZZTIME ?= 60s
fuzz: deps ## Run every Fuzz target for FUZZTIME each (60s); a crasher is saved under the package's testdata/fuzz and fails the run
	@bash internal/fuzz.sh "$(GO)" "$(FUZZTIME)"

.PHONY: bench-smoke
bench-smoke: ## Run every go benchmark once, so none rots
	$(GO) test -run '^$$' -bench . -benchtime=1x $(PKGS) >/dev/null

# AUTH=psk (default), cert (certificates from a lab CA made with spuctl pki;
# CERTKEY=ecdsa-p256, rsa3072, rsa4096, ed25519...) or static (manual keys).
AUTH ?= psk
CERTKEY ?= ecdsa-p256

.PHONY: demo
demo: deps build ## Build, make the two-gateway lab, bring tunnels up, send traffic, summarise (AUTH=psk|cert|static)
	SPUGATE_BIN=$(CURDIR)/bin bin/spudemo -auth=$(AUTH) -cert-key=$(CERTKEY) $(DEMOFLAGS)

.PHONY: bench
bench: deps build load-tester ## The standard benchmark set (bench/), results under bench/results/
	@if [ -x bin/spubench ]; then bin/spubench; else echo "make bench: bench/ has no harness yet (issue 9)"; exit 1; fi

# make install: PREFIX for the programs, units, man pages and examples,
# SYSCONFDIR for /etc/spugate, DESTDIR to stage the tree elsewhere (make deb).
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR ?=
SBINDIR = $(PREFIX)/sbin
UNITDIR = $(PREFIX)/lib/systemd/system
MANDIR = $(PREFIX)/share/man
DOCDIR = $(PREFIX)/share/doc/spugate
DAEMONS = spud iked spuctl

.PHONY: install
install: build ## Install spud, iked, spuctl, their systemd units, man pages and example configs under PREFIX (/usr/local) and DESTDIR
	install -d -m 0755 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR)/examples
	install -d -m 0700 $(DESTDIR)$(SYSCONFDIR)/spugate
	install -m 0755 $(addprefix $(BUILDDIR)/,$(DAEMONS)) $(DESTDIR)$(SBINDIR)/
	for u in deploy/systemd/*.service; do \
		sed -e 's#/usr/sbin/#$(SBINDIR)/#g' -e 's#/etc/spugate/#$(SYSCONFDIR)/spugate/#g' $$u > $(DESTDIR)$(UNITDIR)/$$(basename $$u); \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$(basename $$u); \
	done
	install -m 0644 docs/man/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 docs/man/*.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 deploy/examples/* $(DESTDIR)$(DOCDIR)/examples/
	install -m 0644 LICENSE $(DESTDIR)$(DOCDIR)/
	for f in deploy/etc/*; do \
		[ -e $(DESTDIR)$(SYSCONFDIR)/spugate/$$(basename $$f) ] || install -m 0600 $$f $(DESTDIR)$(SYSCONFDIR)/spugate/; \
	done

DEB_ARCH ?= $(shell $(GO) env GOARCH)

.PHONY: deb
deb: ## Build the Debian package (nfpm) into bin/: the make install tree under /usr, /etc/spugate's files as conffiles
	rm -rf $(BUILDDIR)/deb-root
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(BUILDDIR))/deb-root PREFIX=/usr SYSCONFDIR=/etc
	$(GO) run ./deploy/mkdeb -root $(BUILDDIR)/deb-root -version "$(VERSION)" -arch $(DEB_ARCH) -license LICENSE -out $(BUILDDIR)/

.PHONY: clean
clean: ## Remove bin/
	rm -rf bin
