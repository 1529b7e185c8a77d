# erpguard: one command surface. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
NODE_OPTIONS_JEST := --experimental-vm-modules
STAMP := node_modules/.install-stamp

.PHONY: help setup build lint fmt typecheck test test-unit tools e2e bench bench-decision bench-ca bench-webhook bench-sidecar demo clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): package.json package-lock.json
	@node -e 'const [maj,min]=process.versions.node.split(".").map(Number); if (maj<20) { console.error("erpguard needs Node.js >= 20 (found " + process.version + ")"); process.exit(1); }'
	npm ci --no-audit --no-fund
	@touch $(STAMP)

setup: $(STAMP) ## Install dependencies (npm ci)

build: $(STAMP) ## Compile TypeScript into dist/
	npx tsc -p tsconfig.build.json

typecheck: $(STAMP) ## Type-check everything, tests included
	npx tsc -p tsconfig.json --noEmit

lint: $(STAMP) ## ESLint (type-aware, dependency rule) + Prettier + type-check
	npx tsc -p tsconfig.json --noEmit
	npx eslint .
	npx prettier --check .

fmt: $(STAMP) ## Format with Prettier
	npx prettier --write .

test: build ## Unit and integration tests (jest; builds first: some tests run the compiled binaries)
	NODE_OPTIONS=$(NODE_OPTIONS_JEST) npx jest $(JEST_ARGS)

test-unit: $(STAMP) ## Unit tests only (pkg/, cmd/)
	NODE_OPTIONS=$(NODE_OPTIONS_JEST) npx jest pkg cmd $(JEST_ARGS)

tools: ## Build (or reuse) kube-apiserver, etcd, kubectl and helm for the e2e tier
	@bash hack/build-tools.sh >/dev/null

e2e: $(STAMP) ## Real-cluster suite: real kube-apiserver + etcd, kubectl, helm (builds them on first run)
	ERPGUARD_TOOLS_BIN="$$(bash hack/build-tools.sh)" ERPGUARD_E2E=1 NODE_OPTIONS=$(NODE_OPTIONS_JEST) npx jest --runInBand test/e2e $(JEST_ARGS)

bench: bench-decision bench-ca bench-webhook bench-sidecar ## Run every benchmark

bench-decision: build ## Decision engine: ns per decision at 10/1,000/10,000 rules
	node dist/bench/decision/main.js

bench-ca: build ## CA: certificates per second, SignCertificate p50/p99 over gRPC
	node dist/bench/ca/main.js

bench-webhook: build ## Admission webhook: req/s and p50/p99 at 50 and 200 concurrent
	node dist/bench/webhook/main.js

bench-sidecar: build ## Sidecar: req/s and p50/p99 through the inbound mTLS sidecar vs peers
	node dist/bench/sidecar/main.js

demo: build ## The whole system on one machine, no cluster (DEMO_ARGS=--keep-running to leave it up)
	node dist/cmd/erpguard/main.js demo $(DEMO_ARGS)

clean: ## Remove build output
	rm -rf dist coverage
