"""Benchmark: how fast the dashboard shows a 300-run study.

Builds a registry holding one finished study of 300 runs (a real plan of a 299-value learning-rate axis
over the tiny baseline, with synthetic scores at two checkpoints and sample PNGs:
``tests/dashboard/synthetic.py``),
then prints:

* ``data_cold_s`` / ``data_warm_s`` — reading everything a study page shows (summary, ablation table,
  curve, breakdown, samples) from the read-only registry, first time / cached;
* ``page_build_cold_s`` / ``page_build_warm_s`` — the server building the whole study page (the Dash
  callback, as the browser calls it);
* in headless Chromium with a browser profile (as a person's browser has), ``i1lab dashboard`` serving:
  ``table_*_s`` from navigating to the study's URL until its 300 table rows are in the page, ``page_*_s``
  until the curve and the breakdown are drawn too; ``first`` = the first visit (fresh server, empty
  browser cache), ``returning`` = the median of visits 3-6 (the browser has compiled Plotly's 3.5 MB
  script by then: that compile is most of a first visit). Skipped when Chromium or Playwright is missing.

Run: ``.venv/bin/python benchmarks/dashboard.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RUNS = 300
STUDY = "lr_sweep_300"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def study_text() -> str:
    rates = ", ".join(f"{1e-4 + i * 1e-6:.6g}" for i in range(1, RUNS))
    return (
        f"study: {STUDY}\nextends: {{experiments}}/baseline.yaml\n"
        f"description: {RUNS} learning rates (dashboard benchmark)\naxes:\n  train.lr: [{rates}]\n"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MARKS = f"""
window.__marks = {{}};
const observer = new MutationObserver(() => {{
  const t = performance.now();
  if (!window.__marks.table && document.querySelectorAll('#ablation-table tbody tr').length === {RUNS})
    window.__marks.table = t;
  if (!window.__marks.page && window.__marks.table && document.querySelector('#curve .main-svg')
      && document.querySelector('#breakdown .main-svg'))
    window.__marks.page = t;
}});
document.addEventListener('DOMContentLoaded',
  () => observer.observe(document.body, {{childList: true, subtree: true}}));
"""


def browser_times(home: Path) -> dict[str, float] | None:
    """Seconds from navigation start to the table / the whole page, first visit and returning visits."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not CHROMIUM.is_file():
        return None
    port = free_port()
    env = {**os.environ, "I1LAB_HOME": str(home)}
    log = (home / "dashboard.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "i1lab", "dashboard", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((home / "dashboard.log").read_text()[-3000:]) from None
                time.sleep(0.2)
        visits = []
        with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000},
            )
            context.add_init_script(MARKS)
            for _ in range(6):
                page = context.new_page()
                page.goto(f"{url}/study/{STUDY}")
                page.wait_for_function("() => window.__marks.page !== undefined", timeout=60_000)
                marks = page.evaluate("window.__marks")
                visits.append((marks["table"] / 1000, marks["page"] / 1000))
                page.close()
            context.close()
        return {
            "table_first_s": visits[0][0],
            "page_first_s": visits[0][1],
            "table_returning_s": statistics.median(v[0] for v in visits[2:]),
            "page_returning_s": statistics.median(v[1] for v in visits[2:]),
        }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        log.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ["I1LAB_HOME"] = str(home)
        for var in ("I1LAB_DATABASE_URL", "MLFLOW_TRACKING_URI"):
            os.environ.pop(var, None)
        from i1lab.registry import Registry
        from tests.dashboard import synthetic

        t0 = time.perf_counter()
        registry = Registry()
        built = synthetic.build(registry, study_text=study_text())
        registry.engine.dispose()
        t_build = time.perf_counter() - t0

        from dashboards.app import create_app
        from dashboards.data import Source

        def read_page(source: Source) -> None:
            page = source.study(STUDY)
            runs = page.default_runs()
            col = page.default_column()
            source.studies()
            source.table(STUDY)
            source.curve(STUDY, f"{col.benchmark}/{col.metric}@{col.judge}" if col else None, runs)
            source.breakdown(STUDY, "shapes", runs)
            source.samples(STUDY, "shapes", runs)

        source = Source.open()
        t1 = time.perf_counter()
        read_page(source)
        data_cold = time.perf_counter() - t1
        t1 = time.perf_counter()
        read_page(source)
        data_warm = time.perf_counter() - t1

        client = create_app().server.test_client()
        body = {
            "output": "page.children",
            "outputs": {"id": "page", "property": "children"},
            "inputs": [{"id": "url", "property": "pathname", "value": f"/study/{STUDY}"}],
            "changedPropIds": ["url.pathname"],
            "state": [],
        }
        builds = []
        for _ in range(4):
            t1 = time.perf_counter()
            res = client.post("/_dash-update-component", json=body)
            builds.append(time.perf_counter() - t1)
            assert res.status_code == 200 and res.data.count(b"data-run=") == RUNS
        browser = browser_times(home)
    figures = (
        f"runs={len(built.names)} build_registry_s={t_build:.1f} data_cold_s={data_cold:.3f} "
        f"data_warm_s={data_warm:.3f} page_build_cold_s={builds[0]:.3f} "
        f"page_build_warm_s={statistics.median(builds[1:]):.3f} page_kb={len(res.data) / 1024:.0f}"
    )
    if browser is None:
        figures += " browser=skipped (no Chromium/Playwright)"
    else:
        figures += " " + " ".join(f"{k}={v:.2f}" for k, v in browser.items())
    print(figures)


if __name__ == "__main__":
    main()
