"""DPG-Bench scored from the files that the OFFICIAL `compute_dpg_bench.py` wrote (per-image
`dpg-bench_*_results.txt` with its report, per-answer `*_results_detail.txt`) on the question table
`dpg_bench.csv` next to them (tests/fixtures/official/dpg/, made by `make_official_outputs.py`; README
there). Malformed copies give one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from evals import dpg
from evals.benchdir import ENV_VAR
from evals.scoring import score_output
from tests.evals import official_cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "dpg"
RESULTS = next(FIXTURES.glob("dpg-bench_*_results.txt"))
DETAIL = next(FIXTURES.glob("dpg-bench_*_results_detail.txt"))
STDOUT = (FIXTURES / "official_stdout.txt").read_text(encoding="utf-8")
HEADLINE = "DPG-Bench score: 34.464285714285715"
BENCH = Path(os.environ.get(ENV_VAR) or Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks")


def i1lab_score(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return official_cli.i1lab_score("dpg", path, *extra)


def printed_values() -> dict[str, float]:
    """The numbers the official script printed (stdout), by metric name."""
    values, section = {}, ""
    for line in STDOUT.splitlines():
        if line.endswith("category scores:"):
            section = line[:2]
        elif line.startswith("\t"):
            name, value = line[1:].rsplit(": ", 1)
            values[f"{section}/{name}"] = float(value)
        elif line.startswith("DPG-Bench score: "):
            values["dpg_score"] = float(line.split(": ")[1])
    return values


def test_fixture_exercises_the_official_logic() -> None:
    assert HEADLINE in STDOUT.splitlines()
    assert "Failed filename: countbench4.png 1" in STDOUT  # depends on the skipped first CSV row
    answers = {line.rsplit(", ", 1)[1] for line in DETAIL.read_text().splitlines()}
    assert {"yes", "no", "Yes", "yes.", " yes"} <= answers


@pytest.mark.parametrize("source", [FIXTURES, RESULTS])
def test_score_output_gives_the_printed_numbers(source: Path) -> None:
    report = score_output("dpg", source, BENCH)
    assert f"DPG-Bench score: {report.headline}" == HEADLINE and report.judge == "official"
    assert report.metrics == printed_values()  # raw floats: the official repr, exactly
    assert report.printed in STDOUT.replace("Model: processed\n", "")


def test_i1lab_aggregation_of_the_official_answers_gives_the_official_numbers() -> None:
    questions = dpg.load_questions(FIXTURES / "dpg_bench.csv")
    names, answers = dpg.read_detail_txt(DETAIL, questions)
    summary = dpg.summarize(questions, answers, names)
    assert [name for name, _ in summary.failed] == ["processed/countbench4.png"]
    official = printed_values()
    assert abs(summary.headline - official["dpg_score"]) <= 1e-12
    assert summary.metrics().keys() == official.keys()
    for name, value in summary.metrics().items():
        assert abs(value - official[name]) <= 1e-12, name
    per_image = {
        line.split(", ")[0]: float(line.rsplit(", ", 1)[1]) for line in RESULTS.read_text().splitlines()[:5]
    }
    assert {r.filename: r.score for r in summary.images} == per_image


def test_cli_json_gives_the_official_headline() -> None:
    res = i1lab_score(FIXTURES, "--json")
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert (payload["benchmark"], payload["headline"], payload["judge"]) == ("dpg", "dpg_score", "official")
    assert f"DPG-Bench score: {payload['value']}" == HEADLINE


def _replace(n: int, old: str, new: str) -> Callable[[list[str]], None]:
    def edit(lines: list[str]) -> None:
        assert old in lines[n - 1]
        lines[n - 1] = lines[n - 1].replace(old, new, 1)

    return edit


def _cut_report(lines: list[str]) -> None:
    del lines[-1]


def _empty(lines: list[str]) -> None:
    lines.clear()


RESULTS_CASES: dict[str, tuple[Callable[[list[str]], None], str]] = {
    "truncated image line": (
        lambda lines: lines.__setitem__(2, lines[2].split(",")[0]),
        ":3: image line: expected",
    ),
    "image score not a number": (_replace(1, ", 0.4583333333333333", ", 0.45x"), ":1: image score: '0.45x'"),
    "image score not the mean": (_replace(3, ", 0.4375", ", 0.5"), ":3: image score: 0.5 is not the mean"),
    "unknown item id": (_replace(2, "partiprompts97", "partiprompts98"), ":2: image: unknown item id"),
    "category not a number": (_replace(10, "58.333333333333336", "n/a"), ":10: L1 category 'entity': 'n/a'"),
    "report cut short": (_cut_report, ":24: DPG-Bench score: missing"),
    "headline not the mean": (
        _replace(25, "34.464285714285715", "35.0"),
        ":25: DPG-Bench score: 35.0 is not the mean",
    ),
    "empty file": (_empty, ": empty file"),
}


@pytest.mark.parametrize("case", list(RESULTS_CASES))
def test_malformed_results_give_one_line_errors(case: str, tmp_path: Path) -> None:
    edit, expected = RESULTS_CASES[case]
    shutil.copy(FIXTURES / "dpg_bench.csv", tmp_path / "dpg_bench.csv")
    lines = RESULTS.read_text(encoding="utf-8").splitlines()
    edit(lines)
    path = tmp_path / RESULTS.name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    with pytest.raises(ValueError) as err:
        score_output("dpg", tmp_path, BENCH)
    message = str(err.value)
    assert message.startswith(f"{path}{expected}") and "\n" not in message
    res = i1lab_score(tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [f"error: score dpg: {message}"]


DETAIL_CASES: dict[str, tuple[Callable[[list[str]], None], str]] = {
    "truncated line": (lambda lines: lines.__setitem__(3, lines[3][:20]), ":4: crop: expected"),
    "unknown item id": (_replace(1, "partiprompts161", "partiprompts999"), ":1: image: unknown item id"),
    "question not the item's": (
        _replace(2, "Is the raccoon elderly?", "Is it old?"),
        ":2: question: expected",
    ),
    "empty file": (_empty, ": empty file"),
}


@pytest.mark.parametrize("case", list(DETAIL_CASES))
def test_malformed_detail_lines_give_one_line_errors(case: str, tmp_path: Path) -> None:
    edit, expected = DETAIL_CASES[case]
    lines = DETAIL.read_text(encoding="utf-8").splitlines()
    edit(lines)
    path = tmp_path / DETAIL.name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    with pytest.raises(dpg.DpgFileError) as err:
        dpg.read_detail_txt(path, dpg.load_questions(FIXTURES / "dpg_bench.csv"))
    message = str(err.value)
    assert message.startswith(f"{path}{expected}") and "\n" not in message
