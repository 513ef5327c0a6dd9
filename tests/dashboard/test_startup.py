"""What ``i1lab dashboard`` does before it serves: pages prepared, and the script a first visit loads."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from dashboards import plotly_bundle
from dashboards.app import create_app
from dashboards.data import Source
from i1lab.cli.dashboard import warm_up


def test_warm_up_builds_the_study_list_and_every_study_page_through_the_app(dash_home: Path) -> None:
    source = Source.open()
    server = create_app(source).server
    names = sorted(s.name for s in source.studies())
    assert names == ["adapter_seeds", "adapter_size"]
    assert warm_up(server, source) == 1 + len(names)  # the list, then each study
    cached = {key for key in source._cache}
    assert {("study", n) for n in names} <= cached  # read once, before any person asks
    assert warm_up(server, source, limit=1) == 2
    assert warm_up(server, source, budget_s=0.0) == 0  # out of time: nothing more is built


def test_partial_bundle_replaces_the_full_plotly_script_only_when_present(tmp_path: Path) -> None:
    full = {"relative_package_path": "package_data/plotly.min.js", "namespace": "plotly"}
    other = {"relative_package_path": "dash_core_components.js", "namespace": "dash"}
    dcc = SimpleNamespace(_js_dist=[other, full])
    assert not plotly_bundle.use_partial_bundle(dcc, tmp_path)
    assert dcc._js_dist == [other, full]  # no bundle: Dash's own full plotly.js stays
    (tmp_path / plotly_bundle.BUNDLE).write_text("window.Plotly = {};")
    assert plotly_bundle.use_partial_bundle(dcc, tmp_path)
    assert dcc._js_dist == [other]


def test_the_served_page_loads_exactly_one_plotly(dash_home: Path) -> None:
    html = create_app(Source.open()).server.test_client().get("/").get_data(as_text=True)
    basic = (plotly_bundle.ASSETS / plotly_bundle.BUNDLE).is_file()
    assert (plotly_bundle.BUNDLE in html) is basic
    assert ("plotly.min.js" in html) is not basic
