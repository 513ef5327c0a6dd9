"""Scheduling runs on Ray: an in-process local cluster by default, any cluster with ``--address``.

Each run is one Ray task that calls :func:`i1lab.worker.execute_run`; the task asks for the resources
its spec names (CPU cores, GPUs, or a TPU slice's head resource). Ray decides placement and
concurrency; the driver only waits, shows progress from the registry, and mirrors finished runs to MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from i1lab import paths
from i1lab.spec.run import ResourcesSpec
from i1lab.worker import Outcome


class Task(BaseModel):
    run_id: int
    name: str
    resources: ResourcesSpec
    workdir: str
    hash: str = ""
    parent_hash: str | None = None  # data.resume_from: runs after that task


def ray_options(resources: ResourcesSpec) -> dict[str, Any]:
    """Ray task options for a run's resource request. Pure."""
    acc = resources.accelerator
    if acc.startswith("cpu"):
        cpus = int(acc.split(":")[1]) if ":" in acc else 1
        return {"num_cpus": cpus}
    if acc.startswith("gpu:"):
        return {"num_cpus": 1, "num_gpus": int(acc.split(":")[1])}
    # A TPU slice: the head resource Ray advertises once per slice (e.g. "TPU-v6e-8-head").
    return {"num_cpus": 1, "resources": {f"TPU-{acc.removeprefix('tpu-')}-head": 1}}


def order_tasks(tasks: list[Task]) -> list[Task]:
    """Parents (``resume_from``) before children, otherwise in the given order. Pure."""
    by_hash = {t.hash: t for t in tasks}
    done: set[str] = set()
    out: list[Task] = []

    def visit(t: Task) -> None:
        if t.hash in done:
            return
        done.add(t.hash)
        parent = by_hash.get(t.parent_hash or "")
        if parent is not None:
            visit(parent)
        out.append(t)

    for t in tasks:
        visit(t)
    return out


def _init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    env = {
        "I1LAB_HOME": str(paths.home()),
        "I1LAB_DATABASE_URL": paths.database_url(),
        "I1LAB_WORKER_THREADS": os.environ.get("I1LAB_WORKER_THREADS", "1"),
        "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", ""),
    }
    env = {k: v for k, v in env.items() if v}
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": "ERROR",
        "log_to_driver": False,
        "runtime_env": {"env_vars": env},
    }
    if address:
        ray.init(address=address, **kwargs)
    else:
        # "local" starts a fresh in-process cluster even when another one runs on this machine.
        ray.init(address="local", num_cpus=os.cpu_count() or 1, **kwargs)


def run_tasks(
    tasks: list[Task],
    *,
    address: str | None = None,
    on_poll: Callable[[], None] = lambda: None,
    on_done: Callable[[Outcome], None] = lambda outcome: None,
    poll_seconds: float = 1.0,
) -> list[Outcome]:
    """Run every task on Ray and wait for all of them; ``on_poll`` is called while waiting."""
    if not tasks:
        return []
    import ray

    from i1lab.worker import execute_run

    _init_ray(address)
    remote: Any = ray.remote(execute_run)
    url = paths.database_url()
    pending: dict[Any, Task] = {}
    last_in_workdir: dict[str, Any] = {}
    by_hash: dict[str, Any] = {}
    for t in order_tasks(tasks):
        # Runs sharing a training (same work directory) run one after the other: the first trains, the
        # next ones find the finished checkpoints and only evaluate. A resolution stage waits for the run
        # it resumes from. Ray orders them through the arguments (object refs resolve before a task runs).
        after = [ref for ref in (last_in_workdir.get(t.workdir), by_hash.get(t.parent_hash or "")) if ref]
        ref = remote.options(**ray_options(t.resources), max_retries=0, name=f"i1lab:{t.name}").remote(
            t.run_id, url, t.workdir, *after
        )
        last_in_workdir[t.workdir] = ref
        by_hash[t.hash] = ref
        pending[ref] = t
    outcomes: list[Outcome] = []
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_seconds)
            on_poll()
            for ref in ready:
                task = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:
                    cause = getattr(exc, "cause", None) or exc
                    outcome = Outcome(
                        run_id=task.run_id,
                        status="failed",
                        reason=f"{type(cause).__name__}: {cause}".splitlines()[0],
                        seconds=0.0,
                    )
                outcomes.append(outcome)
                on_done(outcome)
        on_poll()
    finally:
        if address is None:
            ray.shutdown()
    return outcomes
