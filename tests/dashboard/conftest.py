"""Fixtures of the dashboard tests: registries holding finished studies with synthetic results.

The registry is built once per session (``tests/dashboard/synthetic.py``: real plans, synthetic scores and
PNGs) and each test gets its own copy of the database file; the sample images stay in the shared build.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # ``dashboards`` lives beside ``i1lab`` in the checkout
    sys.path.insert(0, str(REPO))

from tests.dashboard import synthetic  # noqa: E402
from tests.dashboard.synthetic import Built  # noqa: E402

SEEDS_STUDY = "study: adapter_seeds\nextends: {experiments}/adapter_size.yaml\nseeds: [0, 1]\n"


def isolate(mp: pytest.MonkeyPatch, home: Path) -> None:
    mp.setenv("I1LAB_HOME", str(home))
    for var in ("I1LAB_DATABASE_URL", "MLFLOW_TRACKING_URI", "I1LAB_MLFLOW_UI_URL"):
        mp.delenv(var, raising=False)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """adapter_size (4 runs) and adapter_seeds (the same with seeds 0 and 1: a seed-noise band)."""
    from i1lab.registry import Registry

    home = tmp_path_factory.mktemp("dashboard") / "home"
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, home)
        registry = Registry()
        plain = synthetic.build(registry)
        seeded = synthetic.build(registry, study_text=SEEDS_STUDY)
        registry.engine.dispose()
    return Built(home, {plain.study: plain, seeded.study: seeded})


@pytest.fixture
def dash_home(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the built registry as this test's I1LAB_HOME."""
    home = tmp_path / "home"
    home.mkdir()
    for suffix in ("", "-wal", "-shm"):
        src = built.home / f"registry.db{suffix}"
        if src.exists():
            shutil.copy2(src, home / src.name)
    isolate(monkeypatch, home)
    return home
