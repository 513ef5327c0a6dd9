"""Evaluation steps: their identity, and what a run lacks. That a reused run asked for another benchmark gets
exactly that evaluation, once, through `i1lab submit` and Ray, is shown end to end by
tests/core/test_end_to_end.py::test_a_reused_run_asked_for_another_benchmark_is_evaluated_on_it_only_once
(on a run that module trains anyway)."""

from __future__ import annotations

from i1lab.plan.steps import EvalHistory, evaluations, judge_matches, missing_evaluations
from i1lab.spec.run import RunSpec


def spec(**eval_: object) -> RunSpec:
    base = {"train": {"steps": 20, "keep_every": 10, "checkpoint_every": 10}}
    return RunSpec.model_validate({**base, "eval": eval_})


def test_an_evaluation_steps_identity_is_its_run_checkpoint_benchmark_judge_and_settings() -> None:
    steps = evaluations(spec(benchmarks=["shapes", "longtext"]), "a" * 64)
    assert [(s.step, s.benchmark, s.judge) for s in steps] == [
        (10, "shapes", "exact-pixel"),
        (10, "longtext", "ocr"),
        (20, "shapes", "exact-pixel"),
        (20, "longtext", "ocr"),
    ]
    assert len({s.key for s in steps}) == 4
    # the same evaluation asked by another study (another order, other benchmarks beside it): same key
    (again,) = evaluations(spec(benchmarks=["longtext"]), "a" * 64, [10])
    assert again.key == steps[1].key
    # another judge, other settings or another run: another evaluation
    other = [
        evaluations(spec(benchmarks=["longtext"], judges={"longtext": "ocr:rapidocr"}), "a" * 64, [10]),
        evaluations(spec(benchmarks=["longtext"], prompt_limit=2), "a" * 64, [10]),
        evaluations(spec(benchmarks=["longtext"]), "b" * 64, [10]),
    ]
    assert all(o[0].key != again.key for o in other)


def test_what_a_run_lacks_is_what_it_was_not_evaluated_on_at_kept_checkpoints() -> None:
    asked = spec(benchmarks=["shapes", "longtext"])
    shapes_20 = evaluations(spec(benchmarks=["shapes"]), "a" * 64, [20])[0]
    history = {
        1: EvalHistory(keys={shapes_20.key}, scored={(10, "shapes", "exact-pixel")}),
    }
    (lacking,) = missing_evaluations({1: ("s/baseline", asked, "a" * 64)}, history)
    assert [(s.step, s.benchmark) for s in lacking.steps] == [(10, "longtext"), (20, "longtext")]
    (kept,) = missing_evaluations({1: ("s/baseline", asked, "a" * 64)}, history, {1: {20}})
    assert [(s.step, s.benchmark) for s in kept.steps] == [(20, "longtext")]
    # scores recorded before evaluation keys were, by a judge of the kind asked, count as done
    assert judge_matches("ocr", "ocr-tesseract") and not judge_matches("ocr:rapidocr", "ocr-tesseract")
    done = EvalHistory(scored={(10, "longtext", "ocr-tesseract"), (20, "longtext", "ocr-tesseract")})
    assert missing_evaluations({1: ("s/b", spec(benchmarks=["longtext"]), "a" * 64)}, {1: done}) == []
