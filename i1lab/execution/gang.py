"""A run on a multi-host TPU slice: the slice reserved whole with Ray's own TPU support, one process per
host, all joined in one JAX runtime.

:func:`execute_slice` is the Ray task the scheduler launches for such a run (it asks for no resources
itself). It claims a slice of the run's type the way Ray's ``ray.util.tpu`` does (a placement group on
the head resource of a slice's host 0, which names the slice through its ``ray.io/tpu-slice-name``
label), then reserves every host of that slice with :class:`ray.util.tpu.SlicePlacementGroup`, asks
host 0 for a free port for JAX's coordination service, and starts one :func:`member` task per host,
host ``i`` on the slice's TPU worker ``i``. Member 0 is the run's worker proper
(:func:`i1lab.execution.worker.execute_run`: the lease, the fencing token, the log, the registry records, the
evaluations); the others only train (:func:`follow`). Both placement groups are named after the
attempt (:func:`slice_group_names`) and held until the run ends (the head too, so no single-host run
lands on a slice whose chips a gang uses); the driver removes them when it stops an attempt, since a
placement group made by a task outlives it.

How the gang ends decides the outcome the scheduler sees:

- member 0 returns: its outcome; the other members are stopped;
- a member's worker or node dies, a member cannot join, or the slice gives out before the gang
  starts: the gang is stopped and the run is ``interrupted`` (the scheduler releases the lease and
  retries it; it resumes from its checkpoint). Member 0 itself reports ``interrupted`` when its
  training raises an unexpected error in a gang (a collective whose peer died fails that way, often
  before Ray reports the death);
- member 0's own code raises: the run is failed (``raised``);
- another member raises: member 0 is given ``GANG_GRACE_SECONDS`` to end by itself (a run's own
  error, a NaN loss, reaches every host at the same step and member 0 records it); if it does not,
  the gang is stopped and the run is ``interrupted`` (that error may come from a third host's death),
  which the scheduler's bounded retries turn into a failure if it keeps happening.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from i1lab.execution.nodes import node_name
from i1lab.execution.worker import Outcome, RunCall, first_line
from i1lab.spec.run import ResourcesSpec
from i1lab.train.distributed import Gang

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


def member(call: RunCall, gang: Gang, fn: Any = None) -> Outcome | str:
    """One host's process of a multi-host run: join the gang, then host 0 runs the run (lease and
    all: ``fn``, :func:`i1lab.execution.worker.execute_run` by default) and returns its outcome; the others
    train beside it and then wait, alive, to be stopped once host 0 is done (its evaluations may take
    a while). A host that cannot join returns why (the slice's fault, not the run's: it is retried)."""
    from i1lab.execution.worker import execute_run
    from i1lab.train.distributed import join

    try:
        join(gang)
    except Exception as exc:
        return f"host {gang.index} could not join the gang at {gang.coordinator}: {first_line(exc)}"
    import jax

    if jax.process_index() != gang.index:  # process 0 writes the files: it must be the lease holder
        return f"host {gang.index} joined as JAX process {jax.process_index()}"
    if gang.index == 0:
        return (fn or execute_run)(**call.model_dump())
    follow(call.run_id, call.database_url, call.workdir)
    while True:  # alive (JAX's coordination service expects every process) until host 0 is done
        time.sleep(60)


def follow(run_id: int, database_url: str | None, workdir: str | None) -> None:
    """Train registry run ``run_id`` as a host other than the first: same state, own share of each
    batch, no records (host 0 keeps them)."""
    from pathlib import Path

    from i1lab.execution.worker import freeze_heap, parent_dir, registry_for
    from i1lab.spec.run import RunSpec
    from i1lab.train.runner import Hooks, train

    registry = registry_for(database_url)
    record = registry.run(run_id)
    spec = RunSpec.model_validate(record.spec)
    freeze_heap()
    train(spec, Path(workdir or record.workdir or "."), Hooks(), init_from=parent_dir(registry, spec))


def slice_group_names(owner: str) -> tuple[str, str]:
    """The names of the two placement groups an attempt holds (the slice's head, then its hosts): named,
    so that the driver can remove them when it stops the attempt (a placement group made by a task
    outlives the task; Ray frees it only with the job). Pure."""
    return f"i1lab-slice-head:{owner}", f"i1lab-slice:{owner}"


def remove_slice_groups(owner: str) -> None:
    """Remove the placement groups of attempt ``owner`` if they exist (idempotent)."""
    import contextlib

    import ray
    from ray.util.placement_group import get_placement_group, remove_placement_group

    for name in slice_group_names(owner):
        with contextlib.suppress(ValueError, ray.exceptions.RayError):
            remove_placement_group(get_placement_group(name))


def execute_slice(call: RunCall, shape: SliceShape, fn: Any = None) -> Outcome:
    """Run ``call`` (:func:`i1lab.execution.worker.execute_run`'s arguments) on a whole slice of ``shape``.

    The slice is claimed as Ray claims one (a placement group on the head resource of a slice's host 0,
    whose ``ray.io/tpu-slice-name`` label then names the slice), but with a named group the driver can
    remove; :class:`ray.util.tpu.SlicePlacementGroup` then places one bundle on each host of that slice.
    Host ``i`` of the gang is the slice's TPU worker ``i`` (JAX numbers the processes of a TPU slice so)."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    t0 = time.perf_counter()
    owner = call.owner or f"run-{call.run_id}"
    head_name, hosts_name = slice_group_names(owner)
    pod = shape.accelerator.removeprefix("tpu-")
    handle: Any = None
    head = placement_group(
        [{f"TPU-{pod}-head": 1}],
        name=head_name,
        bundle_label_selector=[{"ray.io/tpu-worker-id": "0", "ray.io/tpu-pod-type": pod}],
    )
    try:
        ray.get(head.ready())  # waits for a free slice, as a single-host run waits for a host
        labels = _bundle_labels(head)
        slice_name = labels[0].get("ray.io/tpu-slice-name")
        if not slice_name:
            return _failed(
                f"the {shape.accelerator} slice's host 0 has no ray.io/tpu-slice-name label", call, t0
            )
        from ray.util.tpu import SlicePlacementGroup

        handle = SlicePlacementGroup(
            topology=shape.topology,
            accelerator_version=shape.version,
            chips_per_vm=shape.chips_per_host,
            name=hosts_name,
            bundle_label_selector=[{"ray.io/tpu-slice-name": slice_name}] * shape.hosts,
        )
        pg = handle.placement_group
        assert pg is not None
        ray.get(pg.ready())
        order = _by_worker_id(_bundle_labels(pg))  # order[i]: the bundle on the slice's TPU worker i

        def on(i: int) -> PlacementGroupSchedulingStrategy:
            return PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=order[i])

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
                name=f"i1lab:run {call.run_id} host {i}/{shape.hosts} of {slice_name}",
            ).remote(call, Gang(coordinator=address, processes=shape.hosts, index=i), fn)
            for i in range(shape.hosts)
        ]
        return _await_gang(refs, call, t0)
    except ray.exceptions.RayError as exc:  # the slice gave out before the gang ran: not the run's fault
        if isinstance(exc, ray.exceptions.RayTaskError) and not _infrastructure(exc):
            raise
        return _failed(f"reserving the slice failed: {first_line(exc)}", call, t0)
    finally:
        if handle is not None:
            handle.shutdown()
        remove_placement_group(head)


def _infrastructure(exc: BaseException) -> bool:
    """Whether a Ray task error is a Ray failure (a node or worker gone) rather than code raising."""
    import ray

    cause = getattr(exc, "cause", None)
    return isinstance(cause, ray.exceptions.RayError) and not isinstance(cause, ray.exceptions.RayTaskError)


def _bundle_labels(pg: Any) -> list[dict[str, str]]:
    """The labels of the node each bundle of a ready placement group is on, by bundle index."""
    import ray
    from ray.util.placement_group import placement_group_table

    where = placement_group_table(pg)["bundles_to_node_id"]
    labels = {n["NodeID"]: dict(n.get("Labels") or {}) for n in ray.nodes()}
    return [labels.get(where[i], {}) for i in range(len(where))]


def _by_worker_id(labels: list[dict[str, str]]) -> list[int]:
    """Bundle indices ordered by their host's ``ray.io/tpu-worker-id`` (bundle order when a host has
    none). Pure."""

    def key(i: int) -> tuple[int, int]:
        wid = labels[i].get("ray.io/tpu-worker-id", "")
        return (int(wid) if wid.isdigit() else len(labels) + i, i)

    return sorted(range(len(labels)), key=key)


def _await_gang(refs: list[Any], call: RunCall, t0: float) -> Outcome:
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
        assert failure is not None  # host 0 did not end: the error may come from a peer's death
        why = failure if isinstance(failure, str) else first_line(failure)
        return _failed(f"{why} (on a host other than 0)", call, t0)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def _failed(exc: BaseException | str, call: RunCall, t0: float) -> Outcome:
    """The outcome of a gang one of whose hosts ended without one: its code raised (the run is failed
    here, as :func:`i1lab.execution.worker.execute_batch` fails a run that raised), or it died or could not
    join (interrupted)."""
    from ray.exceptions import RayTaskError

    from i1lab.execution.worker import registry_for

    reason = exc if isinstance(exc, str) else first_line(exc)
    seconds = time.perf_counter() - t0
    if isinstance(exc, RayTaskError):
        owner = call.owner
        if owner:
            registry_for(call.database_url).interrupt_lease(
                call.run_id, owner, reason, status="failed", reason=reason, interrupted=False
            )
        return Outcome(run_id=call.run_id, status="raised", reason=reason, seconds=seconds, node=node_name())
    return Outcome(
        run_id=call.run_id,
        status="interrupted",
        reason=reason,
        seconds=seconds,
        node=node_name(),
        cause="dead-worker",
    )
