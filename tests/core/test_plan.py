"""Content hashes and reuse: what changes a run's identity and what does not."""

from __future__ import annotations

from pathlib import Path

from i1lab.hashing import content_hash
from i1lab.plan.planner import expand, make_plan
from i1lab.registry import ExistingRun
from i1lab.spec import RunSpec, load_study

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def test_hash_ignores_names_defaults_and_key_order() -> None:
    a = RunSpec.model_validate({"name": "a", "train": {"lr": 1e-4, "steps": 10}})
    b = RunSpec.model_validate({"train": {"steps": 10, "lr": 0.0001, "b2": 0.95}, "name": "b", "label": "x"})
    assert content_hash(a) == content_hash(b)


def test_hash_ignores_resources_and_eval_bookkeeping() -> None:
    a = RunSpec.model_validate({"resources": {"accelerator": "cpu"}, "eval": {"benchmarks": ["shapes"]}})
    b = RunSpec.model_validate({"resources": {"accelerator": "tpu-v6e-64"}})
    assert content_hash(a) == content_hash(b)


def test_every_semantic_field_changes_the_hash() -> None:
    base = content_hash(RunSpec())
    changes = [
        {"model": {"adapter": {"type": "transformer"}}},
        {"model": {"long_skip": False}},
        {"train": {"lr": 2e-4}},
        {"train": {"seed": 1}},
        {"data": {"resolution": 512}},
        {"sampling": {"cfg_scale": 5.0}},
        {"diffusion": {"train_shift": 0.3}},
        {"data": {"mixing": {"strategy": "equal"}}},
    ]
    hashes = {content_hash(RunSpec.model_validate(c)) for c in changes}
    assert base not in hashes and len(hashes) == len(changes)


def test_yaml_formatting_does_not_change_the_hash(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text(f"extends: {EXPERIMENTS / 'baseline.yaml'}\nrun:\n  train: {{lr: 0.0002, seed: 3}}\n")
    sub = tmp_path / "deeper"
    sub.mkdir()
    b = sub / "b.yaml"
    b.write_text(
        f"# another file, another place\nextends: {EXPERIMENTS / 'baseline.yaml'}\n"
        "run:\n  train.seed: 3\n  train.lr: 2.0e-4\n"
    )
    assert expand(load_study(a))[0].hash == expand(load_study(b))[0].hash


def test_shared_baseline_has_one_hash_across_studies() -> None:
    base = expand(load_study(EXPERIMENTS / "baseline.yaml"), "tiny")[0].hash
    adapter = expand(load_study(EXPERIMENTS / "adapter_size.yaml"), "tiny")[0]
    assert adapter.is_baseline and adapter.hash == base


def test_make_plan_marks_new_reused_and_resume() -> None:
    study = load_study(EXPERIMENTS / "adapter_size.yaml")
    variants = expand(study, "tiny")
    existing = {
        variants[0].hash: ExistingRun(id=1, hash=variants[0].hash, status="finished"),
        variants[1].hash: ExistingRun(id=2, hash=variants[1].hash, status="running", step=5),
    }
    plan = make_plan(study, variants, existing, "tiny")
    assert [r.status for r in plan.runs] == ["reused", "resume", "new", "new"]
    assert plan.runs[0].reused_run_id == 1 and plan.runs[2].reused_run_id is None
    assert plan.summary() == {"runs": 4, "new": 2, "reused": 1, "resume": 1}


def test_tasks_run_parents_first() -> None:
    from i1lab.execution.launching import Task, order_tasks
    from i1lab.spec.run import ResourcesSpec

    def task(name: str, parent: str | None = None) -> Task:
        return Task(
            run_id=0, name=name, resources=ResourcesSpec(), workdir=name, hash=name, parent_hash=parent
        )

    ordered = order_tasks([task("c", "b"), task("b", "a"), task("x"), task("a")])
    assert [t.name for t in ordered] == ["a", "b", "c", "x"]


def test_training_tasks_of_one_work_directory_wait_for_each_other_and_score_tasks_do_not() -> None:
    from i1lab.execution.launching import Task, dependencies
    from i1lab.spec.run import ResourcesSpec

    def task(run_id: int, kind: str = "train", parent: str | None = None) -> Task:
        return Task.model_validate(
            {
                "run_id": run_id,
                "name": str(run_id),
                "resources": ResourcesSpec(),
                "workdir": "shared",
                "hash": str(run_id),
                "parent_hash": parent,
                "kind": kind,
            }
        )

    deps = dependencies(
        [task(1), task(2), task(3, "score"), task(4, "score"), task(5), task(6, "train", "4")]
    )
    assert deps == {1: set(), 2: {1}, 3: set(), 4: set(), 5: {2}, 6: {5, 4}}


def test_resume_from_names_resolve_to_hashes_and_errors_are_located(tmp_path: Path) -> None:
    study = load_study(EXPERIMENTS / "resolution_stages.yaml")
    s1, s2, s3 = expand(study)
    assert s2.spec.data.resume_from == s1.hash and s3.spec.data.resume_from == s2.hash
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"extends: {EXPERIMENTS / 'baseline.yaml'}\n"
        "variants:\n  - {name: s2, set: {data.resume_from: nope}}\n"
    )
    import pytest

    from i1lab.errors import SpecError

    with pytest.raises(SpecError, match=r"bad.yaml:3:.*data.resume_from: resumes from 'nope'"):
        expand(load_study(bad))


def test_slice_hosts_and_the_slice_ray_reserves_for_a_multi_host_run() -> None:
    import pytest
    from ray._private.accelerators.tpu import get_chips_per_host, get_num_chips_from_topology

    from i1lab.execution.gang import slice_shape
    from i1lab.spec.run import ResourcesSpec

    hosts = {
        a: ResourcesSpec(accelerator=a).slice_hosts for a in ("cpu:4", "gpu:8", "tpu-v6e-8", "tpu-v6e-16")
    }
    assert hosts == {"cpu:4": 1, "gpu:8": 1, "tpu-v6e-8": 1, "tpu-v6e-16": 4}
    assert ResourcesSpec(accelerator="tpu-v6e-256").slice_hosts == 64
    assert ResourcesSpec(accelerator="tpu-v6e-8", hosts=2).slice_hosts == 2  # 2x4 on two 4-chip hosts
    assert ResourcesSpec(accelerator="tpu-v6e-16", hosts=4).slice_hosts == 4
    for bad, why in (
        ({"accelerator": "tpu-v6e-16", "hosts": 1}, "a tpu-v6e-16 slice is 4 hosts of 4 chips, not 1"),
        ({"accelerator": "tpu-v6e-8", "hosts": 3}, "1 host of 8 chips or 2 of 4, not 3"),
        ({"accelerator": "cpu", "hosts": 4}, "cpu runs on one host, not 4"),
    ):
        with pytest.raises(ValueError, match=why):
            ResourcesSpec.model_validate(bad)
    # the slice asked of Ray's SlicePlacementGroup: a topology Ray knows, of the slice's chips, on the
    # hosts the run asks for (Ray's own default layout for every size but the two-host v6e-8)
    for acc, hosts_, topology in (
        ("tpu-v6e-8", 2, "2x4"),
        ("tpu-v6e-16", 4, "4x4"),
        ("tpu-v6e-32", 8, "4x8"),
        ("tpu-v6e-256", 64, "16x16"),
    ):
        shape = slice_shape(ResourcesSpec(accelerator=acc, hosts=hosts_))
        chips = int(acc.rsplit("-", 1)[1])
        assert (shape.topology, shape.hosts, shape.chips_per_host) == (topology, hosts_, chips // hosts_)
        assert get_num_chips_from_topology(shape.topology) == chips
        if chips > 8:
            assert get_chips_per_host(shape.topology, shape.version) == shape.chips_per_host


def test_run_hashes_are_the_content_and_training_hashes_and_plans_carry_the_training_one() -> None:
    from i1lab.hashing import run_hashes, training_hash

    for spec in (RunSpec(), RunSpec.model_validate({"sampling": {"cfg_scale": 2.0}, "train": {"lr": 3e-4}})):
        assert run_hashes(spec) == (content_hash(spec), training_hash(spec))
    # sampling-only variants: different runs, one training
    a, b = RunSpec(), RunSpec.model_validate({"sampling": {"cfg_scale": 2.0}})
    assert run_hashes(a)[0] != run_hashes(b)[0] and run_hashes(a)[1] == run_hashes(b)[1]
    study = load_study(EXPERIMENTS / "adapter_size.yaml")
    plan = make_plan(study, expand(study, "tiny"), {}, "tiny")
    assert all(r.training_hash == training_hash(r.spec) for r in plan.runs)
    assert "training_hash" not in plan.runs[0].model_dump()  # not part of the plan's JSON
