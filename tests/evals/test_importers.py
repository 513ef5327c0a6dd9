"""Importers of per-sample output files into the exact scorers, and `i1lab.evaluation.benchmarks_io`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from evals import cvtg, dpg, geneval, longtext, prism
from evals.benchdir import BenchmarkFileMissing
from evals.scoring import score_output
from i1lab.evaluation.benchmarks_io import report_json, score_path


def _dpg_vectors():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "dpg_vectors", Path(__file__).with_name("test_dpg_score.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_DPG = _dpg_vectors()
CSV: str = _DPG.CSV
answers = _DPG.answers


def box(x: float, score: float = 0.95) -> list[float]:
    return [x, 0.0, x + 10.0, 10.0, score]


def geneval_records() -> list[geneval.GenEvalRecord]:
    metas = geneval.load_metadata()
    out = []
    for idx in (0, 1, 80, 179, 259):
        meta = metas[idx]
        for k in range(2):
            dets = (
                {c["class"]: [box(20.0 * n) for n in range(c["count"])] for c in meta["include"]}
                if k == 0
                else {}
            )
            colors = {c["class"]: [c.get("color", "red")] * c["count"] for c in meta["include"]}
            out.append(geneval.make_record(f"imgs/{idx:05d}/samples/{k:05d}.png", meta, dets, colors))
    return out


def test_geneval_results_jsonl_written_like_pandas_and_read_back(tmp_path: Path) -> None:
    records = geneval_records()
    path = geneval.write_results(records, tmp_path / "results.jsonl")
    text = path.read_text()
    assert "imgs\\/00000\\/samples\\/00000.png" in text  # pandas escapes "/"
    back = geneval.read_results(path)
    assert back == records
    assert isinstance(back[0]["metadata"], str) and json.loads(back[0]["details"])
    headline, metrics, judge, printed = score_path("geneval", tmp_path)
    summary = geneval.summarize(records)
    assert (headline, judge) == ("overall", "official")
    assert metrics["overall"] == summary.headline == pytest.approx(0.5)
    assert printed == geneval.format_summary(summary)
    assert printed.endswith("Overall score (avg. over tasks): 0.50000\n")


def test_geneval_results_with_bad_metadata_column(tmp_path: Path) -> None:
    row = dict(geneval_records()[0], metadata={"tag": "x"})
    (tmp_path / "results.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match="JSON string"):
        geneval.read_results(tmp_path / "results.jsonl")


def test_geneval_judgements_file(tmp_path: Path) -> None:
    rows = [
        {"folder_idx": 0, "k": 0, "detections": {"bench": [box(0)]}, "colors": {}, "judge": "shapes-oracle"},
        {
            "folder_idx": 0,
            "k": 1,
            "detections": {"bench": [box(0, 0.2)]},
            "colors": {},
            "judge": "shapes-oracle",
        },
    ]
    (tmp_path / "judgements.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = score_output("geneval", tmp_path)
    assert report.judge == "shapes-oracle"
    assert report.metrics["overall"] == 0.5 and report.metrics["tag/single_object"] == 0.5


def test_dpg_answers_with_local_csv(tmp_path: Path) -> None:
    rows = [
        {"item_id": item, "crop": k, "proposition_id": q, "answer": a, "judge": "vqa-test"}
        for item, table in answers().items()
        if item in ("p", "q", "r")
        for (k, q), a in table.items()
    ]
    dpg.write_answers(rows, tmp_path / "answers.jsonl")
    with pytest.raises(BenchmarkFileMissing, match=r"dpg_bench\.csv"):
        score_path("dpg", tmp_path, benchmarks_dir=tmp_path / "nowhere")
    (tmp_path / "dpg_bench.csv").write_text(CSV)
    headline, metrics, judge, printed = score_path("dpg", tmp_path / "answers.jsonl")
    assert (headline, judge) == ("dpg_score", "vqa-test")
    assert metrics["dpg_score"] == pytest.approx(50.0)
    assert metrics["L2/entity - whole"] == pytest.approx(100 / 3)
    assert printed.endswith("DPG-Bench score: 50.0\n")


def test_dpg_official_printout_is_read_back(tmp_path: Path) -> None:
    summary = dpg.summarize(dpg.parse_csv(CSV), answers(), ["p.png", "q.png", "r.png", "x.png"])
    text = dpg.format_summary(summary, model_id="processed", image_root="/x/processed", res_path="/x/r.txt")
    (tmp_path / "dpg-bench_20250101-000000_results.txt").write_text(
        "/x/p.png, 0.25, 1.0, 0.0, 0.75, 0.5\n" + text
    )
    _headline, metrics, judge, printed = score_path("dpg", tmp_path)
    assert judge == "official"
    assert metrics == summary.metrics()
    assert printed.startswith("L1 category scores:") and printed.endswith("DPG-Bench score: 50.0\n")


def write_prism_dir(root: Path) -> None:
    for j, score in enumerate([8, 6, True]):
        p = prism.record_path(root, "alignment", "entity", j)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"justification": "x", "score": score}, indent=4))
    bad = prism.record_path(root, "aesthetic", "entity", 0)
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("{not json")
    prism.record_path(root, "aesthetic", "entity", 1).write_text(json.dumps({"score": "9"}))
    prism.record_path(root, "aesthetic", "entity", 2).write_text(json.dumps({"score": 4.5}))
    prism.record_path(root, "aesthetic", "entity", 100).write_text(json.dumps({"score": 0}))  # ignored


def test_prism_official_judge_dir(tmp_path: Path) -> None:
    root = tmp_path / "images" / "score"
    write_prism_dir(root)
    lenient = prism.summarize(prism.read_judge_dir(root, strict=False))  # the official summary's tolerance
    assert lenient.headline == (8 + 6 + 1 + 4.5) / 4 and lenient.dropped[0] == ("aesthetic", "entity", 0)
    with pytest.raises(ValueError, match=r"aesthetic/entity/0\.jsonl:1: not valid JSON"):
        score_path("prism", tmp_path / "images")  # a file the official evaluator cannot have written
    prism.record_path(root, "aesthetic", "entity", 0).unlink()
    with pytest.raises(ValueError, match=r"entity/100\.jsonl: unknown record id"):
        score_path("prism", tmp_path / "images")
    prism.record_path(root, "aesthetic", "entity", 100).unlink()
    headline, metrics, judge, printed = score_path("prism", tmp_path / "images")
    assert (headline, judge) == ("final_combined_average", "official")
    assert metrics["final_combined_average"] == (8 + 6 + 1 + 4.5) / 4
    assert metrics["final_combined_average_0_100_x10"] == pytest.approx(48.75)
    assert metrics["aesthetic/entity"] == 4.5
    assert "(5) FINAL COMBINED AVERAGE SCORE: 4.88" in printed


def test_prism_raw_replies_and_record_writer(tmp_path: Path) -> None:
    replies = [
        ("alignment", "style", 0, '```json\n{"justification": "ok", "score": 9,}\n```', "qwen-test"),
        ("aesthetic", "style", 0, "7", "qwen-test"),  # bare number: saved, but fatal for the official summary
        ("aesthetic", "style", 1, "", "qwen-test"),
    ]
    prism.write_replies(replies, tmp_path / "replies.jsonl")
    report = score_output("prism", tmp_path / "replies.jsonl")
    assert report.judge == "qwen-test" and report.headline == 9.0
    records = prism.read_replies(tmp_path / "replies.jsonl")
    assert prism.write_record(tmp_path / "out", records[0]) is not None
    assert prism.write_record(tmp_path / "out", records[2]) is None
    assert prism.read_judge_dir(tmp_path / "out")[0].value == {"justification": "ok", "score": 9}


def test_cvtg_judgements_and_official_json(tmp_path: Path) -> None:
    prompts = cvtg.load_prompts()
    chosen = [p for p in prompts if (p.type, p.area) in (("CVTG", 2), ("CVTG-Style", 5))][:3] + prompts[-2:]
    judgements = [
        cvtg.CvtgJudgement(
            p.type, p.area, str(p.index), tuple(p.gt_words[: 1 + i % 2]), judge="ocr-test", clipscore=0.3
        )
        for i, p in enumerate(chosen)
    ]
    cvtg.write_judgements(judgements, tmp_path / "judgements.jsonl")
    assert cvtg.read_judgements(tmp_path / "judgements.jsonl") == judgements
    report = score_output("cvtg", tmp_path)
    summary = cvtg.summarize(judgements, cvtg.prompt_table(prompts))
    correct = sum(min(len(p.gt_words), 1 + i % 2) for i, p in enumerate(chosen))
    assert report.headline == summary.word_accuracy == correct / sum(len(p.gt_words) for p in chosen)
    assert report.judge == "ocr-test"
    official = cvtg.write_results_json(summary, tmp_path / "results.json")
    _headline, metrics, judge, printed = score_path("cvtg", official)
    assert judge == "official" and metrics["word_accuracy"] == summary.word_accuracy
    assert printed == cvtg.format_summary(summary)


def test_longtext_results_jsonl_and_rewritten_file(tmp_path: Path) -> None:
    prompts = longtext.load_prompts()[:3]
    ocr = [" ".join(prompts[0].text), "No text recognized", prompts[2].text[0].upper()]
    rows = [
        {"image": f"/imgs/{p.prompt_id}_0.png", "prompt": p.prompt, "ocr_gt": list(p.text), "ocr_results": o}
        for p, o in zip(prompts, ocr, strict=True)
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    headline, metrics, judge, printed = score_path("longtext", tmp_path)
    expected = longtext.summarize(longtext.read_results(tmp_path / "results.jsonl")[0])
    assert (headline, judge) == ("text_score", "official")
    assert metrics["text_score"] == expected.headline
    assert 0 < expected.headline < 1 and printed == f"Text Score: {expected.headline:.4f}\n"
    # what the official summary leaves behind: normalised strings; scoring from the originals is unchanged
    rewritten = [
        dict(
            r,
            ocr_gt=longtext.normalize(" ".join(r["ocr_gt"])),
            ocr_results=longtext.normalize(r["ocr_results"]),
        )
        for r in rows
    ]
    (tmp_path / "results.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rewritten)
    )
    records, was_rewritten = longtext.read_results(tmp_path / "results.jsonl")
    assert was_rewritten and longtext.summarize(records).headline == expected.headline
    # each record is scored against its OWN ocr_gt, as the official summary does, not the prompt file's
    own = [dict(rows[0], ocr_gt=["something else"], ocr_results="something")]
    (tmp_path / "results.jsonl").write_text(json.dumps(own[0]) + "\n")
    assert score_path("longtext", tmp_path)[1]["text_score"] == 0.5


def test_unknown_benchmark_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown benchmark"):
        score_path("parti", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"results\.jsonl"):
        score_path("longtext", tmp_path)
    assert json.loads(report_json("CVTG-2K", cvtg_official(tmp_path)))["judge"] == "official"


def cvtg_official(tmp_path: Path) -> Path:
    summary = cvtg.summarize(
        [cvtg.CvtgJudgement("CVTG", 2, "0", ("read",))], cvtg.prompt_table(cvtg.load_prompts())
    )
    return cvtg.write_results_json(summary, tmp_path / "results.json")
