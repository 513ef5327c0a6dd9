"""`i1lab score`: official per-sample outputs scored exactly, recorded for a checkpoint, shown by compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from evals.longtext import load_prompts, normalize

BENCH_DIR = Path(__file__).resolve().parents[3] / "shared" / "benchmarks"


def i1lab(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "I1LAB_HOME": str(home), "COLUMNS": "200", "I1LAB_BENCHMARKS_DIR": str(BENCH_DIR)}
    return subprocess.run(
        [sys.executable, "-m", "i1lab", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def longtext_results(path: Path, perfect_every: int) -> float:
    """An official-format results.jsonl: every n-th image reads its text perfectly, the rest read nothing."""
    prompts = load_prompts(BENCH_DIR)
    matched = total = 0
    with path.open("w") as f:
        for p in prompts:
            for k in range(4):
                words = normalize(" ".join(p.text), "en").split()  # the scorer's GT tokens
                ok = (p.row * 4 + k) % perfect_every == 0
                f.write(
                    json.dumps(
                        {
                            "image": f"{p.prompt_id}_{k}.png",
                            "prompt": p.prompt,
                            "ocr_gt": list(p.text),
                            "ocr_results": " ".join(p.text) if ok else "",
                        }
                    )
                    + "\n"
                )
                total += len(words)
                matched += len(words) if ok else 0
    return matched / total


def test_score_records_for_a_checkpoint_and_compare_shows_it(home: Path, tmp_path: Path) -> None:
    from i1lab.registry import PlannedMember, Registry

    spec = {"name": "x", "train": {"steps": 10}}
    Registry().record_plan(
        "imported_study",
        [
            PlannedMember(
                name="baseline",
                label="baseline",
                hash="a" * 64,
                is_baseline=True,
                baseline="baseline",
                varied={},
                spec=spec,
                total_steps=10,
            ),
            PlannedMember(
                name="variant",
                label="variant",
                hash="b" * 64,
                is_baseline=False,
                baseline="baseline",
                varied={},
                spec=spec,
                total_steps=10,
            ),
        ],
    )
    for name, every in (("baseline", 2), ("variant", 4)):
        out = tmp_path / name / "results.jsonl"
        out.parent.mkdir()
        expected = longtext_results(out, every)
        res = i1lab(
            "score",
            "longtext",
            str(out),
            "--json",
            "--run",
            f"imported_study/{name}",
            "--step",
            "10",
            home=home,
        )
        assert res.returncode == 0, res.stderr
        payload = json.loads(res.stdout[res.stdout.index("{") :])
        assert payload["judge"] == "official" and payload["headline"] == "text_score"
        assert abs(payload["value"] - expected) < 1e-12
    table = json.loads(i1lab("compare", "imported_study", "--format", "json", home=home).stdout)
    assert [c["benchmark"] + "/" + c["metric"] + "@" + c["judge"] for c in table["columns"]] == [
        "longtext/text_score@official"
    ]
    base, variant = (r["cells"][0] for r in table["rows"])
    assert variant["delta"] is not None and variant["delta"] < 0 and abs(base["value"] - 0.5) < 0.05


def test_score_errors_are_one_line(home: Path, tmp_path: Path) -> None:
    res = i1lab("score", "longtext", str(tmp_path / "missing"), home=home)
    assert (
        res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "does not exist" in res.stderr
    )
    res = i1lab("score", "parti", str(tmp_path), home=home)
    assert res.returncode == 2 and "unknown benchmark" in res.stderr.lower()
    res = i1lab("score", "longtext", str(tmp_path), "--run", "1", home=home)
    assert res.returncode == 2 and "--run and --step go together" in res.stderr
