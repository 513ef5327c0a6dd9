"""PRISM-Bench scored from the record files that the OFFICIAL `eval_qwen25.py` wrote, and the report it
printed (tests/fixtures/official/prism/, made by `make_official_outputs.py`; README there). Files the
official evaluator cannot have written give one-line errors; records it writes and its summary drops
(no score, a string score, a list) are dropped exactly as it drops them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from evals import prism
from evals.benchdir import ENV_VAR
from evals.scoring import score_output
from tests.evals import official_cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "prism"
SCORE = FIXTURES / "score"
SUMMARY = (SCORE / "evaluation_summary.txt").read_text(encoding="utf-8")
STDOUT = (FIXTURES / "official_stdout.txt").read_text(encoding="utf-8")
HEADLINE = "(5) FINAL COMBINED AVERAGE SCORE: 4.93"
BENCH = Path(os.environ.get(ENV_VAR) or Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks")


def i1lab_score(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return official_cli.i1lab_score("prism", path, *extra)


def test_fixture_exercises_the_official_parse() -> None:
    values = [json.loads(p.read_text()) for p in sorted(SCORE.glob("*/*/*.jsonl"))]
    scores = [v.get("score") for v in values if isinstance(v, dict)]
    assert (
        any(isinstance(s, float) for s in scores)
        and True in scores
        and any(isinstance(s, str) for s in scores)
    )
    assert any(isinstance(v, list) for v in values) and any(
        isinstance(v, dict) and "score" not in v for v in values
    )
    for printed in (
        "Standard JSON parsing failed",
        "Skipping saving due to empty model response",
        "Warning:",
    ):
        assert printed in STDOUT
    assert "\n\n" + SUMMARY + "\n" in STDOUT and HEADLINE in SUMMARY


@pytest.mark.parametrize("source", [FIXTURES, SCORE])
def test_score_output_prints_the_official_report(source: Path) -> None:
    report = score_output("prism", source, BENCH)
    assert report.printed == SUMMARY + "\n"  # every line, the headline included
    assert f"(5) FINAL COMBINED AVERAGE SCORE: {report.headline:.2f}" == HEADLINE
    assert report.judge == "official"
    summary = prism.summarize(prism.read_judge_dir(SCORE))
    assert summary.dropped and not summary.fatal  # one official "Warning:" line each
    assert STDOUT.count("Warning: 'score' key not found or invalid") == len(summary.dropped)


def test_cli_json_gives_the_official_headline() -> None:
    res = i1lab_score(FIXTURES, "--json")
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert (payload["benchmark"], payload["headline"]) == ("prism", "final_combined_average")
    assert f"(5) FINAL COMBINED AVERAGE SCORE: {payload['value']:.2f}" == HEADLINE
    assert abs(payload["value"] - score_output("prism", SCORE, BENCH).headline) <= 1e-12


def _truncate(root: Path) -> tuple[Path, str]:
    path = root / "alignment" / "entity" / "2.jsonl"
    path.write_text(path.read_text()[:30])
    return path, ":2: not valid JSON"


def _empty(root: Path) -> tuple[Path, str]:
    path = root / "aesthetic" / "style" / "2.jsonl"
    path.write_text("")
    return path, ":1: empty file"


def _bare_number(root: Path) -> tuple[Path, str]:
    path = root / "alignment" / "composition" / "0.jsonl"
    path.write_text("7")
    return path, ":1: score: the record is a int, not an object"


def _unknown_index(root: Path) -> tuple[Path, str]:
    path = root / "alignment" / "entity" / "100.jsonl"
    path.write_text(json.dumps({"justification": "x", "score": 3}))
    return path, ": unknown record id"


def _unknown_category(root: Path) -> tuple[Path, str]:
    path = root / "aesthetic" / "landscape" / "0.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({"justification": "x", "score": 3}))
    return path, ": unknown record id"


MALFORMED: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "truncated record": _truncate,
    "empty record": _empty,
    "record of the wrong type": _bare_number,
    "unknown index": _unknown_index,
    "unknown category": _unknown_category,
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_record_files_give_one_line_errors(case: str, tmp_path: Path) -> None:
    root = tmp_path / "score"
    shutil.copytree(SCORE, root)
    path, expected = MALFORMED[case](root)
    with pytest.raises(ValueError) as err:
        score_output("prism", tmp_path, BENCH)
    message = str(err.value)
    assert message.startswith(f"{path}{expected}") and "\n" not in message
    res = i1lab_score(tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [f"error: score prism: {message}"]


def test_records_the_official_summary_drops_are_dropped_not_errors(tmp_path: Path) -> None:
    root = tmp_path / "score"
    shutil.copytree(SCORE, root)
    before = score_output("prism", tmp_path, BENCH).metrics
    (root / "alignment" / "imagination" / "0.jsonl").write_text(json.dumps({"justification": "no score"}))
    after = score_output("prism", tmp_path, BENCH).metrics
    assert after["alignment/imagination"] != before["alignment/imagination"]
    assert after["overall_alignment"] != before["overall_alignment"]


def _replies(tmp_path: Path) -> Path:
    """The fixture's records as i1lab raw-reply lines (each record, re-serialised, is a valid reply)."""
    rows = []
    for path in sorted(SCORE.glob("*/*/*.jsonl")):
        eval_type, category = path.parts[-3], path.parts[-2]
        reply = path.read_text()
        rows.append((eval_type, category, int(path.stem), reply, "official"))
    return prism.write_replies(rows, tmp_path / "replies.jsonl")


def test_raw_replies_of_the_same_records_give_the_same_report(tmp_path: Path) -> None:
    report = score_output("prism", _replies(tmp_path), BENCH)
    assert report.printed == SUMMARY + "\n"


REPLY_CASES: dict[str, tuple[Callable[[dict[str, object]], object], str]] = {
    "missing field": (lambda r: r.pop("reply"), ":3: reply: missing"),
    "wrong type": (lambda r: r.update(index="2"), ":3: index: must be an integer"),
    "unknown category": (lambda r: r.update(category="landscape"), ":3: category: unknown"),
    "unknown index": (lambda r: r.update(index=100), ":3: index: 100 is not a prompt"),
}


@pytest.mark.parametrize("case", [*REPLY_CASES, "truncated line", "empty file"])
def test_malformed_reply_lines_give_one_line_errors(case: str, tmp_path: Path) -> None:
    path = _replies(tmp_path)
    lines = path.read_text().splitlines()
    if case == "truncated line":
        lines[2], expected = lines[2][:25], ":3: not valid JSON"
    elif case == "empty file":
        lines, expected = [], ": empty file"
    else:
        change, expected = REPLY_CASES[case]
        row = json.loads(lines[2])
        change(row)
        lines[2] = json.dumps(row)
    path.write_text("".join(line + "\n" for line in lines))
    with pytest.raises(ValueError) as err:
        score_output("prism", path, BENCH)
    message = str(err.value)
    assert message.startswith(f"{path}{expected}") and "\n" not in message
