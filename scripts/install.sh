#!/usr/bin/env bash
# Installs everything i1lab needs into .venv (idempotent): the package, its pinned dependencies
# (constraints.txt locks every transitive version), and the dev tools. Output goes to .venv/install.log
# and is shown only if something fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.i1lab-install-stamp
want=$(cat pyproject.toml constraints.txt scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/i1lab ]; then
  exit 0
fi
echo "installing i1lab and its pinned dependencies into .venv (about 2 minutes the first time)..."
[ -x .venv/bin/python ] || "$PY" -m venv .venv
log=.venv/install.log
run() {
  if ! "$@" >>"$log" 2>&1; then
    echo "install step failed: $*" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}
: >"$log"
run .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip
run .venv/bin/python -m pip install --disable-pip-version-check -c constraints.txt -e ".[dev,postgres]"
run .venv/bin/python -c "import i1lab, models, evals, jax, ray, mlflow"
echo "$want" >"$stamp"
