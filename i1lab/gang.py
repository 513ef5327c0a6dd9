"""A run on a multi-host TPU slice: the slice reserved whole with Ray's own TPU support, one process per
host, all joined in one JAX runtime.

:func:`execute_slice` is the Ray task the scheduler launches for such a run (it asks for no resources
itself). It reserves a slice of the run's type with :class:`ray.util.tpu.SlicePlacementGroup` (Ray
claims the slice's head resource, then gang-schedules one bundle per host on the hosts labelled with
that slice's name), asks host 0 for a free port for JAX's coordination service, and starts one
:func:`member` task per bundle. Member 0 is the run's worker proper (:func:`i1lab.worker.execute_run`:
the lease, the fencing token, the log, the registry records, the evaluations); the others only train
(:func:`follow`). The slice is held until the run ends and then released (the head resource too, so
no single-host run lands on a slice whose chips a gang uses).

How the gang ends decides the outcome the scheduler sees:

- member 0 returns: its outcome; members still running are stopped;
- a member's worker or node dies, or a member cannot join: the gang is stopped and the run is
  ``interrupted`` (the scheduler releases the lease and retries it; it resumes from its checkpoint).
  Member 0 itself reports ``interrupted`` when its training raises an unexpected error in a gang (a
  collective whose peer died fails that way, often before Ray reports the death);
- another member raises: member 0 is given ``GANG_GRACE_SECONDS`` to end by itself (a run's own
  error, a NaN loss, reaches every host at the same step), then the gang is stopped and the run is
  failed (``raised``).
"""

from __future__ import annotations

import socket
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from i1lab.leases import node_name
from i1lab.spec.run import ResourcesSpec
from i1lab.train.distributed import Gang
from i1lab.worker import Outcome, first_line

GANG_GRACE_SECONDS = 30.0

#: the topology of each v6e slice size (Cloud TPU's names; a v6e-8 is 2x4 on one or two hosts)
V6E_TOPOLOGY = {8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}


class SliceShape(BaseModel):
    """What :class:`ray.util.tpu.SlicePlacementGroup` needs to reserve a run's slice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    accelerator: str  # e.g. tpu-v6e-16
    version: str  # e.g. v6e
    topology: str  # e.g. 4x4
    hosts: int
    chips_per_host: int


def slice_shape(resources: ResourcesSpec) -> SliceShape:
    """The slice a run's resources ask for (a TPU slice of several hosts). Pure."""
    acc = resources.accelerator
    _, version, size = acc.split("-")
    chips = int(size)
    hosts = resources.slice_hosts
    return SliceShape(
        accelerator=acc,
        version=version,
        topology=V6E_TOPOLOGY[chips],
        hosts=hosts,
        chips_per_host=chips // hosts,
    )


def coordinator_address() -> str:
    """``ip:port`` for JAX's coordination service on this host (a port free this moment)."""
    import ray

    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return f"{ray.util.get_node_ip_address()}:{port}"


def member(call: dict[str, Any], gang: Gang, fn: Any = None) -> Outcome | str | None:
    """One host's process of a multi-host run: join the gang, then host 0 runs the run (lease and
    all: ``fn``, :func:`i1lab.worker.execute_run` by default) and the others train beside it.
    A host that cannot join returns why (the slice's fault, not the run's: it is retried)."""
    from i1lab.train.distributed import join
    from i1lab.worker import execute_run

    try:
        join(gang)
    except Exception as exc:
        return f"host {gang.index} could not join the gang at {gang.coordinator}: {first_line(exc)}"
    if gang.index == 0:
        return (fn or execute_run)(**call)
    follow(call["run_id"], call.get("database_url"), call.get("workdir"))
    return None


def follow(run_id: int, database_url: str | None, workdir: str | None) -> None:
    """Train registry run ``run_id`` as a host other than the first: same state, own share of each
    batch, no records (host 0 keeps them)."""
    from pathlib import Path

    from i1lab.spec.run import RunSpec
    from i1lab.train.runner import Hooks, train
    from i1lab.worker import _parent_dir, _registry, freeze_heap

    registry = _registry(database_url)
    record = registry.run(run_id)
    spec = RunSpec.model_validate(record.spec)
    freeze_heap()
    train(spec, Path(workdir or record.workdir or "."), Hooks(), init_from=_parent_dir(registry, spec))


def execute_slice(call: dict[str, Any], shape: SliceShape, fn: Any = None) -> Outcome:
    """Run ``call`` (:func:`i1lab.worker.execute_run`'s arguments) on a whole slice of ``shape``."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    from ray.util.tpu import SlicePlacementGroup

    t0 = time.perf_counter()
    handle = SlicePlacementGroup(
        topology=shape.topology,
        accelerator_version=shape.version,
        chips_per_vm=shape.chips_per_host,
        head_reservation_timeout_s=None,  # wait for a slice, as a single-host run waits for a host
        name=f"i1lab-run-{call['run_id']}",
    )
    try:
        pg = handle.placement_group
        assert pg is not None
        ray.get(pg.ready())

        def on(bundle: int) -> PlacementGroupSchedulingStrategy:
            return PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=bundle)

        probe = ray.remote(coordinator_address).options(num_cpus=0, scheduling_strategy=on(0))
        address = ray.get(probe.remote())
        bundle = dict(handle.bundle_resources)
        cpus = bundle.pop("CPU", 0.0)
        task = ray.remote(max_calls=1)(member)  # a process joins one JAX runtime in its life
        refs = [
            task.options(
                num_cpus=cpus,
                resources=bundle,
                max_retries=0,
                scheduling_strategy=on(i),
                name=f"i1lab:run {call['run_id']} host {i}/{shape.hosts}",
            ).remote(call, Gang(coordinator=address, processes=handle.num_hosts, index=i), fn)
            for i in range(handle.num_hosts)
        ]
        return _await_gang(refs, call, t0)
    finally:
        handle.shutdown()


def _await_gang(refs: list[Any], call: dict[str, Any], t0: float) -> Outcome:
    import ray
    from ray.exceptions import RayTaskError

    leader, pending = refs[0], list(refs)
    failure: BaseException | str | None = None  # the first failure of a host other than the first
    deadline: float | None = None
    try:
        while pending:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, pending = ray.wait(pending, num_returns=1, timeout=timeout)
            if not done:
                break  # host 0 did not end within the grace period after another host failed
            ref = done[0]
            try:
                value = ray.get(ref)
            except RayTaskError as exc:
                if ref == leader:
                    return _failed(exc, call, t0)
                if failure is None:  # host 0 meets the same error at the same step, or soon fails
                    failure, deadline = exc, time.monotonic() + GANG_GRACE_SECONDS
                continue
            except Exception as exc:  # a host died: the slice is broken, stop the gang now
                return _failed(exc, call, t0)
            if isinstance(value, str):  # a host could not join
                return _failed(value, call, t0)
            if ref == leader:
                assert isinstance(value, Outcome)
                return value
        assert failure is not None
        return _failed(failure, call, t0)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def _failed(exc: BaseException | str, call: dict[str, Any], t0: float) -> Outcome:
    """The outcome of a gang one of whose hosts ended without one: its code raised (the run is failed
    here, as :func:`i1lab.worker.execute_batch` fails a run that raised), or it died or could not join
    (interrupted)."""
    from ray.exceptions import RayTaskError

    from i1lab.worker import _registry

    reason = exc if isinstance(exc, str) else first_line(exc)
    seconds = time.perf_counter() - t0
    if isinstance(exc, RayTaskError):
        owner = call.get("owner")
        if owner:
            _registry(call.get("database_url")).interrupt_lease(
                call["run_id"], owner, reason, status="failed", reason=reason, interrupted=False
            )
        return Outcome(
            run_id=call["run_id"], status="raised", reason=reason, seconds=seconds, node=node_name()
        )
    return Outcome(
        run_id=call["run_id"], status="interrupted", reason=reason, seconds=seconds, node=node_name()
    )
