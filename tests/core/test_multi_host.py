"""Runs on multi-host TPU slices, on a real Ray cluster started by the test: two worker nodes declare
the two 4-chip hosts of one v6e-8 slice (Ray's TPU node labels: the slice's name, each host's worker
id, the pod type; the head resource on host 0), as Cloud TPU's 2x4 slices on two VMs do. Each run asks
for ``tpu-v6e-8`` on two hosts: Ray's ``SlicePlacementGroup`` reserves the slice whole, one process
per host joins one JAX runtime (on CPU here), and the run trains data-parallel over both."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

from tests.core.test_ray_cluster import EXPERIMENTS, checkpointed_run, node_of, ray_cluster, submit

STUDY = """\
study: gang
extends: {baseline}
axes:
  train.seed: [1]  # the baseline's one program again: the second run compiles nothing
profiles:
  tiny:
    resources.accelerator: tpu-v6e-8
    resources.hosts: 2
    train.steps: 20
    train.batch_size: 4
    train.checkpoint_every: 4
    train.keep_every: 20
    train.log_every: 4
    eval.benchmarks: []
"""


def slice_host(worker_id: int) -> list[str]:
    resources = '{"TPU": 4, "TPU-v6e-8-head": 1}' if worker_id == 0 else '{"TPU": 4}'
    labels = f"ray.io/tpu-slice-name=slice-a,ray.io/tpu-worker-id={worker_id},ray.io/tpu-pod-type=v6e-8"
    return [f"--resources={resources}", f"--labels={labels}"]


def slice_env(worker_id: int) -> dict[str, str]:
    """What GKE sets on a TPU host (Ray reads the slice's name from it)."""
    return {
        "TPU_NAME": "slice-a",
        "TPU_WORKER_ID": str(worker_id),
        "TPU_ACCELERATOR_TYPE": "v6e-8",
        "TPU_TOPOLOGY": "2x4",
    }


def held(events: list[Any]) -> list[tuple[Any, Any]]:
    """The spans an attempt of a run held its slice: from each ``started`` to the next end of it."""
    spans, begun = [], None
    for e in events:
        if e.kind == "started":
            begun = e.at
        elif e.kind in ("interrupted", "finished") and begun is not None:
            spans.append((begun, e.at))
            begun = None
    return spans


def test_runs_on_a_two_host_slice_take_it_in_turn_and_one_whose_host_dies_resumes_on_it(
    home: Path, tmp_path: Path
) -> None:
    """Two runs on one two-host slice: each trains data-parallel over both hosts, one at a time. Host 1
    is killed during the first (its node vanishes, as a preempted VM does): the gang is stopped, the
    run counts one interruption and waits; once the host is back (a new node with the slice's labels,
    as GKE recreates a preempted TPU pod) the run resumes on the slice from its latest checkpoint and
    finishes, one record of it in the registry; the other run trains once, untouched."""
    from i1lab.registry import Registry

    study = tmp_path / "gang.yaml"
    study.write_text(STUDY.format(baseline=EXPERIMENTS / "baseline.yaml"))
    args, env = [slice_host(0), slice_host(1)], [slice_env(0), slice_env(1)]
    with ray_cluster(tmp_path, 2, head_resources=None, worker_args=args, worker_env=env) as cluster:
        proc = submit(study, cluster.address, {**cluster.env, "I1LAB_LEASE_SECONDS": "10"}, home)
        registry, run, leader_pid = checkpointed_run(proc, home)
        leader_node = node_of(cluster, leader_pid)
        assert leader_node is not None, f"host 0's pid {leader_pid} is on no worker node"
        victim = next(w for w in cluster.workers if w is not leader_node)  # the other host
        cluster.kill_node(victim)
        step_at_kill = registry.checkpoints(run.id)[-1][0]
        assert 4 <= step_at_kill < 20
        # the run is interrupted and waits for a whole slice
        wait = time.monotonic() + 120
        while "interrupted" not in [e.kind for e in registry.events([run.id])]:
            assert time.monotonic() < wait, "the run was not interrupted within 120 s of its host's death"
            time.sleep(0.5)
        assert cluster.add_worker is not None
        worker_id = 1 if args.index(slice_host(0)) == cluster.workers.index(leader_node) else 0
        cluster.add_worker(slice_host(worker_id), slice_env(worker_id))
        out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out
    assert "interrupted" in out and "retry 1/3" in out, out

    registry = Registry()
    runs = {r.id: r for r in registry.runs()}
    assert len(runs) == 2  # one record of each
    killed = runs[run.id]
    other = next(r for r in runs.values() if r.id != run.id)
    assert (killed.status, killed.step, killed.interruptions, killed.attempts) == ("finished", 20, 1, 2)
    assert (other.status, other.step, other.interruptions, other.attempts) == ("finished", 20, 0, 1)
    kinds = [e.kind for e in registry.events([run.id])]
    assert kinds.count("started") == 2 and kinds.count("interrupted") == 1 and kinds[-1] == "finished", kinds
    second = [e for e in registry.events([run.id]) if e.kind == "started"][1]
    resumed = int((second.detail or "").split("resumed from checkpoint ")[1].split(";")[0].split()[0])
    assert step_at_kill <= resumed < 20, second.detail
    for r in runs.values():
        started = [e for e in registry.events([r.id]) if e.kind == "started"]
        assert all("data parallel over 2 devices of 2 hosts" in (e.detail or "") for e in started)
        # one record of each logged step (host 0 alone writes the run's files); the killed attempt's
        # tail was cut: one training
        steps = [
            json.loads(x)["step"] for x in (Path(r.workdir or "") / "metrics.jsonl").read_text().splitlines()
        ]
        assert steps == [1, 2, 3, 4, 8, 12, 16, 20], (r.id, steps)
        assert [c[0] for c in registry.checkpoints(r.id)][-1] == 20
    # one slice: no two attempts of the runs held it at once
    spans = sorted(span for r in runs for span in held(registry.events([r])))
    assert len(spans) == 3
    for (_, end), (begin, _) in itertools.pairwise(spans):
        assert end <= begin, "two runs held the one slice at once"
