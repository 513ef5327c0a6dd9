"""Study files: loading, extends, profiles, and located one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from i1lab.errors import SpecError
from i1lab.plan.planner import expand
from i1lab.spec import load_study

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def base_extends(tmp_path: Path, body: str) -> Path:
    return write(tmp_path, "s.yaml", f"extends: {EXPERIMENTS / 'baseline.yaml'}\n{body}")


def error_of(path: Path, profile: str | None = None) -> str:
    with pytest.raises(SpecError) as info:
        expand(load_study(path), profile)
    return str(info.value)


def test_adapter_study_expands_to_baseline_plus_three() -> None:
    variants = expand(load_study(EXPERIMENTS / "adapter_size.yaml"), "tiny")
    assert [v.name for v in variants] == [
        "baseline",
        "adapter=transformer-1",
        "adapter=transformer-2",
        "adapter=transformer-3",
    ]
    assert variants[0].is_baseline and not any(v.is_baseline for v in variants[1:])
    assert {v.spec.model.adapter.blocks for v in variants[1:]} == {1, 2, 3}
    # the profile applies to every run, and axes override it only where they vary
    assert all(v.spec.model.size == "tiny" and v.spec.data.resolution == 16 for v in variants)
    assert len({v.hash for v in variants}) == 4


def test_full_scale_baseline_is_the_paper_baseline() -> None:
    (base,) = expand(load_study(EXPERIMENTS / "baseline.yaml"))
    assert base.spec.model.size == "DiT-XL" and base.spec.model.adapter.type == "mlp"
    assert base.spec.train.steps == 500_000 and base.spec.train.batch_size == 512
    assert base.spec.train.b2 == 0.95 and base.spec.train.ema_decay == 0.9999
    assert base.spec.data.mixing.strategy == "count_proportional" and len(base.spec.data.sources) == 12


def test_unknown_key_names_file_line_and_suggestion(tmp_path: Path) -> None:
    path = base_extends(tmp_path, "run:\n  model:\n    adaptr: {type: mlp}\n")
    assert error_of(path) == f"{path}:4:5: model.adaptr: unknown key (did you mean 'adapter'?)"


def test_wrong_type_is_located(tmp_path: Path) -> None:
    path = base_extends(tmp_path, "run:\n  train:\n    steps: many\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:4:5: train.steps: ") and "'many'" in msg


def test_impossible_value_blames_the_axis_value(tmp_path: Path) -> None:
    path = base_extends(tmp_path, "axes:\n  model.patch_size: [2, 3]\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:3:25: model.patch_size: ") and "not divisible" in msg


def test_out_of_range_value(tmp_path: Path) -> None:
    path = base_extends(tmp_path, "run:\n  train.lr: -1\n")
    assert error_of(path).startswith(f"{path}:3:3: train.lr: Input should be greater than 0")


def test_axis_on_missing_path(tmp_path: Path) -> None:
    path = base_extends(tmp_path, "axes:\n  model.adapterr: [1]\n")
    assert error_of(path) == f"{path}:3:3: model.adapterr: unknown field 'adapterr' (did you mean 'adapter'?)"


def test_extends_cycle_and_missing_file(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "extends: b.yaml\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\n")
    assert "extends cycle: a.yaml -> b.yaml -> a.yaml" in error_of(tmp_path / "a.yaml")
    missing = write(tmp_path, "m.yaml", "extends: nowhere.yaml\n")
    assert error_of(missing).startswith(f"{missing}:1:1: extends: file not found")


def test_duplicate_key_and_bad_yaml(tmp_path: Path) -> None:
    dup = write(tmp_path, "d.yaml", "study: x\nstudy: y\n")
    assert error_of(dup) == f"{dup}:2:1: study: duplicate key"
    bad = write(tmp_path, "y.yaml", "run: {model: [\n")
    assert error_of(bad).startswith(f"{bad}:2:1: invalid YAML")


def test_cross_field_rule(tmp_path: Path) -> None:
    path = base_extends(tmp_path, "run:\n  model: {backbone: dual_stream, pooled_text: true}\n")
    assert "pooled_text exists only for backbone cross_attn" in error_of(path)


def test_max_runs_cap(tmp_path: Path) -> None:
    path = base_extends(tmp_path, "max_runs: 3\ngrid:\n  train.seed: [1, 2]\n  train.lr: [0.1, 0.2]\n")
    assert "expands to 4 runs, more than max_runs=3" in error_of(path)


def test_unknown_profile(tmp_path: Path) -> None:
    path = base_extends(tmp_path, "")
    assert "unknown profile 'huge'; known: tiny" in error_of(path, "huge")


def test_grid_seeds_and_variants(tmp_path: Path) -> None:
    path = base_extends(
        tmp_path,
        (
            "grid:\n  model.backbone: [cross_attn]\n  model.long_skip: [true, false]\n"
            "axes:\n  model.adaln: [false]\n"
            "variants:\n  - {name: big, label: Big lr, set: {train.lr: 0.001, train.b2: 0.99}}\n"
            "seeds: [0, 1]\n"
        ),
    )
    variants = expand(load_study(path), "tiny")
    names = [v.name for v in variants]
    assert len(names) == 2 * 3 * 2  # cells x (baseline, axis, variant) x seeds
    assert "backbone=cross_attn,long_skip=off,adaln=off#seed=1" in names
    big = next(v for v in variants if v.name == "backbone=cross_attn,long_skip=on,big#seed=0")
    assert big.label == "Big lr" and big.spec.train.lr == 0.001 and big.spec.train.b2 == 0.99
    assert big.baseline == "backbone=cross_attn,long_skip=on,baseline#seed=0"


def test_axis_value_equal_to_baseline_is_folded(tmp_path: Path) -> None:
    path = base_extends(tmp_path, "axes:\n  model.adapter: [{type: mlp}, {type: transformer}]\n")
    variants = expand(load_study(path))
    assert [v.name for v in variants] == ["baseline", "adapter=transformer"]
    assert variants[0].aliases == ("adapter=mlp",)


def test_search_block_is_validated(tmp_path: Path) -> None:
    good = base_extends(
        tmp_path,
        (
            "search:\n  space:\n    sampling.cfg_scale: {type: float, low: 1.0, high: 9.0}\n"
            "    sampling.steps: {type: int, low: 10, high: 50, step: 10}\n"
            "  objective: {shapes/overall: 1.0}\n  trials: 4\n"
        ),
    )
    study = load_study(good)
    assert study.doc.search is not None and study.doc.search.inference_only
    bad_path = base_extends(
        tmp_path,
        (
            "search:\n  space:\n    sampling.cfg_scal: {type: float, low: 1.0, high: 9.0}\n"
            "  objective: {shapes/overall: 1.0}\n"
        ),
    )
    assert "sampling.cfg_scal: unknown field 'cfg_scal' (did you mean 'cfg_scale'?)" in error_of(bad_path)
    bad_range = base_extends(
        tmp_path,
        (
            "search:\n  space:\n    train.lr: {type: float, low: 0.0, high: 1.0, log: true}\n"
            "  objective: {shapes/overall: 1.0}\n"
        ),
    )
    assert "search.space.train.lr: a log-scaled dimension needs low > 0" in error_of(bad_range)


def test_every_paper_study_plans_and_shares_one_baseline() -> None:
    from i1lab.plan.planner import make_plan, report

    files = sorted(EXPERIMENTS.glob("*.yaml"))
    assert len(files) >= 17
    plans = []
    for path in files:
        study = load_study(path)
        plans.append(make_plan(study, expand(study), {}, None))
    payload = report(plans)
    base = expand(load_study(EXPERIMENTS / "baseline.yaml"))[0].hash
    hits = [r for r in payload["runs"] if r["hash"] == base]
    assert len(hits) == 1 and len(hits[0]["members"]) >= 10
    assert payload["summary"]["runs"] < sum(len(p.runs) for p in plans)
