"""Runs on multi-host TPU slices, on a real Ray cluster started by the test: two worker nodes declare
the two 4-chip hosts of one v6e-8 slice (Ray's TPU node labels: the slice's name, each host's worker
id, the pod type; the head resource on host 0), as Cloud TPU's 2x4 slices on two VMs do. Each run asks
for ``tpu-v6e-8`` on two hosts: Ray's ``SlicePlacementGroup`` reserves the slice whole, one process
per host joins one JAX runtime (on CPU here), and the run trains data-parallel over both."""

from __future__ import annotations

import json
from pathlib import Path

from tests.core.test_ray_cluster import EXPERIMENTS, ray_cluster, submit

STUDY = """\
study: gang_micro
extends: {baseline}
axes:
  train.lr: [3.0e-4]
profiles:
  tiny:
    resources.accelerator: tpu-v6e-8
    resources.hosts: 2
    train.steps: 12
    train.batch_size: 4
    train.checkpoint_every: 6
    train.keep_every: 12
    train.log_every: 3
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


def test_a_run_on_a_two_host_slice_trains_on_both_hosts_one_run_per_slice(home: Path, tmp_path: Path) -> None:
    from i1lab.registry import Registry

    study = tmp_path / "gang.yaml"
    study.write_text(STUDY.format(baseline=EXPERIMENTS / "baseline.yaml"))
    args, env = [slice_host(0), slice_host(1)], [slice_env(0), slice_env(1)]
    with ray_cluster(tmp_path, 2, head_resources=None, worker_args=args, worker_env=env) as cluster:
        proc = submit(study, cluster.address, cluster.env, home)
        out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out

    registry = Registry()
    runs = registry.runs()
    assert len(runs) == 2 and all((r.status, r.step) == ("finished", 12) for r in runs), out
    spans = []
    for run in runs:
        log = registry.events([run.id])
        started = [e for e in log if e.kind == "started"]
        assert len(started) == 1 and "data parallel over 2 devices of 2 hosts" in (started[0].detail or "")
        finished = next(e for e in log if e.kind == "finished")
        spans.append((started[0].at, finished.at))
        # one record of each logged step: host 0 alone writes the run's files
        steps = [
            json.loads(x)["step"]
            for x in (Path(run.workdir or "") / "metrics.jsonl").read_text().splitlines()
        ]
        assert steps == [1, 2, 3, 6, 9, 12]
        assert [c[0] for c in registry.checkpoints(run.id)] == [6, 12]
    (_, first_end), (second_start, _) = sorted(spans)
    assert first_end <= second_start, "two runs held the one slice at once"
