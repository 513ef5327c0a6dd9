# The two set-up commands of the README. Both install what they need first (scripts/install.sh).
.PHONY: study test

# Train and score the tiny adapter-size study on this machine, then print its ablation table.
study:
	@bash scripts/install.sh
	.venv/bin/i1lab submit experiments/adapter_size.yaml --profile tiny
	.venv/bin/i1lab compare adapter_size

# The test suite (what CI runs), after lint, type and layering checks (lint-imports: the contracts in
# pyproject.toml, docs/architecture.md): most tests two at a time (one per core),
# then, alone, those that start clusters and servers or assert wall-clock limits (SERIAL_MODULES in
# tests/conftest.py). Both parts run even if the first fails.
test:
	@bash scripts/install.sh --test
	.venv/bin/ruff check i1lab models evals dashboards tests benchmarks
	.venv/bin/ruff format --check i1lab models evals dashboards tests benchmarks
	.venv/bin/mypy
	.venv/bin/lint-imports
	@# one XLA compilation cache for both parts: the serial part's runs reuse what the first part compiled
	cache=$$(mktemp -d "$${TMPDIR:-/tmp}/i1lab-test-xla-XXXXXX"); \
	JAX_COMPILATION_CACHE_DIR=$$cache .venv/bin/pytest -q -n 2 --dist loadfile -m "not serial"; first=$$?; \
	JAX_COMPILATION_CACHE_DIR=$$cache .venv/bin/pytest -q -m serial; second=$$?; \
	rm -rf "$$cache"; \
	exit $$(( first || second ))
