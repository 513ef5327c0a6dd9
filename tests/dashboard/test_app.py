"""The Dash app through its HTTP interface (what the browser calls), without a browser."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from dashboards.app import create_app
from dashboards.data import Mlflow, Source
from i1lab.registry import Registry
from i1lab.registry.readonly import open_registry
from tests.dashboard.synthetic import Built, file_state

PLAIN = "adapter_size"


@pytest.fixture
def client(dash_home: Path) -> FlaskClient:
    return create_app().server.test_client()


def post_callback(
    client: FlaskClient, output: str, inputs: dict[str, Any], state: dict[str, Any] | None = None
) -> Any:
    """Fire one callback as the browser does; returns the server's response as it is."""

    def props(values: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"id": key.split(".")[0], "property": key.split(".")[1], "value": value}
            for key, value in values.items()
        ]

    out_id, out_prop = output.split(".")
    return client.post(
        "/_dash-update-component",
        json={
            "output": output,
            "outputs": {"id": out_id, "property": out_prop},
            "inputs": props(inputs),
            "changedPropIds": [next(iter(inputs))],
            "state": props(state or {}),
        },
    )


def call(
    client: FlaskClient, output: str, inputs: dict[str, Any], state: dict[str, Any] | None = None
) -> Any:
    """Fire one callback as the browser does; returns the new value of ``output`` (``id.prop``)."""
    res = post_callback(client, output, inputs, state)
    assert res.status_code == 200, res.data[:500]
    out_id, out_prop = output.split(".")
    return res.get_json()["response"][out_id][out_prop]


def texts(component: Any) -> list[str]:
    """Every string in a serialized component tree, in document order."""
    if isinstance(component, str):
        return [component]
    if isinstance(component, list):
        return [t for c in component for t in texts(c)]
    if isinstance(component, dict):
        return texts(component.get("props", {}).get("children"))
    return []


def find(component: Any, id_: str) -> Any:
    if isinstance(component, list):
        return next((f for c in component if (f := find(c, id_)) is not None), None)
    if isinstance(component, dict):
        props = component.get("props", {})
        if props.get("id") == id_:
            return component
        return find(props.get("children"), id_)
    return None


def rows(table: Any) -> list[list[str]]:
    body = table["props"]["children"][1]["props"]["children"]
    return [[" ".join(" ".join(texts(td)).split()) for td in tr["props"]["children"]] for tr in body]


class Cells(HTMLParser):
    """The text of each cell of each body row, and the images, of an HTML table."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.head: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self._cell: list[str] | None = None
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "thead":
            self._in_head = True
        elif tag == "tr" and not self._in_head:
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            text = " ".join(" ".join(self._cell).split())
            (self.head if self._in_head else self.rows[-1]).append(text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(markup: str) -> Cells:
    cells = Cells()
    cells.feed(markup)
    return cells


def test_the_studies_page(client: FlaskClient) -> None:
    assert client.get("/").status_code == 200 and client.get("/health").status_code == 200
    page = call(client, "page.children", {"url.pathname": "/"})
    table = find(page, "studies")
    by_study = {r[0].split(" ")[0]: r for r in rows(table)}
    assert sorted(by_study) == ["adapter_seeds", "adapter_size"]
    assert by_study[PLAIN][2] == "4/4" and by_study[PLAIN][3] == "4 finished"
    assert float(by_study[PLAIN][4]) > 0  # accelerator-hours planned


def test_the_study_page_shows_table_curve_breakdown_and_samples(client: FlaskClient, built: Built) -> None:
    values = built.studies[PLAIN].values
    page = call(client, "page.children", {"url.pathname": f"/study/{PLAIN}"})
    parsed = parse(find(page, "ablation-html")["props"]["data"])
    table = parsed.rows
    assert [r[0].split(" ")[0] for r in table] == built.studies[PLAIN].names
    assert parsed.head[5] == "shapes/overall exact-pixel"
    base, first = table[0], table[1]
    assert base[1:4] == ["finished", "20/20", "0.324M"]
    assert base[5] == f"{values['baseline'][20]['overall']:.4f}"
    assert first[5] == "0.6300 +0.0300 ↑" and values["adapter=transformer-1"][20]["overall"] == 0.63
    assert find(page, "ablation") is not None  # the slot the browser fills

    curve = find(page, "curve")["props"]["figure"]
    assert [t["name"] for t in curve["data"]] == built.studies[PLAIN].names
    assert curve["data"][1]["y"] == [values["adapter=transformer-1"][s]["overall"] for s in (10, 20)]
    bars = find(page, "breakdown")["props"]["figure"]
    assert len(bars["data"]) == 4 and len(bars["data"][0]["x"]) == 8
    samples = parse(find(page, "samples-html")["props"]["data"])
    assert [r[0] for r in samples.rows] == built.studies[PLAIN].prompts
    assert len(samples.images) == 3 * 4 * 2  # prompts x variants x images per prompt
    assert all(
        img["loading"] == "lazy" and (img["src"] or "").startswith("/images/") for img in samples.images
    )


def test_the_seed_noise_band_is_shown(client: FlaskClient) -> None:
    page = call(client, "page.children", {"url.pathname": "/study/adapter_seeds"})
    markup = find(page, "ablation-html")["props"]["data"]
    rows = {r[0].split(" ")[0]: r for r in parse(markup).rows}
    band = f"±{2 * 0.03 / 2**0.5:.4f}"
    assert rows["adapter=transformer-1#seed=0"][5] == f"0.6300 +0.0300 ↑ {band}"
    assert 'class="delta up noise"' in markup and 'class="delta up"' in markup
    assert "within noise" in markup and "outside noise" in markup
    assert "seed-noise band" in markup


def test_the_controls_update_their_part(client: FlaskClient, built: Built) -> None:
    values = built.studies[PLAIN].values
    state = {"study-name.data": PLAIN}
    at10 = parse(call(client, "ablation-html.data", {"table-step.value": 10, "table-all.value": []}, state))
    assert at10.rows[1][5] == f"{values['adapter=transformer-1'][10]['overall']:.4f} +0.0300 ↑"
    every = call(
        client, "ablation-html.data", {"table-step.value": "latest", "table-all.value": ["all"]}, state
    )
    assert len(parse(every).head) == 6 + 8

    fig = call(
        client,
        "curve.figure",
        {"runs.value": ["adapter=transformer-2"], "curve-metric.value": "shapes/tag/colors@exact-pixel"},
        state,
    )
    assert [t["name"] for t in fig["data"]] == ["adapter=transformer-2"]
    assert fig["data"][0]["y"] == [values["adapter=transformer-2"][s]["tag/colors"] for s in (10, 20)]

    bars = call(
        client,
        "breakdown.figure",
        {"breakdown-bench.value": "shapes", "runs.value": ["baseline"], "table-step.value": 10},
        state,
    )
    assert dict(zip(bars["data"][0]["x"], bars["data"][0]["y"], strict=True)) == values["baseline"][10]

    grid = call(
        client,
        "samples-html.data",
        {"sample-bench.value": "shapes", "sample-step.value": 10, "runs.value": ["baseline"]},
        state,
    )
    assert "shapes at step 10" in grid and len(parse(grid).images) == 3 * 2
    none = call(
        client,
        "samples-html.data",
        {"sample-bench.value": "dpg", "sample-step.value": "latest", "runs.value": ["baseline"]},
        state,
    )
    assert "No dpg images of these runs on this machine." in none


def test_images_are_served_from_the_runs_folders_only(client: FlaskClient, built: Built) -> None:
    study = built.studies[PLAIN]
    run = study.run_ids["adapter=transformer-1"]
    res = client.get(f"/images/{run}/shapes/20/1-0.png")
    assert res.status_code == 200 and res.mimetype == "image/png"
    expected = Path(study.workdirs["adapter=transformer-1"])
    assert res.data == next(expected.glob("eval/*/shapes/step_0000020/00001/samples/00000.png")).read_bytes()
    assert client.get(f"/images/{run}/shapes/20/grid.png").status_code == 200
    for bad in ("shapes/20/7-0.png", "shapes/99/0-0.png", "shapes/20/0-0.jpg", "..%2E/20/grid.png"):
        assert client.get(f"/images/{run}/{bad}").status_code == 404, bad
    assert client.get("/images/424242/shapes/20/0-0.png").status_code == 404
    # a path that leaves the image route is the app's page (Dash routes pages in the browser), never a file
    for outside in ("shapes/20/../../../../registry.db", "..%2F..%2F..%2Fregistry.db/20/grid.png"):
        res = client.get(f"/images/{run}/{outside}")
        assert res.mimetype == "text/html" and b"SQLite" not in res.data, outside


def test_errors_are_pages(client: FlaskClient) -> None:
    missing = call(client, "page.children", {"url.pathname": "/study/nope"})
    assert "no study named 'nope'" in " ".join(texts(missing))
    assert "no page at /elsewhere" in " ".join(
        texts(call(client, "page.children", {"url.pathname": "/elsewhere"}))
    )


def test_the_app_starts_before_the_registry_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I1LAB_HOME", str(tmp_path / "later"))
    client = create_app().server.test_client()
    page = call(client, "page.children", {"url.pathname": "/"})
    assert "no registry at" in " ".join(texts(page))
    assert not (tmp_path / "later").exists()
    Registry().engine.dispose()  # a study runs: the registry appears
    assert "no study yet" in " ".join(texts(call(client, "page.children", {"url.pathname": "/"})))


def test_browsing_never_writes(dash_home: Path, built: Built) -> None:
    db = dash_home / "registry.db"
    before = file_state(db)
    source = Source(open_registry(), Mlflow(tracking_uri=f"sqlite:///{dash_home / 'mlflow.db'}"))
    client = create_app(source).server.test_client()
    for path in ("/", f"/study/{PLAIN}", "/study/adapter_seeds"):
        call(client, "page.children", {"url.pathname": path})
    state = {"study-name.data": PLAIN}
    call(client, "ablation-html.data", {"table-step.value": 10, "table-all.value": ["all"]}, state)
    run = built.studies[PLAIN].run_ids["baseline"]
    assert client.get(f"/images/{run}/shapes/10/0-0.png").status_code == 200
    assert file_state(db) == before
    assert not (dash_home / "mlflow.db").exists()


def test_cells_show_the_direction_of_a_delta_and_its_band() -> None:
    from dashboards.app import cell_html
    from i1lab.report.tables import Cell

    down = parse(f"<table><tr>{cell_html(Cell(value=0.5, delta=-0.125, step=10))}</tr></table>")
    assert down.rows == [["0.5000 -0.1250 ↓"]]
    assert 'class="delta down"' in cell_html(Cell(value=0.5, delta=-0.125, step=10))
    flat = cell_html(Cell(value=0.5, delta=0.0, step=10))
    assert "+0.0000 =" in flat and 'class="delta flat"' in flat
    noisy = cell_html(Cell(value=0.5, delta=0.01, step=10, sigma=0.02, noise=True))
    assert 'class="delta up noise"' in noisy and "±0.0400" in noisy and "within noise" in noisy
    assert "—" in cell_html(Cell(value=None, delta=None, step=None))
