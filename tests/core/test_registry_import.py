"""``i1lab import-results``: runs trained elsewhere, comparable like ours; all lines or none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from i1lab.errors import I1labError
from i1lab.registry import PlannedMember, Registry
from i1lab.registry.importer import import_results, read_results, spec_hash
from i1lab.registry.query import runs_frame
from i1lab.registry.schema import RunRow, ScoreRow, StudyRow, StudyRunRow
from i1lab.report import tables as report


def line(name: str, spec: dict[str, Any], scores: list[tuple[str, str, float, int]], **extra: Any) -> str:
    obj = {
        "study": extra.pop("study", "paper"),
        "name": name,
        "spec": spec,
        "scores": [
            {"benchmark": b, "metric": m, "value": v, "step": st, "judge": "official"}
            for b, m, v, st in scores
        ],
        **extra,
    }
    return json.dumps(obj)


GOOD = [
    line(
        "baseline",
        {"model.adapter.type": "mlp", "train.lr": 1e-4},
        [("geneval", "overall", 0.60, 500_000)],
        baseline=True,
        params=2_000_000_000,
    ),
    line(
        "transformer",
        {"model.adapter.type": "transformer", "train.lr": 1e-4},
        [("geneval", "overall", 0.66, 500_000), ("geneval", "overall", 0.50, 250_000)],
    ),
    line(
        "lr",
        {"model": {"adapter": {"type": "mlp"}}, "train.lr": 2e-4},
        [("geneval", "overall", 0.58, 500_000)],
    ),
]


HEAD = '{"study": "s", "name": "n", "spec": {"a": 1}'
SCORE = '{"benchmark": "g", "metric": "m", '


def write(tmp_path: Path, lines: list[str], name: str = "results.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def counts(reg: Registry) -> tuple[int, ...]:
    return tuple(reg.count(t) for t in (RunRow, ScoreRow, StudyRow, StudyRunRow))


def test_imported_runs_compare_and_query_like_trained_ones(home: Path, tmp_path: Path) -> None:
    reg = Registry()
    summary = import_results(write(tmp_path, [*GOOD, ""]), reg)
    assert (summary.lines, summary.runs, summary.scores, summary.studies) == (3, 3, 4, ["paper"])
    members = reg.members("paper")
    assert [m.name for m in members] == ["baseline", "transformer", "lr"]
    for m in members:
        assert m.run.status == "imported" and m.run.imported and m.run.step == 500_000
        assert m.run.hash == spec_hash(m.run.spec)
    assert members[0].run.params == 2_000_000_000 and members[0].run.git_commit is None
    assert members[1].varied == {"model.adapter.type": "transformer"} and members[1].baseline == "baseline"
    assert members[2].run.spec == {"model": {"adapter": {"type": "mlp"}}, "train": {"lr": 2e-4}}
    table = report.ablation_table("paper", members)
    deltas = {r.name: round(r.cells[0].delta or 0.0, 6) for r in table.rows}
    assert deltas == {"baseline": 0.0, "transformer": 0.06, "lr": -0.02}
    assert table.columns[0].judge == "official"
    found = runs_frame("imported = true and train.lr = 1e-4 and score:geneval/overall > 0.65", registry=reg)
    assert list(found["name"]) == ["transformer"]
    # importing again changes nothing; the same spec written nested or dotted is the same run
    import_results(write(tmp_path, GOOD), reg)
    assert counts(reg) == (3, 4, 1, 3)
    assert (
        spec_hash({"a": {"b": 1}, "c": 2})
        == read_results(write(tmp_path, [line("x", {"c": 2, "a.b": 1}, [])]))[0].hash
    )


def test_import_joins_a_study_beside_trained_runs_and_matches_seeds(home: Path, tmp_path: Path) -> None:
    reg = Registry()
    trained = PlannedMember(
        name="baseline#seed=0",
        label="b",
        hash="f" * 64,
        is_baseline=True,
        baseline="baseline#seed=0",
        varied={},
        spec={"train": {"seed": 0}},
        total_steps=10,
    )
    reg.record_plan("seeds", [trained])
    lines = [
        line("baseline#seed=1", {"train.seed": 1}, [("g", "m", 0.5, 10)], study="seeds", baseline=True),
        line("v#seed=1", {"train.seed": 1, "x": 1}, [("g", "m", 0.6, 10)], study="seeds"),
        line("v#seed=0", {"train.seed": 0, "x": 1}, [("g", "m", 0.6, 10)], study="seeds"),
    ]
    import_results(write(tmp_path, lines), reg)
    members = {m.name: m for m in reg.members("seeds")}
    assert list(members) == ["baseline#seed=0", "baseline#seed=1", "v#seed=1", "v#seed=0"]
    assert (
        members["v#seed=1"].baseline == "baseline#seed=1"
        and members["v#seed=0"].baseline == "baseline#seed=0"
    )
    assert members["baseline#seed=0"].run.status == "queued"  # the trained member is untouched


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "each line must be a JSON object"),
        ('{"study": "s", "name": "n", "spec": {"a": 1}, "colour": 1}', "unknown key 'colour'"),
        ('{"study": "", "name": "n", "spec": {"a": 1}}', "'study' must be a non-empty string"),
        ('{"study": "s", "name": 3, "spec": {"a": 1}}', "'name' must be a non-empty string"),
        ('{"study": "s", "name": "n", "spec": {}}', "'spec' must be a non-empty object"),
        (
            '{"study": "s", "name": "n", "spec": {"a": 1, "a.b": 2}}',
            "spec key 'a.b' goes inside 'a', which is a value",
        ),
        ('{"study": "s", "name": "n", "spec": {"a..b": 1}}', "spec key 'a..b' has an empty part"),
        ('{"study": "s", "name": "n", "spec": {"a": {"b": 1}, "a.b": 2}}', "spec key 'a.b' is given twice"),
        (
            '{"study": "s", "name": "n", "spec": {"a": 1}, "baseline": "yes"}',
            "'baseline' must be true or false",
        ),
        ('{"study": "s", "name": "n", "spec": {"a": 1}, "params": -1}', "'params' must be a whole number"),
        ('{"study": "s", "name": "n", "spec": {"a": 1}, "scores": {}}', "'scores' must be a list"),
        (
            HEAD + ', "scores": [' + SCORE + '"value": NaN, "step": 1}]}',
            "not valid JSON (NaN is not a number JSON allows",
        ),
        (
            HEAD + ', "scores": [' + SCORE + '"value": "0.5", "step": 1}]}',
            "scores[0]: 'value' must be a finite number",
        ),
        (
            HEAD + ', "scores": [' + SCORE + '"value": 1e999, "step": 1}]}',
            "scores[0]: 'value' must be a finite number",
        ),
        (
            HEAD + ', "scores": [' + SCORE + '"value": 1, "step": 1.5}]}',
            "scores[0]: 'step' must be a whole number",
        ),
        (
            HEAD + ', "scores": [' + SCORE + '"value": 1}]}',
            "scores[0]: 'step' must be a whole number",
        ),
        (
            HEAD + ', "scores": [{"benchmark": "g", "value": 1, "step": 1}]}',
            "scores[0]: 'metric' must be a non-empty string",
        ),
        (
            HEAD + ', "scores": [' + SCORE + '"value": 1, "step": 1, "x": 0}]}',
            "scores[0]: unknown key 'x'",
        ),
        (
            HEAD + ', "scores": [' + SCORE + '"value": 1, "step": 1}, ' + SCORE + '"value": 2, "step": 1}]}',
            "scores[1] repeats scores[0]",
        ),
        ('{"study": "s\\u0000", "name": "n", "spec": {"a": 1}}', "'study' contains an unprintable character"),
    ],
)
def test_a_bad_line_is_one_error_naming_it_and_nothing_is_written(
    home: Path, tmp_path: Path, bad: str, message: str
) -> None:
    reg = Registry()
    before = counts(reg)
    path = write(tmp_path, [*GOOD, bad])
    with pytest.raises(I1labError) as info:
        import_results(path, reg)
    text = str(info.value)
    assert text.startswith(f"{path}:4: ") and "\n" not in text
    assert message in text, text
    assert counts(reg) == before


def test_conflicts_found_in_the_registry_roll_everything_back(home: Path, tmp_path: Path) -> None:
    reg = Registry()
    import_results(write(tmp_path, GOOD[:1]), reg)
    before = counts(reg)
    # a line repeating study/name in the file
    with pytest.raises(I1labError, match=r":3: paper/baseline is already on line 1$"):
        import_results(write(tmp_path, [GOOD[0], GOOD[1], GOOD[0]]), reg)
    # a study name already naming another run: found inside the transaction, after earlier lines were added
    clash = line("baseline", {"model.adapter.type": "other"}, [("geneval", "overall", 0.1, 1)])
    with pytest.raises(I1labError, match=r"results.jsonl:2: paper/baseline already names another run"):
        import_results(write(tmp_path, [GOOD[1], clash]), reg)
    assert counts(reg) == before
    # a spec equal to a run trained here
    trained = {"t": 1}
    reg.record_plan(
        "mine",
        [
            PlannedMember(
                name="b",
                label="b",
                hash=spec_hash(trained),
                is_baseline=True,
                baseline="b",
                varied={},
                spec=trained,
                total_steps=1,
            )
        ],
    )
    before = counts(reg)
    with pytest.raises(I1labError, match=r":2: the spec is that of run .* trained here"):
        import_results(write(tmp_path, [GOOD[2], line("t", trained, [])]), reg)
    assert counts(reg) == before


def test_cli_import_results(home: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from i1lab.cli.main import app

    ok = CliRunner().invoke(app, ["import-results", str(write(tmp_path, GOOD))])
    assert ok.exit_code == 0 and "imported 3 lines: 3 runs, 4 scores into paper" in ok.stdout, ok.output
    bad = subprocess.run(
        [sys.executable, "-m", "i1lab", "import-results", str(write(tmp_path, ["{}"], "bad.jsonl"))],
        capture_output=True,
        text=True,
        env={**os.environ, "I1LAB_HOME": str(home)},
        check=False,
    )
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        == f"error: {tmp_path / 'bad.jsonl'}:1: 'spec' must be a non-empty object of dotted keys"
    )
