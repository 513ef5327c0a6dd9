"""What the driver launches, planned without Ray: tasks, the study's policy, the Ray options a run's
resources ask for, how many runs fit the cluster, when short runs are batched, in which order runs
start and which wait for others, retry backoff and how a failure is classed. Pure functions over plain
values (:mod:`i1lab.execution.scheduler` holds the driver that acts on them).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from i1lab.plan.steps import EvalStep
from i1lab.spec.run import ResourcesSpec

WAITING_FRESH_SECONDS = 10.0  # a run marked waiting longer ago than this no longer holds others back
CLUSTER_SECONDS = 5.0  # the cluster's total resources are read again at most this often
SHORT_SECONDS = 1.0  # attempts quicker than this are pipelined (see ``pipeline_room``)
SHORT_SAMPLE = 2  # ... once this many of the driver's latest attempts all were
PIPELINE_MAX = 256  # at most this many tasks per slot in flight


class Task(BaseModel):
    """One registry run for the driver to bring to an end: trained (``train``: the run's lease, its
    checkpoints and evaluations, :func:`i1lab.execution.worker.execute_run`), for a search's inference
    trial sampled and scored at checkpoint ``step`` of the work directory it shares (``score``:
    :func:`i1lab.search.run.score_checkpoint`), or, trained already, evaluated (``evaluate``: no lease;
    the run stays as it is whatever the evaluation's outcome)."""

    run_id: int
    name: str
    resources: ResourcesSpec
    workdir: str
    hash: str = ""
    parent_hash: str | None = None  # data.resume_from: runs after that task
    accelerator_hours_est: float | None = None
    kind: Literal["train", "score", "evaluate"] = "train"
    step: int | None = None  # the checkpoint a ``score`` task samples
    #: an ``evaluate`` task: the evaluation steps a run already trained lacks, and the EvalSpec (the
    #: asking study's) they come from (:func:`i1lab.execution.evaluation.evaluate_run`)
    evaluations: list[EvalStep] = []
    eval: dict[str, Any] | None = None


class Policy(BaseModel):
    """What the driver enforces on top of Ray."""

    study: str | None = None
    priority: int = 0  # studies of higher priority go first when they compete for an accelerator kind
    max_concurrent: int | None = Field(None, ge=1)  # runs of the study at once, all submitters together
    budget_hours: float | None = Field(None, gt=0)  # global: accelerator-hours of every run in the registry
    max_retries: int = Field(3, ge=0)  # restarts of an interrupted run
    backoff_seconds: float = Field(2.0, ge=0)  # first retry delay; doubles with each retry
    backoff_max_seconds: float = Field(120.0, ge=0)
    #: where checkpoints are evaluated: ``auto`` (a CPU task for accelerator runs, in the training process
    #: for CPU runs, whose cores a task would only compete for), ``inline`` (in the training process)
    #: or the resources of separate evaluation tasks (``cpu[:N]``, ``gpu:N``, ``tpu-...``)
    eval_accelerator: str = "auto"


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


def eval_options(eval_accelerator: str, resources: ResourcesSpec) -> dict[str, Any] | None:
    """Ray options of a run's evaluation tasks; None: evaluate in the training process. Pure."""
    if eval_accelerator == "inline":
        return None
    if eval_accelerator == "auto":
        if resources.accelerator.startswith("cpu"):
            return None
        eval_accelerator = "cpu"
    return ray_options(ResourcesSpec(accelerator=eval_accelerator))


def _needs(options: dict[str, Any]) -> list[tuple[str, float]]:
    """The Ray resources a task with these options asks for (those above zero). Pure."""
    need: dict[str, float] = {"CPU": float(options.get("num_cpus", 1) or 0)}
    need["GPU"] = float(options.get("num_gpus", 0) or 0)
    need.update({k: float(v) for k, v in (options.get("resources") or {}).items()})
    return [(k, v) for k, v in need.items() if v > 0]


def missing_resources(options: dict[str, Any], cluster: dict[str, float]) -> list[str]:
    """The resources a task with these options asks for that the whole cluster has too little of, as
    ``name: amount`` (empty: it fits somewhere, at least when the cluster is idle). Pure."""
    return [f"{k}: {v:g}" for k, v in _needs(options) if cluster.get(k, 0.0) < v]


def capacity(options: dict[str, Any], cluster: dict[str, float]) -> int:
    """How many tasks with these options the cluster's total resources hold at once (0: none). Pure."""
    counts = [int(cluster.get(k, 0.0) // v) for k, v in _needs(options)]
    return min(counts) if counts else 1_000_000


def pipeline_room(capacity: int, recent: list[float]) -> int:
    """How many tasks of a kind the driver keeps in flight when the cluster holds ``capacity`` of them
    at once and its latest attempts took ``recent`` seconds. Pure.

    Normally ``capacity``: a task is launched when a slot frees, so that a study of higher priority that
    starts waiting meanwhile gets the slot. When the latest ``SHORT_SAMPLE`` attempts all took under
    ``SHORT_SECONDS``, enough more to hold about ``SHORT_SECONDS`` of such runs per slot: the extra
    tasks wait in Ray's own queue and start the moment a slot frees, instead of a round trip through
    this driver per run. What that can cost a study of higher priority that starts waiting is bounded
    by about ``SHORT_SECONDS`` per slot."""
    tail = recent[-SHORT_SAMPLE:]
    if len(tail) < SHORT_SAMPLE or max(tail) >= SHORT_SECONDS:
        return capacity
    per_slot = int(SHORT_SECONDS / max(max(tail), 1e-3))
    return capacity * min(PIPELINE_MAX, max(2, per_slot))


def batches(ids: list[int], capacity: int, room: int) -> list[list[int]]:
    """How runs of one kind launched together are split into Ray tasks, each running its runs one
    after the other. Pure.

    One run per task normally (``room`` equal to ``capacity``). When short runs are pipelined (``room``
    above ``capacity``, see :func:`pipeline_room`) a task takes up to ``room // capacity`` of them —
    about ``SHORT_SECONDS`` of work — but the runs are spread over at least ``capacity`` tasks when
    there are that many, so that every slot gets some: a Ray task round trip and a worker call per
    batch, not per run. Each run keeps its own lease, log and outcome. As batches end and free their
    runs' room, the next ones are smaller (halved over the slots): the work left is shared out more
    finely towards the end of a study, which measured faster than refilling a freed slot with one
    batch as large as the one that ended (800 no-op runs: 0.72-0.83 s against 0.93-1.00 s)."""
    per_task = room // max(1, capacity)
    if per_task <= 1 or len(ids) <= 1:
        return [[i] for i in ids]
    size = max(1, min(per_task, -(-len(ids) // max(1, capacity))))
    return [ids[i : i + size] for i in range(0, len(ids), size)]


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


def dependencies(tasks: list[Task]) -> dict[int, set[int]]:
    """Run id -> the run ids it must wait for: the previous training task of the same work directory
    (runs sharing a training run one after the other) and the run it resumes from. Pure."""
    ordered = order_tasks(tasks)
    by_hash = {t.hash: t.run_id for t in ordered}
    last_in_workdir: dict[str, int] = {}
    deps: dict[int, set[int]] = {}
    for t in ordered:
        training = t.kind == "train"  # a score task only reads its work directory
        wait = {last_in_workdir[t.workdir]} if training and t.workdir in last_in_workdir else set()
        parent = by_hash.get(t.parent_hash or "")
        if parent is not None and parent != t.run_id:
            wait.add(parent)
        deps[t.run_id] = wait
        if training:
            last_in_workdir[t.workdir] = t.run_id
    return deps


def retry_delay(retry: int, base: float, cap: float) -> float:
    """Seconds before retry number ``retry`` (1, 2, ...): exponential backoff. Pure."""
    return float(min(cap, base * 2 ** max(0, retry - 1)))


def failure_kind(exc: BaseException) -> Literal["own", "cancelled", "interrupted"]:
    """How a Ray task ended that returned no outcome: the run's own code raised (``own``: retrying will
    not help), the task was cancelled, or its worker / node / memory gave out (``interrupted``)."""
    from ray.exceptions import RayTaskError, TaskCancelledError

    if isinstance(exc, TaskCancelledError):
        return "cancelled"
    if isinstance(exc, RayTaskError):
        return "own"
    return "interrupted"


class LaunchPlan(BaseModel):
    """Which ready runs to launch now, and which the budget rules out."""

    launch: list[int]
    over_budget: list[int]


def plan_launches(
    ready: list[Task],
    *,
    in_flight: dict[str, int],
    room: dict[str, int],
    study_room: int | None,
    demand: dict[str, int],
    budget_left: float | None,
    committed: float = 0.0,
) -> LaunchPlan:
    """Pick ready tasks (in order) to launch under the policy. Pure.

    ``in_flight``/``room``: this driver's tasks in flight and the most it may have, per accelerator kind;
    ``study_room``: further runs the study's concurrency cap allows (None: no cap); ``demand``: runs of
    higher-priority studies waiting, per kind; ``budget_left``: accelerator-hours of the global budget
    not spent yet (None: no budget) and ``committed``: the estimates of this driver's runs in flight.
    A run whose estimate exceeds what is left is over budget; one that fits only once the runs in
    flight are done (and have spent less than estimated) waits.
    """
    launch: list[int] = []
    over: list[int] = []
    flying = dict(in_flight)
    kinds = {t.resources.accelerator for t in ready}
    closed: set[str] = set()  # kinds with no room left
    for t in ready:
        if budget_left is None and (closed >= kinds or (study_room is not None and study_room <= 0)):
            break  # nothing further can launch, and without a budget nothing is over it
        kind = t.resources.accelerator
        est = t.accelerator_hours_est or 0.0
        if budget_left is not None and est > budget_left:
            over.append(t.run_id)
            continue
        if study_room is not None and study_room <= 0:
            continue
        if flying.get(kind, 0) >= room.get(kind, 1) or demand.get(kind, 0) > 0:
            closed.add(kind)
            continue
        if budget_left is not None and committed + est > budget_left:
            continue
        launch.append(t.run_id)
        flying[kind] = flying.get(kind, 0) + 1
        committed += est
        if study_room is not None:
            study_room -= 1
    return LaunchPlan(launch=launch, over_budget=over)


def eval_resources(eval_accelerator: str, resources: ResourcesSpec) -> ResourcesSpec:
    """Where a run's evaluation tasks run (see ``Policy.eval_accelerator``): its own resources for
    ``inline`` and, under ``auto``, for a CPU run; else a CPU or the resources named. Pure."""
    if eval_accelerator == "inline" or (
        eval_accelerator == "auto" and resources.accelerator.startswith("cpu")
    ):
        return resources
    return ResourcesSpec(accelerator="cpu" if eval_accelerator == "auto" else eval_accelerator)
