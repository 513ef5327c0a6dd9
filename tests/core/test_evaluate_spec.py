"""`eval.judges`, `eval.commands`, `eval.prompt_limit`: validated at plan time, outside the run hash."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from i1lab.errors import I1labError, SpecError
from i1lab.plan.planner import expand
from i1lab.spec import load_study
from i1lab.spec.run import EvalSpec

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def study(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"extends: {EXPERIMENTS / 'baseline.yaml'}\n{body}")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        expand(load_study(path), "tiny")
    return str(info.value)


def test_judge_errors_are_located_one_liners(tmp_path: Path) -> None:
    cases = [
        ("eval.judges: {geneval: ocr}", "judges.geneval: ocr cannot judge geneval; use none or official"),
        ("eval.judges: {parti: none}", "judges: unknown benchmark 'parti'; known: geneval, dpg, prism"),
        ("eval.judges: {cvtg: ocr:paddle}", "unknown OCR engine 'paddle'; expected auto, tesseract"),
        ("eval.judges: {longtext: gpt4}", "judges.longtext: unknown judge 'gpt4'"),
        ("eval.judges: {prism: 'vlm:'}", "vlm needs its local weights folder"),
        ("eval.official_summary: [prism]", "official_summary: prism has no official summary stage"),
        ("eval.judge_gpus: {parti: 1}", "judge_gpus: unknown benchmark 'parti'"),
        ("eval.commands: {cvtg: '{python} x.py {model}'}", "commands.cvtg: unknown placeholder {model}"),
        ("eval.prompt_limit: 0", "eval.prompt_limit: Input should be greater than or equal to 1"),
    ]
    for line, expected in cases:
        msg = error_of(study(tmp_path, f"run:\n  {line}\n"))
        assert msg.startswith(f"{tmp_path / 's.yaml'}:3:"), msg
        assert expected in msg and "\n" not in msg, msg


def test_valid_judges_and_defaults() -> None:
    spec = EvalSpec(
        benchmarks=["geneval", "cvtg", "longtext", "prism"],
        judges={"longtext": "ocr:tesseract", "prism": "vlm:/models/qwen", "geneval": "official"},
        commands={
            "geneval": "{python} /g/evaluate_images.py {images} --outfile {out}/results.jsonl --model-path /m"
        },
    )
    assert [spec.judge_for(b) for b in ("geneval", "dpg", "prism", "cvtg", "longtext")] == [
        "official",
        "none",
        "vlm:/models/qwen",
        "ocr",
        "ocr:tesseract",
    ]
    assert EvalSpec.parse_judge("prism", "vlm:/models/qwen") == ("vlm", "/models/qwen")
    assert EvalSpec.parse_judge("cvtg", "ocr") == ("ocr", "auto")


def test_eval_bookkeeping_does_not_change_the_run_hash(tmp_path: Path) -> None:
    (plain,) = expand(load_study(study(tmp_path, "")), "tiny")
    body = (
        "run:\n  eval.prompt_limit: 3\n  eval.judges: {longtext: ocr, geneval: none}\n"
        "  eval.commands: {cvtg: '{python} x.py {images} {out}'}\n"
    )
    (configured,) = expand(load_study(study(tmp_path, body)), "tiny")
    assert configured.spec.eval.prompt_limit == 3 and configured.spec.eval.judges["longtext"] == "ocr"
    assert configured.hash == plain.hash
    schema = EvalSpec.model_json_schema()["properties"]
    assert all(schema[f]["semantic"] is False for f in ("prompt_limit", "judges", "commands"))


def test_the_default_official_commands_name_only_values_i1lab_fills() -> None:
    """The official judge runs in its environment, which fills every placeholder of its command."""
    from evals.judges.official import default_commands

    for bench, template in default_commands().items():
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        assert fields <= set(EvalSpec.PLACEHOLDERS), (bench, fields)


def test_judging_bad_input_is_one_line(tmp_path: Path) -> None:
    from i1lab.evaluation.judging import judge_images

    with pytest.raises(I1labError, match=r"^longtext: image folder .* does not exist$"):
        judge_images("longtext", tmp_path / "nope", "ocr", step=1)
    with pytest.raises(I1labError, match=r"judges\.geneval: ocr cannot judge geneval"):
        judge_images("geneval", tmp_path, "ocr", step=1)
    with pytest.raises(I1labError, match=r"^longtext: no images in the official layout"):
        judge_images("longtext", tmp_path, "ocr", step=1)
    (tmp_path / "0_0.png").write_bytes(b"")
    with pytest.raises(I1labError) as info:
        judge_images("longtext", tmp_path, f"vlm:{tmp_path / 'weights'}", step=1)
    assert re.match(r"longtext: VLM judge unavailable: VLM judge: no local model folder", str(info.value))
    assert "\n" not in str(info.value)


def test_missing_prompt_files_point_at_fetch(tmp_path: Path) -> None:
    from i1lab.evaluation.evaluate import load_benchmark_prompts

    with pytest.raises(I1labError) as info:
        load_benchmark_prompts("cvtg", directory=tmp_path)
    msg = str(info.value)
    assert "cvtg: expected file" in msg and "i1lab evals fetch" in msg and "\n" not in msg


def test_prompt_variants_generate_and_originals_score() -> None:
    from evals import longtext
    from i1lab.evaluation.evaluate import load_benchmark_prompts

    originals, prompts = load_benchmark_prompts("longtext", "complex_rewrite", 3)
    assert originals == longtext.load_prompts()[:3]
    assert len(prompts) == 3 and prompts[0] != originals[0].prompt
    meta, repeated = load_benchmark_prompts("geneval", "repeated4", 2)
    assert repeated == [" ".join([m["prompt"]] * 4) for m in meta]
    full, _ = load_benchmark_prompts("prism", "original", None)
    assert len(full) == 700 and full[0][:2] == ("affection", 0)
