"""LongText-Bench scored from files the OFFICIAL scripts wrote (tests/fixtures/official/longtext/,
made by `make_official_outputs_text.py`; README there): i1lab gives the Text Score `summary_scores.py`
printed, from the raw and from the rewritten `results.jsonl`, records with prompt ids absent from the
prompt file included; malformed files give one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from rich.console import Console

from evals import longtext
from evals.benchdir import benchmarks_dir
from evals.scoring import score_output
from i1lab.errors import I1labError
from i1lab.evaluation.scores import score_command
from tests.evals import official_cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "longtext"
RAW = FIXTURES / "raw" / "results.jsonl"
SUMMARIZED = FIXTURES / "summarized" / "results.jsonl"
BENCH = benchmarks_dir()
PRINTED = (FIXTURES / "summarized" / "scores.txt").read_text(encoding="utf-8")  # "Text Score: 0.4962\n"


def rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def official_fraction() -> Fraction:
    """The summary's own per-record counts (the rewritten file), summed as it sums them."""
    out = rows(SUMMARIZED)
    return Fraction(sum(int(r["match_word_count"]) for r in out), sum(int(r["gt_word_count"]) for r in out))  # type: ignore[call-overload]


def test_fixture_holds_prompt_ids_absent_from_the_prompt_file() -> None:
    known = {p.prompt_id for p in longtext.load_prompts(BENCH)}
    ids = {longtext.prompt_id_of(str(r["image"])) for r in rows(RAW)}
    assert ids - known == {5000, 5001} and ids & known
    assert (FIXTURES / "summarized" / "stdout.txt").read_text() == PRINTED + "\n"
    assert PRINTED == "Text Score: 0.4962\n"


@pytest.mark.parametrize("source", [RAW, RAW.parent, SUMMARIZED, SUMMARIZED.parent])
def test_score_output_gives_the_printed_text_score(source: Path) -> None:
    report = score_output("longtext", source, BENCH)
    assert Fraction(report.headline) == Fraction(float(official_fraction()))
    assert report.headline == float(official_fraction())  # the same rational, correctly rounded
    assert report.printed == PRINTED and report.judge == "official"
    # breakdowns: only the records whose prompt id the prompt file holds
    known = {p.prompt_id: p for p in longtext.load_prompts(BENCH)}
    records, rewritten = longtext.read_results(source if source.is_file() else source / "results.jsonl")
    assert rewritten == (source in (SUMMARIZED, SUMMARIZED.parent))
    kept = [r for r in records if r.prompt_id in known]
    expected = longtext.summarize(kept, categories={k: (p.category, p.length) for k, p in known.items()})
    nonofficial = {k: v for k, v in report.metrics.items() if k.startswith("nonofficial/")}
    assert nonofficial == {k: v for k, v in expected.metrics().items() if k.startswith("nonofficial/")}
    assert len(kept) < len(records)


def test_per_record_counts_equal_the_official_ones() -> None:
    records, _ = longtext.read_results(RAW)
    official = rows(SUMMARIZED)
    assert [r.image for r in records] == [o["image"] for o in official]
    for rec, off in zip(records, official, strict=True):
        assert rec.ocr_gt is not None
        assert longtext.match_counts(rec.ocr_gt, rec.ocr_results) == (
            off["match_word_count"],
            off["gt_word_count"],
        )


def test_cli_json_gives_the_printed_text_score() -> None:
    env = {**os.environ, "COLUMNS": "200"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "i1lab",
            "score",
            "longtext",
            str(RAW.parent),
            "--benchmarks-dir",
            str(BENCH),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert payload["headline"] == "text_score" and payload["judge"] == "official"
    assert f"Text Score: {payload['value']:.4f}\n" == PRINTED
    assert payload["value"] == float(official_fraction())


def corrupt(tmp_path: Path, how: str) -> Path:
    lines = RAW.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[2])
    if how == "truncated":
        lines[2] = lines[2][: len(lines[2]) // 2]
    elif how == "empty":
        lines = []
    else:
        if how == "missing":
            del first["ocr_results"]
        elif how == "gt-type":
            first["ocr_gt"] = {"text": "x"}
        elif how == "gt-items":
            first["ocr_gt"] = ["fine", 3]
        elif how == "ocr-type":
            first["ocr_results"] = ["a", "b"]
        elif how == "no-words":
            first["ocr_gt"] = ["!!", "--"]
        lines[2] = json.dumps(first, ensure_ascii=False)
    path = tmp_path / "results.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


CASES = {
    "truncated": r":3: not valid JSON",
    "empty": r": empty file",
    "missing": r":3: missing field 'ocr_results'",
    "gt-type": r":3: image images/100_0\.png: field 'ocr_gt' must be a list of strings",
    "gt-items": r":3: image images/100_0\.png: field 'ocr_gt' must be a list of strings",
    "ocr-type": r":3: image images/100_0\.png: field 'ocr_results' must be a string",
    "no-words": r":3: image images/100_0\.png: field 'ocr_gt' has no words",
}


@pytest.mark.parametrize("how", sorted(CASES))
def test_malformed_results_give_one_line_errors(tmp_path: Path, how: str) -> None:
    path = corrupt(tmp_path, how)
    with pytest.raises(ValueError, match=str(path).replace(".", r"\.") + CASES[how]) as err:
        score_output("longtext", path, BENCH)
    assert "\n" not in str(err.value)
    with pytest.raises(I1labError) as cli_err:
        score_command(
            "longtext",
            path,
            as_json=True,
            run=None,
            step=None,
            benchmarks_dir=BENCH,
            console=Console(),
        )
    assert str(cli_err.value) == f"score longtext: {err.value}"


def test_rewritten_counts_that_disagree_are_named(tmp_path: Path) -> None:
    lines = SUMMARIZED.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[0])
    row["match_word_count"] += 1
    lines[0] = json.dumps(row, ensure_ascii=False)
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"results\.jsonl:1: image .*field 'match_word_count'"):
        score_output("longtext", path, BENCH)


def test_cli_prints_one_line_without_traceback(tmp_path: Path) -> None:
    path = corrupt(tmp_path, "truncated")
    res = official_cli.i1lab_score("longtext", path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: score longtext: {path}:3: not valid JSON (")


def test_per_prompt_values_pair_on_prompt_ids_and_give_the_official_score() -> None:
    from evals.benchmark import lookup

    values = lookup("longtext").prompt_values(RAW)
    assert values is not None
    total = sum(w for _, _, w in values)
    assert sum(v * w for _, v, w in values) / total == 129 / 260  # the official Text Score, exactly
    keys = [k for k, _, _ in values]
    assert len(keys) == len(set(keys)) == 8 and {"prompt_id=5000", "prompt_id=5001"} <= set(keys)
