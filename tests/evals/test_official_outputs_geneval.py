"""GenEval scored from the `results.jsonl` that the OFFICIAL `evaluate_images.py` wrote, and the summary
that the official `summary_scores.py` printed (tests/fixtures/official/geneval/, made by
`make_official_outputs.py`; README there). Malformed copies give one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from evals import geneval
from evals.benchdir import ENV_VAR
from evals.scoring import score_output

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "geneval"
RESULTS = FIXTURES / "results.jsonl"
PRINTED = (FIXTURES / "official_stdout.txt").read_text(encoding="utf-8")
BENCH = Path(os.environ.get(ENV_VAR) or Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks")


def i1lab_score(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "i1lab",
            "score",
            "geneval",
            str(path),
            "--benchmarks-dir",
            str(BENCH),
            *extra,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
        check=False,
    )


def test_fixture_exercises_the_official_decision() -> None:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines()]
    reasons = "\n".join(r["reason"] for r in rows)
    assert {r["tag"] for r in rows} == set(geneval.TAG_RANGES)
    assert any(r["correct"] for r in rows) and not all(r["correct"] for r in rows)
    for fragment in ("found 0", "; and ", " target, found ", "<"):  # count, colour, position, exclude
        assert fragment in reasons
    assert "\\/" in RESULTS.read_text()  # pandas' escaped slashes, as written


@pytest.mark.parametrize("source", [RESULTS, FIXTURES])
def test_score_output_prints_the_official_summary(source: Path) -> None:
    report = score_output("geneval", source, BENCH)
    assert report.printed == PRINTED  # every line, headline "Overall score (avg. over tasks): 0.54133"
    assert PRINTED.endswith("Overall score (avg. over tasks): 0.54133\n")
    assert f"{report.headline:.5f}" == "0.54133" and report.judge == "official"
    per_tag = {
        line.split("=")[0].strip(): line.split("(")[1].rstrip(")")
        for line in PRINTED.splitlines()
        if " = " in line
    }
    for tag, counts in per_tag.items():
        correct, total = (int(x) for x in counts.split(" / "))
        assert report.metrics[f"tag/{tag}"] == correct / total
    assert list(per_tag) == [k.split("/", 1)[1] for k in report.metrics if k.startswith("tag/")]


def test_cli_json_gives_the_official_headline() -> None:
    res = i1lab_score(FIXTURES, "--json")
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert (payload["benchmark"], payload["headline"], payload["judge"]) == ("geneval", "overall", "official")
    assert f"{payload['value']:.5f}" == "0.54133"
    assert abs(payload["value"] - score_output("geneval", RESULTS, BENCH).headline) <= 1e-12


def _lines() -> list[str]:
    return RESULTS.read_text(encoding="utf-8").splitlines()


def _edit(n: int, change: Callable[[dict[str, object]], None]) -> str:
    lines = _lines()
    row = json.loads(lines[n - 1])
    change(row)
    lines[n - 1] = json.dumps(row)
    return "\n".join(lines) + "\n"


def _truncated() -> str:
    lines = _lines()
    lines[2] = lines[2][: len(lines[2]) // 2]
    return "\n".join(lines) + "\n"


def _unknown_prompt(row: dict[str, object]) -> None:
    meta = json.loads(str(row["metadata"]))
    row["metadata"] = json.dumps({**meta, "prompt": "a photo of a unicorn"})


MALFORMED: dict[str, tuple[Callable[[], str], str]] = {
    "truncated line": (_truncated, ":3: not valid JSON"),
    "missing field": (lambda: _edit(4, lambda r: r.pop("correct")), ":4: correct: missing"),
    "wrong type": (lambda: _edit(5, lambda r: r.update(correct="yes")), ":5: correct: must be true or false"),
    "metadata not a string": (
        lambda: _edit(6, lambda r: r.update(metadata=json.loads(str(r["metadata"])))),
        ":6: metadata: must be a JSON string",
    ),
    "metadata cut short": (
        lambda: _edit(7, lambda r: r.update(metadata=str(r["metadata"])[:20])),
        ":7: metadata: not valid JSON",
    ),
    "unknown prompt": (lambda: _edit(8, _unknown_prompt), ":8: metadata: unknown prompt"),
    "tag not the metadata's": (lambda: _edit(9, lambda r: r.update(tag="counting")), ":9: tag:"),
    "empty file": (lambda: "", ": empty file"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_results_give_one_line_errors(case: str, tmp_path: Path) -> None:
    make, expected = MALFORMED[case]
    path = tmp_path / "results.jsonl"
    path.write_text(make(), encoding="utf-8")
    with pytest.raises(ValueError) as err:
        score_output("geneval", tmp_path, BENCH)
    message = str(err.value)
    assert message.startswith(f"{path}{expected}") and "\n" not in message
    res = i1lab_score(tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [f"error: score geneval: {message}"]
