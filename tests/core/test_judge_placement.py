"""A judge that needs a GPU, on a real two-node Ray cluster: the head node trains (CPUs only), a second
node declares a GPU. The official judge of the study's benchmark asks for one GPU, so it runs as its
own Ray task on that node, in its environment, while the training goes on without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.core.test_judge_environments import glow_folder
from tests.core.test_ray_cluster import EXPERIMENTS, ray_cluster, submit

STUDY = """\
study: judged_on_gpu
extends: {baseline}
profiles:
  tiny:
    train.steps: 20
    train.checkpoint_every: 10
    train.keep_every: 10
    train.log_every: 5
    sampling.steps: 4
    eval.benchmarks: [glow]
    eval.judges: {{glow: official}}
"""


def test_a_gpu_judge_is_placed_on_the_gpu_node_and_training_does_not_wait_for_it(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from i1lab.evaluation.environments import installed, setup
    from i1lab.registry import Registry

    folders, source = glow_folder(tmp_path, gpus=1, sleep=3.0)
    monkeypatch.setenv("I1LAB_BENCHMARK_FOLDERS", str(folders))  # every node and the submitter see it
    setup("glow", source=source)
    inst = installed("glow")
    assert inst is not None
    study = tmp_path / "study.yaml"
    study.write_text(STUDY.format(baseline=EXPERIMENTS / "baseline.yaml"))
    gpu_node = ["--num-gpus=1"]
    with ray_cluster(tmp_path, 1, head_cpus=2, head_resources=None, worker_args=[gpu_node]) as cluster:
        proc = submit(study, cluster.address, cluster.env, home)
        out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    registry = Registry()
    (member,) = registry.members("judged_on_gpu")
    run = member.run
    assert run.status == "finished"
    judge = f"official@{inst.fingerprint[:8]}"
    assert {(s.step, s.judge) for s in member.scores if s.metric == "glow"} == {(10, judge), (20, judge)}
    steps = [e for e in registry.evaluation_steps([run.id]) if e.status == "done"]
    assert sorted(e.step for e in steps) == [10, 20]
    log = registry.events([run.id])
    trained = next(e for e in log if e.kind == "trained")
    evaluated = {int((e.detail or "").split()[1]): e for e in log if e.kind == "evaluated"}
    nodes = set()
    for e in steps:
        made = json.loads(e.provenance or "{}")
        assert made["judge"] == judge and made["environment"] == inst.fingerprint
        assert made["judge_gpus"] == "1"  # it held the GPU: only the second node has one
        nodes.add(made["judge_node"])
        assert made["prompts"] and made["seed"] == "42" and made["n_prompts"] == "3"
    assert len(nodes) == 1 and run.node and not run.node.endswith(nodes.pop())  # trained on the head
    # the judge of step 10 sleeps 3 s on the GPU node: training reached its end without waiting for it
    assert evaluated[10].at >= trained.at
    # and a user reads it all back: `i1lab evals steps RUN`
    shown = subprocess.run(
        [sys.executable, "-m", "i1lab", "evals", "steps", "judged_on_gpu/baseline", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "I1LAB_HOME": str(home)},
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)
    assert [(r["step"], r["status"]) for r in listed] == [(10, "done"), (20, "done")]
    assert all(r["provenance"]["environment"] == inst.fingerprint for r in listed)
