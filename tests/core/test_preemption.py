"""Preemption on a real multi-node Ray cluster started by the test (a head plus two worker nodes, each
worker declaring one fake v6e-8 slice): a worker node killed mid-run takes its run down with it; the run
is rescheduled on the other node, resumes from its latest checkpoint and finishes, and the registry holds
one record of it with one interruption."""

from __future__ import annotations

import json
from pathlib import Path

from tests.core.test_ray_cluster import EXPERIMENTS, checkpointed_run, node_of, ray_cluster, submit

STUDY = """\
study: preempt_micro
extends: {baseline}
profiles:
  tiny:
    resources.accelerator: tpu-v6e-8
    train.steps: 40
    train.checkpoint_every: 10
    train.keep_every: 40
    train.log_every: 10
    eval.benchmarks: []
"""


def test_a_killed_worker_node_is_an_interruption_and_the_run_resumes_on_the_other(
    home: Path, tmp_path: Path
) -> None:
    from i1lab.registry import Registry

    study = tmp_path / "preempt.yaml"
    study.write_text(STUDY.format(baseline=EXPERIMENTS / "baseline.yaml"))
    with ray_cluster(tmp_path, 2, head_resources=None) as cluster:
        env = {**cluster.env, "I1LAB_LEASE_SECONDS": "10"}
        proc = submit(study, cluster.address, env, home)
        registry, run, pid = checkpointed_run(proc, home)
        victim = node_of(cluster, pid)
        assert victim is not None, f"worker pid {pid} is on no worker node"
        first_node = run.node
        killed = cluster.kill_node(victim)
        # the run's step is written every few seconds, its checkpoints as they land: the latest checkpoint
        # recorded once the node is gone is where the run must resume from
        step_at_kill = registry.checkpoints(run.id)[-1][0]
        assert pid in killed and 10 <= step_at_kill < 40
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "interrupted" in out and "retry 1/3" in out, out

    registry = Registry()
    assert len(registry.runs()) == 1 and len(registry.members("preempt_micro")) == 1  # one record
    run = registry.runs()[0]
    assert (run.status, run.step, run.interruptions, run.attempts) == ("finished", 40, 1, 2)
    log = registry.events([run.id])
    kinds = [e.kind for e in log]
    assert kinds == [
        "queued",
        "leased",
        "started",
        "interrupted",
        "retried",
        "queued",
        "leased",
        "started",
        "trained",
        "finished",
    ], kinds
    first, second = (e for e in log if e.kind == "started")
    interrupted = next(e for e in log if e.kind == "interrupted")
    assert interrupted.node == first.node == first_node and "NodeDiedError" in (interrupted.detail or "")
    # the second attempt ran on the other node, from the checkpoint the first one left
    assert second.node != first.node and run.node == second.node
    resumed = int((second.detail or "").rsplit(" ", 1)[-1])
    assert (
        "resumed from checkpoint" in (second.detail or "") and step_at_kill <= resumed < 40
    )  # never behind what was recorded
    steps = [
        json.loads(x)["step"] for x in (Path(run.workdir or "") / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 10, 20, 30, 40]  # one training: the killed attempt's tail was cut
    assert [c[0] for c in registry.checkpoints(run.id)][-1] == 40
