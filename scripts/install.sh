#!/usr/bin/env bash
# Installs everything i1lab needs into .venv (idempotent): the package, its pinned dependencies
# (constraints.txt locks every transitive version), and the dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.i1lab-install-stamp
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/i1lab ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,postgres]" 2>&1 \
  | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import i1lab, models, evals, jax, ray, mlflow" 
echo "$want" > "$stamp"
