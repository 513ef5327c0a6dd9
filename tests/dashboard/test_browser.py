"""The dashboard and the MLflow UI in a real browser: headless Chromium (Debian's) driven by Playwright.

A registry holding a finished tiny study (``tests/dashboard/synthetic.py``) mirrored to MLflow; ``i1lab
dashboard`` and ``i1lab mlflow-ui`` started on loopback ports; screenshots of both pages go to
``artifacts/`` (the CI artifacts, git-ignored).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dashboard import synthetic
from tests.dashboard.synthetic import file_state

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
CHROMIUM = Path(os.environ.get("I1LAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STUDY = "adapter_size"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """A server started in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            args, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
        )

    def wait_healthy(self, url: str, timeout: float) -> None:
        """Poll ``url`` until it answers 200; on timeout or exit, fail with the service's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url, timeout=2) as res:
                    if res.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        state = (
            f"exited with {self.proc.returncode}"
            if self.proc.poll() is not None
            else f"not up in {timeout:.0f} s"
        )
        tail = self.log.read_text(errors="replace")[-4000:]
        pytest.fail(f"{self.name} {state} ({url}); its log:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self._out.close()


@dataclass
class Servers:
    home: Path
    study: synthetic.SyntheticStudy
    dashboard: str
    mlflow: str
    registry_before: tuple[str, int, int]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    from i1lab.registry import Registry, tracking

    root = tmp_path_factory.mktemp("browser")
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("I1LAB_DATABASE_URL", "MLFLOW_TRACKING_URI")}
    env["I1LAB_HOME"] = str(home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("I1LAB_HOME", str(home))
        for var in ("I1LAB_DATABASE_URL", "MLFLOW_TRACKING_URI"):
            mp.delenv(var, raising=False)
        registry = Registry()
        study = synthetic.build(registry)
        tracking.sync_study(registry, study.study)
        registry.engine.dispose()
    before = file_state(home / "registry.db")
    dash_port, mlflow_port = free_port(), free_port()
    dash_url, mlflow_url = f"http://127.0.0.1:{dash_port}", f"http://127.0.0.1:{mlflow_port}"
    env["I1LAB_MLFLOW_UI_URL"] = mlflow_url
    py = [sys.executable, "-m", "i1lab"]
    started = [
        Service("i1lab dashboard", [*py, "dashboard", "--port", str(dash_port)], env, root / "dashboard.log"),
        Service("i1lab mlflow-ui", [*py, "mlflow-ui", "--port", str(mlflow_port)], env, root / "mlflow.log"),
    ]
    try:
        started[0].wait_healthy(f"{dash_url}/health", timeout=60)
        started[1].wait_healthy(f"{mlflow_url}/health", timeout=120)
        yield Servers(home, study, dash_url, mlflow_url, before)
    finally:
        for service in started:
            service.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: install it with scripts/install.sh --test (Debian chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_the_dashboard_in_a_browser(servers: Servers, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    values = servers.study.values
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(servers.dashboard + "/")
    page.locator("#studies").get_by_role("link", name=STUDY).click()  # client-side navigation
    table = page.locator("#ablation-table")
    expect(table).to_be_visible(timeout=20_000)
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(4)
    names = servers.study.names
    for i, name in enumerate(names):
        cells = [words(t) for t in rows.nth(i).locator("td").all_inner_texts()]
        assert cells[0].split(" ")[0] == name
        assert cells[1:3] == ["finished", "20/20"]
        value = values[name][20]["overall"]
        delta = value - values["baseline"][20]["overall"]
        expected = f"{value:.4f}" if name == "baseline" else f"{value:.4f} {delta:+.4f} ↑"
        assert cells[5] == expected, (name, cells)
        assert cells[6] == "run ↗"
    expect(table.locator("a[href*='/#/experiments/']")).to_have_count(4)

    # the curve: one trace per run, as Plotly drew it
    traces = page.locator("#curve .scatterlayer .trace")
    expect(traces).to_have_count(4, timeout=20_000)
    assert [words(t) for t in page.locator("#curve .legendtext").all_text_contents()] == names
    expect(page.locator("#breakdown .barlayer .trace")).to_have_count(4)
    # the same prompts across variants, every image loaded
    images = page.locator("#sample-grid img.sample")
    expect(images).to_have_count(3 * 4 * 2)
    page.locator("#sample-grid").scroll_into_view_if_needed()  # the images load lazily
    page.wait_for_function(
        "() => [...document.querySelectorAll('#sample-grid img.sample')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    for prompt in servers.study.prompts:
        expect(page.locator("#sample-grid td.prompt", has_text=prompt)).to_have_count(1)

    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # the table's header is sticky: shoot from the top
    page.screenshot(path=str(ARTIFACTS / "dashboard-study.png"), full_page=True)

    # every metric of the benchmark: 8 metric columns instead of 1
    page.get_by_label("every metric").check()
    expect(table.locator("thead th")).to_have_count(6 + 8, timeout=20_000)
    assert errors == []
    page.close()
    assert file_state(servers.home / "registry.db") == servers.registry_before


def test_the_mlflow_comparison_of_the_study(servers: Servers, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page(viewport={"width": 1600, "height": 1100})
    page.goto(f"{servers.dashboard}/study/{STUDY}")
    link = page.locator("#mlflow-compare")
    expect(link).to_be_visible(timeout=20_000)
    href = link.get_attribute("href") or ""
    assert href.startswith(f"{servers.mlflow}/#/compare-runs?runs=")
    page.goto(href)
    body = page.locator("body")
    for name in servers.study.names:  # the child runs, by name
        expect(body).to_contain_text(name, timeout=60_000)
    # a param (the flattened spec) and a metric (the shapes score), one value per run in their rows
    param = page.locator("tr", has_text="model.adapter.type").last
    expect(param).to_contain_text("mlp", timeout=30_000)
    expect(param).to_contain_text("transformer")
    metric = page.locator('a[title="Plot chart"]', has_text="shapes/overall")
    expect(metric).to_have_count(1)
    for name in servers.study.names:
        value = f"{servers.study.values[name][20]['overall']:g}"
        expect(page.locator("span", has_text=re.compile(f"^{re.escape(value)}$")).first).to_be_visible()
    metric.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "mlflow-compare.png"))
    page.close()
