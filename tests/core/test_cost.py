"""Cost model, budgets, and planning several studies together."""

from __future__ import annotations

from pathlib import Path

import pytest

from i1lab.errors import SpecError
from i1lab.plan.cost import chips_of, run_cost
from i1lab.plan.planner import expand, make_plan, report
from i1lab.spec import RunSpec, load_study
from i1lab.spec.model import model_config

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def test_chips_of_resources() -> None:
    assert chips_of("tpu-v6e-64")[1] == 64 and chips_of("gpu:8")[1] == 8 and chips_of("cpu")[1] == 1


def test_cost_scales_with_steps_batch_and_chips() -> None:
    spec = RunSpec()
    base = run_cost(spec, model_config(spec))
    assert base.params == 894_068_384
    # 6 * params * tokens is the dominant term: the estimate is within 2x of it
    assert 1.0 < base.flops_per_image / (6 * base.params * 256) < 2.0
    longer = RunSpec.model_validate({"train": {"steps": 1_000_000}})
    assert run_cost(longer, model_config(longer)).total_flops == pytest.approx(2 * base.total_flops)
    bigger = RunSpec.model_validate({"resources": {"accelerator": "tpu-v6e-16"}})
    c16 = run_cost(bigger, model_config(bigger))
    assert c16.hours == pytest.approx(base.hours / 2) and c16.accelerator_hours == pytest.approx(
        base.accelerator_hours
    )


def test_budget_refuses_over_budget_plans(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"extends: {EXPERIMENTS / 'adapter_size.yaml'}\nbudget_hours: 1000\n")
    study = load_study(path)
    plan = make_plan(study, expand(study), {}, None)
    with pytest.raises(SpecError, match=r"over the budget of 1,000\.0"):
        plan.check_budget()
    plan.check_budget(5000)  # an explicit, larger budget passes


def test_studies_planned_together_share_the_baseline() -> None:
    studies = [load_study(EXPERIMENTS / f) for f in ("baseline.yaml", "adapter_size.yaml")]
    plans = [make_plan(s, expand(s), {}, None) for s in studies]
    payload = report(plans)
    assert payload["summary"]["runs"] == 4  # 1 + 4 planned, the shared baseline once
    base = payload["runs"][0]
    assert base["members"] == ["baseline/baseline", "adapter_size/baseline"]
    assert base["cost"]["params"] == 894_068_384
