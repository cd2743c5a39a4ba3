# Klaxon developer tasks. `make help` lists them.
PYTHON ?= python3
CRD_DIRS := crds charts/klaxon/crds

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: install
install: ## Install Klaxon with its test dependencies (the README's install command)
	$(PYTHON) -m pip install -e '.[test]'

.PHONY: helm
helm: ## Fetch the pinned helm binary the chart and real-cluster tests run into .tools/
	$(PYTHON) tests/support/helm_bin.py

.PHONY: generate
generate: ## Regenerate the CRDs (crds/ and the chart's copy) from the pydantic models
	$(PYTHON) -m klaxon.api.crdgen $(CRD_DIRS)

.PHONY: verify
verify: generate ## Fail when generated files differ from what is committed
	git diff --exit-code -- $(CRD_DIRS)
	@test -z "$$(git status --porcelain -- $(CRD_DIRS))" || (git status --porcelain -- $(CRD_DIRS); exit 1)

.PHONY: lint
lint: ## ruff, mypy and the import-linter architecture contracts
	ruff check .
	mypy
	lint-imports

.PHONY: test
test: ## Run the test suite (the README's test command)
	$(PYTHON) -m pytest

.PHONY: bench
bench: ## Run every benchmark with its default size (reconcile against the emulator); results go to bench/README.md by hand
	set -e; for b in bench/*.py; do \
	  case $$b in bench/reconcile.py) args=--emulated;; *) args=;; esac; \
	  echo "== $$b $$args"; PYTHONPATH=operator $(PYTHON) $$b $$args; \
	done
