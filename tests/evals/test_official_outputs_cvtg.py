"""CVTG-2K scored from what the OFFICIAL `unified_metrics_eval.py` read and wrote
(tests/fixtures/official/cvtg/, made by `make_official_outputs_text.py`; README there): from the
per-image PaddleOCR results and judge values, i1lab rebuilds the official `results.json` bit for bit
and prints what it printed; malformed files give one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from evals import cvtg
from evals.benchdir import benchmarks_dir
from evals.scoring import score_output
from i1lab.errors import I1labError
from i1lab.evaluation.scores import score_command
from tests.evals import official_cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "cvtg"
PER_IMAGE = FIXTURES / "per_image.jsonl"
BENCH = benchmarks_dir()
PRINTED = (FIXTURES / "stdout.txt").read_text(encoding="utf-8")
OFFICIAL = json.loads((FIXTURES / "results.json").read_text(encoding="utf-8"))


def test_per_image_rows_rebuild_the_official_results_json_exactly() -> None:
    judgements = cvtg.read_judgements(PER_IMAGE)
    summary = cvtg.summarize(judgements, cvtg.prompt_table(cvtg.load_prompts(BENCH)))
    assert cvtg.results_json(summary) == OFFICIAL  # every value, ned_word_data included
    assert cvtg.format_summary(summary) == PRINTED
    overall = OFFICIAL["overall_results"]
    assert Fraction(summary.word_accuracy) == Fraction(float(Fraction(16, 36)))
    assert (overall["correct_words"], overall["total_words"]) == (16, 36)


def test_per_image_ocr_statistics_equal_the_official_ones() -> None:
    table = cvtg.prompt_table(cvtg.load_prompts(BENCH))
    official = [
        json.loads(line) for line in (FIXTURES / "official_ocr_metrics.jsonl").read_text().splitlines()
    ]
    judgements = cvtg.read_judgements(PER_IMAGE)
    assert [j.filename for j in judgements] == [o["image"] for o in official]
    for j, o in zip(judgements, official, strict=True):
        words = cvtg.gt_words(table[(j.type, j.area)][j.index])
        assert cvtg.ocr_stats(words, j.ocr_lines, error=j.ocr_error) == (
            o["total_words"],
            o["correct_words"],
            o["ned"],
        )
    kinds = {("error" if j.ocr_error else "empty" if not j.ocr_lines else "text") for j in judgements}
    assert kinds == {"error", "empty", "text"}


@pytest.mark.parametrize("source", [FIXTURES, PER_IMAGE, FIXTURES / "results.json"])
def test_score_output_gives_the_printed_headlines(source: Path) -> None:
    report = score_output("cvtg", source, BENCH)
    assert report.printed == PRINTED and report.judge == "official"
    for key in ("word_accuracy", "ned", "clipscore", "vqascore", "aesthetic_score"):
        assert report.metrics[key] == OFFICIAL["overall_results"][key]
    assert report.headline == 16 / 36


def test_cli_json_gives_the_printed_headlines() -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "i1lab",
            "score",
            "cvtg",
            str(FIXTURES),
            "--benchmarks-dir",
            str(BENCH),
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert payload["source"].endswith("per_image.jsonl") and payload["judge"] == "official"
    names = {"word_accuracy": "Word Accuracy", "ned": "NED", "clipscore": "CLIPScore", "vqascore": "VQAScore"}
    names["aesthetic_score"] = "Aesthetic Score"
    overall = PRINTED.split("=== Overall Results ===\n", 1)[1]
    assert overall == "".join(f"{n}: {payload['metrics'][k]:.4f}\n" for k, n in names.items())
    assert payload["value"] == OFFICIAL["overall_results"]["word_accuracy"]


def _edit(row: dict[str, Any], how: str) -> dict[str, Any]:
    page = row["ocr"][0]
    if how == "missing-ocr":
        del row["ocr"]
    elif how == "ocr-type":
        row["ocr"] = "READ MORNING"
    elif how == "page-type":
        row["ocr"] = [{"text": "READ"}]
    elif how == "box":
        page[0][0] = page[0][0][:3]
    elif how == "text-type":
        page[1][1] = [7, 0.9]
    elif how == "unknown-type":
        row["image"] = "CVTG-Fancy/2/0.png"
    elif how == "unknown-area":
        row["image"] = "CVTG/7/0.png"
    elif how == "score-type":
        row["vqascore"] = "high"
    elif how == "no-image":
        del row["image"]
    return row


CASES = {
    "truncated": r":2: not valid JSON",
    "empty": r": empty file",
    "missing-ocr": r":2: image CVTG/2/0\.png: needs exactly one of the fields 'ocr' and 'ocr_error'",
    "ocr-type": r":2: image CVTG/2/0\.png: field 'ocr': must be PaddleOCR's list of pages, got str",
    "page-type": r":2: image CVTG/2/0\.png: field 'ocr': page 0 must be a list",
    "box": r":2: image CVTG/2/0\.png: field 'ocr': page 0 line 0: box must be 4 \[x, y\] points",
    "text-type": r":2: image CVTG/2/0\.png: field 'ocr': page 0 line 1: expected \[text, confidence\]",
    "unknown-type": r":2: image CVTG-Fancy/2/0\.png: field 'image': unknown type 'CVTG-Fancy'",
    "unknown-area": r":2: image CVTG/7/0\.png: field 'image': unknown area '7'",
    "score-type": r":2: image CVTG/2/0\.png: field 'vqascore' must be a number or null",
    "no-image": r":2: missing field 'image' \(official per-image row\) or 'type'",
}


def corrupt(tmp_path: Path, how: str) -> Path:
    lines = PER_IMAGE.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[1])["image"] == "CVTG/2/0.png"
    if how == "truncated":
        lines[1] = lines[1][:40]
    elif how == "empty":
        lines = []
    else:
        lines[1] = json.dumps(_edit(json.loads(lines[1]), how))
    path = tmp_path / "per_image.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("how", sorted(CASES))
def test_malformed_per_image_rows_give_one_line_errors(tmp_path: Path, how: str) -> None:
    path = corrupt(tmp_path, how)
    with pytest.raises(ValueError, match=str(path).replace(".", r"\.") + CASES[how]) as err:
        score_output("cvtg", tmp_path, BENCH)
    assert "\n" not in str(err.value)
    with pytest.raises(I1labError) as cli_err:
        score_command(
            "cvtg", path, as_json=True, run=None, step=None, benchmarks_dir=BENCH, console=Console()
        )
    assert str(cli_err.value) == f"score cvtg: {err.value}"


def test_a_single_page_and_a_null_result_are_read_as_pages() -> None:
    page = [[[[0, 0], [1, 0], [1, 1], [0, 1]], ["Open Now", 0.99]]]
    assert cvtg.io.ocr_lines(page) == cvtg.io.ocr_lines([page]) == ("Open Now",)
    assert cvtg.io.ocr_lines(None) == cvtg.io.ocr_lines([None]) == cvtg.io.ocr_lines([]) == ()


def test_cli_prints_one_line_without_traceback(tmp_path: Path) -> None:
    path = corrupt(tmp_path, "box")
    res = official_cli.i1lab_score("cvtg", path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: score cvtg: {path}:2: image CVTG/2/0.png: field 'ocr'"
    )


def test_per_prompt_values_give_the_official_word_accuracy() -> None:
    from evals.benchmark import lookup

    values = lookup("cvtg").prompt_values(FIXTURES, BENCH)
    assert values is not None
    correct = sum(v * w for _, v, w in values)
    assert round(correct) == 16 and sum(w for _, _, w in values) == 36  # the official 16/36
    assert len({k for k, _, _ in values}) == len(values)
    assert lookup("cvtg").prompt_values(FIXTURES / "results.json", BENCH) is None  # no per-image counts
