"""Scheduling overhead: N no-op runs through i1lab's submit path vs N bare Ray tasks, same local cluster.

    .venv/bin/python benchmarks/scheduling.py [--runs 200] [--reps 3] [--cpus 2] [--task-seconds 0]
                                              [--profile [--profile-filter i1lab] [--profile-lines 40]]

The i1lab side is ``i1lab.execution.submit.submit_study`` on a generated study of N runs (the tiny profile of
the baseline with an N-1 value ``train.lr`` axis): it plans, records the plan, queues every run, launches
Ray tasks through ``i1lab.execution.scheduler.run_tasks`` (one per run until the runs prove short, then
batches of
them) and records each outcome — the code path of ``i1lab submit``. Only the body is a no-op: the task
is the real ``i1lab.execution.worker.execute_run`` (registry reads and writes, status and progress, everything
around training) with ``train`` and the checkpoint evaluation replaced by functions that return at once.
The bare side is N ``@ray.remote`` tasks that return their argument, with the same resource request (one
CPU), on the same cluster, after the same warm-up (and a first small i1lab study, which imports i1lab in
each worker process). Both are timed from the first submission to the last result; planning and
recording the plan are counted on i1lab's side, and the "scheduling" column is ``run_tasks`` alone
(queue, leases, attempts, outcomes).

The floor is N bare Ray tasks that do the least a run with an exactly-once lease and a log needs, on
raw sqlite3 in the same journal mode: one transaction taking the lease, a log file in a new folder, one
fenced transaction recording the result (after one transaction inserting the N rows): what the
guarantees themselves cost, without i1lab's layers.

``--database-url postgresql+psycopg://...`` puts i1lab's registry on PostgreSQL (the floor stays on
SQLite). Each repetition runs the three sides one after the other on a new study; the medians are printed.
``--profile`` prints where the driver's time goes (cProfile). ``--task-seconds S`` makes every side's
task bodies sleep S seconds (i1lab's "training"): the overhead relative to runs that do some work.

Target: i1lab / bare under 1.5x.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def study_text(runs: int, name: str = "sched_bench", offset: int = 0) -> str:
    values = ", ".join(f"{(offset + i + 1) * 1.0e-6:.6e}" for i in range(runs - 1))
    return (
        f"study: {name}\nextends: {REPO / 'experiments' / 'baseline.yaml'}\naxes:\n  train.lr: [{values}]\n"
    )


FLOOR_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, status TEXT, owner TEXT, token INTEGER, "
    "expires REAL, finished REAL)"
)


def _floor_connect(db: str, create: bool = False) -> Any:
    """A connection to the floor's database (``create``: set WAL, which persists, and the table)."""
    import sqlite3

    conn = sqlite3.connect(db, timeout=60, isolation_level=None)
    if create:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(FLOOR_SCHEMA)
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def floor_plan(db: Path, ids: range) -> None:
    """The floor's plan: one row per run, inserted in one transaction."""
    conn = _floor_connect(str(db))
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO runs (id, status, token) VALUES (?, 'queued', 0)", [(i,) for i in ids])
    conn.execute("COMMIT")
    conn.close()


_FLOOR: dict[str, Any] = {}


def floor_run(db: str, logs: str, run_id: int, seconds: float) -> int:
    """The least a run with an exactly-once lease and a log can cost, as a bare Ray task on raw sqlite3:
    one transaction that takes the lease (conditional on the token), a log file in the run's own new
    folder, and one transaction that records the result and releases the lease (fenced)."""
    conn = _FLOOR.get(db) or _FLOOR.setdefault(db, _floor_connect(db))
    conn.execute("BEGIN IMMEDIATE")
    token = conn.execute(
        "UPDATE runs SET owner = ?, token = token + 1, expires = ?, status = 'running' "
        "WHERE id = ? AND owner IS NULL RETURNING token",
        (f"{os.getpid()}", time.time() + 30, run_id),
    ).fetchone()
    conn.execute("COMMIT")
    folder = Path(logs) / str(run_id) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "attempt.log", "a") as log:
        log.write(f"attempt of run {run_id}, token {token}\n")
        time.sleep(seconds)
        log.write("finished\n")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "UPDATE runs SET status = 'finished', owner = NULL, token = token + 1, finished = ? "
        "WHERE id = ? AND token = ?",
        (time.time(), run_id, token[0] if token else -1),
    )
    conn.execute("COMMIT")
    return run_id


def noop_execute_run(*args: Any, **kwargs: Any) -> Any:
    """``i1lab.execution.worker.execute_run`` with training and evaluation that return at once (runs in the
    worker).

    Appends its own duration (imports included) to ``$I1LAB_HOME/task_seconds.txt``."""
    t0 = time.perf_counter()
    import i1lab.train.runner as runner

    def train(spec: Any, wd: Any, hooks: Any, init_from: Any = None) -> dict[str, Any]:
        time.sleep(float(os.environ.get("I1LAB_BENCH_TASK_SECONDS", "0")))
        hooks.on_step(spec.train.steps)
        return {"step": spec.train.steps, "loss": 0.0}

    runner.train = train  # type: ignore[assignment]
    runner.eval_steps = lambda spec: set()
    from i1lab.execution.worker import execute_run

    outcome = execute_run(*args, **kwargs)
    with open(Path(os.environ["I1LAB_HOME"]) / "task_seconds.txt", "a") as f:
        f.write(f"{os.getpid()} {time.perf_counter() - t0:.6f}\n")
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--task-seconds", type=float, default=0.0, help="each task body sleeps this long")
    parser.add_argument("--reps", type=int, default=3, help="alternate the sides this many times")
    parser.add_argument(
        "--database-url", default="", help="i1lab's registry (an empty PostgreSQL database); default SQLite"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the i1lab driver")
    parser.add_argument("--profile-filter", default="", help="only profile lines whose path matches this")
    parser.add_argument("--profile-lines", type=int, default=15, help="lines of the profile to print")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="i1lab-sched-"))
    os.environ["I1LAB_HOME"] = str(home)
    if args.database_url:
        os.environ["I1LAB_DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("I1LAB_DATABASE_URL", None)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import ray
    from rich.console import Console

    from i1lab import paths
    from i1lab.registry import Registry

    Registry()  # create the registry before timing (a fresh database's migrations are not scheduling)
    env = {
        "I1LAB_HOME": str(home),
        "I1LAB_DATABASE_URL": paths.database_url(),
        "JAX_PLATFORMS": "cpu",
        "I1LAB_BENCH_TASK_SECONDS": str(args.task_seconds),
    }
    ray.init(
        address="local",
        num_cpus=args.cpus,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        runtime_env={"env_vars": env},
    )
    address = ray.get_runtime_context().gcs_address

    @ray.remote(num_cpus=1)
    def bare(i: int, seconds: float = 0.0) -> int:
        time.sleep(seconds)
        return i

    floor_db = home / "floor.db"
    _floor_connect(str(floor_db), create=True).close()
    floor_task = ray.remote(num_cpus=1)(floor_run)

    # warm-up: start the worker processes all sides will use
    ray.get([bare.remote(i) for i in range(4 * args.cpus)])
    ray.get(
        [floor_task.remote(str(floor_db), str(home / "floor"), -1 - i, 0.0) for i in range(2 * args.cpus)]
    )

    import i1lab.execution.scheduler
    import i1lab.execution.worker

    i1lab.execution.worker.execute_run = noop_execute_run
    if hasattr(i1lab.execution.scheduler, "execute_run"):
        i1lab.execution.scheduler.execute_run = noop_execute_run
    from i1lab.execution.submit import submit_study

    quiet = Console(file=io.StringIO(), width=200)
    # the scheduling phase alone: run_tasks (queue, leases, attempts, outcomes), timed inside submit
    scheduling: list[float] = []
    real_run_tasks = i1lab.execution.scheduler.run_tasks

    def timed_run_tasks(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return real_run_tasks(*a, **k)
        finally:
            scheduling.append(time.perf_counter() - t)

    i1lab.execution.scheduler.run_tasks = timed_run_tasks
    # warm-up: a first small study imports i1lab in each worker process (about 0.4 s each), as the
    # warm-up above starts the bare side's workers
    warm = home / "sched_warmup.yaml"
    warm.write_text(study_text(4 * args.cpus, "sched_warmup", offset=100_000))
    submit_study(warm, "tiny", address=address, progress=False, mlflow=False, console=quiet)
    scheduling.clear()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    rows: list[tuple[float, float, float, float]] = []
    for rep in range(args.reps):
        t0 = time.perf_counter()
        ray.get([bare.remote(i, args.task_seconds) for i in range(args.runs)])
        bare_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        base = (rep + 1) * 1_000_000
        floor_plan(floor_db, range(base, base + args.runs))
        ray.get(
            [
                floor_task.remote(str(floor_db), str(home / "floor"), base + i, args.task_seconds)
                for i in range(args.runs)
            ]
        )
        floor_s = time.perf_counter() - t0

        name = f"sched_bench_{rep}"
        study = home / f"{name}.yaml"
        study.write_text(study_text(args.runs, name, offset=rep * args.runs))
        (home / "task_seconds.txt").unlink(missing_ok=True)
        if profiler is not None:
            profiler.enable()
        t0 = time.perf_counter()
        submit_study(study, "tiny", address=address, progress=False, mlflow=False, console=quiet)
        i1lab_s = time.perf_counter() - t0
        if profiler is not None:
            profiler.disable()
        members = Registry().members(name)
        finished = sum(m.run.status == "finished" for m in members)
        if finished != args.runs:
            sys.exit(f"only {finished} of {args.runs} runs finished")
        rows.append((bare_s, floor_s, i1lab_s, scheduling[-1]))
        if rep == args.reps - 1:
            worker_s = sum(m.run.wall_seconds for m in members)
            tasks = [line.split() for line in (home / "task_seconds.txt").read_text().splitlines()]
            task_s = sorted(float(t) for _, t in tasks)
    ray.shutdown()

    body = f"tasks sleep {args.task_seconds:g} s" if args.task_seconds else "no-op tasks"
    body += ", registry on " + ("PostgreSQL" if args.database_url.startswith("postgresql") else "SQLite")
    print(f"{args.runs} runs, {args.cpus} CPUs, Ray {ray.__version__}, local cluster, {body}")
    print("rep   bare Ray      floor      i1lab  (scheduling)  i1lab/bare (scheduling)  floor/bare")
    for rep, (b, f, i, sch) in enumerate(rows):
        print(
            f"{rep:3d} {b:8.3f} s {f:8.3f} s {i:8.3f} s {sch:8.3f} s "
            f"{i / b:10.2f}x {sch / b:10.2f}x {f / b:10.2f}x"
        )
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(
        f"median {med[0]:6.3f} s {med[1]:8.3f} s {med[2]:8.3f} s {med[3]:8.3f} s "
        f"{statistics.median(i / b for b, _, i, _ in rows):10.2f}x "
        f"{statistics.median(sch / b for b, _, _, sch in rows):10.2f}x "
        f"{statistics.median(f / b for b, f, _, _ in rows):10.2f}x"
    )
    print("target: i1lab / bare under 1.5x")
    print(
        f"last rep: tasks in workers {sum(task_s):.3f} s summed, "
        f"median {task_s[len(task_s) // 2] * 1000:.1f} ms; "
        f"registry running -> finished {worker_s:.3f} s summed over runs"
    )
    if profiler is not None:
        import pstats

        stats = pstats.Stats(profiler, stream=sys.stdout)
        print("\nwhere the driver's time goes, all reps (cumulative seconds; cProfile adds some overhead):")
        wanted = {
            ("spec/study.py", "load_study"): "load the study file",
            ("plan/planner.py", "expand"): "expand into runs",
            ("plan/planner.py", "make_plan"): "plan (hashes, cost, reuse)",
            ("registry/studies.py", "record_plan"): "record the plan in the registry",
            ("scheduler.py", "run_tasks"): "launch Ray tasks and wait for them",
            ("worker.py", "wait"): "  of which ray.wait (tasks running)",
            ("report/tables.py", "ablation_table"): "final ablation table",
        }
        raw: Any = stats.stats  # type: ignore[attr-defined]
        for (file, _line, func), (_cc, calls, _tt, cum, _callers) in sorted(
            raw.items(), key=lambda kv: -kv[1][3]
        ):
            for (suffix, name), what in wanted.items():
                if func == name and file.endswith(suffix):
                    print(f"  {what:45s} {cum:7.3f} s  ({calls} calls)")
        stats.sort_stats("cumulative").print_stats(args.profile_filter, args.profile_lines)


if __name__ == "__main__":
    main()
