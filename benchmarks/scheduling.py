"""Scheduling overhead: N no-op runs through i1lab's submit path vs N bare Ray tasks, same local cluster.

    .venv/bin/python benchmarks/scheduling.py [--runs 200] [--cpus 2] [--task-seconds 0] [--profile]

The i1lab side is ``i1lab.submit.submit_study`` on a generated study of N runs (the tiny profile of the
baseline with an N-1 value ``train.lr`` axis): it plans, records the plan, queues every run, launches
one Ray task per run through ``i1lab.scheduler.run_tasks`` and records each outcome — the code path of
``i1lab submit``. Only the body is a no-op: the task is the real ``i1lab.worker.execute_run`` (registry
reads and writes, status and progress, everything around training) with ``train`` and the checkpoint
evaluation replaced by functions that return at once. The bare side is N ``@ray.remote`` tasks that
return their argument, with the same resource request (one CPU), on the same cluster, after the same
warm-up. Both are timed from the first submission to the last result; planning and recording the
plan are counted on i1lab's side. ``--profile`` prints where the driver's time goes (cProfile).
``--task-seconds S`` makes both sides' task bodies sleep S seconds (i1lab's "training"): the overhead
relative to runs that do some work.

Target: i1lab / bare under 1.5x.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def study_text(runs: int) -> str:
    values = ", ".join(f"{(i + 1) * 1.0e-6:.6e}" for i in range(runs - 1))
    return (
        "study: sched_bench\n"
        f"extends: {REPO / 'experiments' / 'baseline.yaml'}\n"
        "axes:\n"
        f"  train.lr: [{values}]\n"
    )


def noop_execute_run(*args: Any, **kwargs: Any) -> Any:
    """``i1lab.worker.execute_run`` with training and evaluation that return at once (runs in the worker).

    Appends its own duration (imports included) to ``$I1LAB_HOME/task_seconds.txt``."""
    t0 = time.perf_counter()
    import i1lab.train.runner as runner

    def train(spec: Any, wd: Any, hooks: Any, init_from: Any = None) -> dict[str, Any]:
        time.sleep(float(os.environ.get("I1LAB_BENCH_TASK_SECONDS", "0")))
        hooks.on_step(spec.train.steps)
        return {"step": spec.train.steps, "loss": 0.0}

    runner.train = train  # type: ignore[assignment]
    runner.eval_steps = lambda spec: set()
    from i1lab.worker import execute_run

    outcome = execute_run(*args, **kwargs)
    with open(Path(os.environ["I1LAB_HOME"]) / "task_seconds.txt", "a") as f:
        f.write(f"{os.getpid()} {time.perf_counter() - t0:.6f}\n")
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--task-seconds", type=float, default=0.0, help="each task body sleeps this long")
    parser.add_argument("--profile", action="store_true", help="cProfile the i1lab driver")
    parser.add_argument("--profile-filter", default="", help="only profile lines whose path matches this")
    parser.add_argument("--profile-lines", type=int, default=15, help="lines of the profile to print")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="i1lab-sched-"))
    os.environ["I1LAB_HOME"] = str(home)
    os.environ.pop("I1LAB_DATABASE_URL", None)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    study = home / "sched_bench.yaml"
    study.write_text(study_text(args.runs))

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

    # warm-up: start the worker processes both sides will use
    ray.get([bare.remote(i) for i in range(4 * args.cpus)])

    t0 = time.perf_counter()
    ray.get([bare.remote(i, args.task_seconds) for i in range(args.runs)])
    bare_s = time.perf_counter() - t0

    import i1lab.scheduler
    import i1lab.worker

    i1lab.worker.execute_run = noop_execute_run
    if hasattr(i1lab.scheduler, "execute_run"):
        i1lab.scheduler.execute_run = noop_execute_run
    from i1lab.submit import submit_study

    quiet = Console(file=io.StringIO(), width=200)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0 = time.perf_counter()
    submit_study(study, "tiny", address=address, progress=False, mlflow=False, console=quiet)
    i1lab_s = time.perf_counter() - t0
    if profiler is not None:
        profiler.disable()

    members = Registry().members("sched_bench")
    finished = sum(m.run.status == "finished" for m in members)
    worker_s = sum(m.run.wall_seconds for m in members)
    tasks = [line.split() for line in (home / "task_seconds.txt").read_text().splitlines()]
    task_s = sorted(float(t) for _, t in tasks)
    first: dict[str, float] = {}
    for pid, t in tasks:
        first.setdefault(pid, float(t))
    if finished != args.runs:
        sys.exit(f"only {finished} of {args.runs} runs finished")
    ray.shutdown()

    body = f"tasks sleep {args.task_seconds:g} s" if args.task_seconds else "no-op tasks"
    print(f"{args.runs} runs, {args.cpus} CPUs, Ray {ray.__version__}, local cluster, {body}")
    print(f"bare Ray tasks          {bare_s:8.3f} s  ({bare_s / args.runs * 1000:.1f} ms per task)")
    print(f"i1lab submit            {i1lab_s:8.3f} s  ({i1lab_s / args.runs * 1000:.1f} ms per run)")
    print(
        f"  tasks in workers      {sum(task_s):8.3f} s  summed: "
        f"median {task_s[len(task_s) // 2] * 1000:.1f} ms, "
        f"first task of each of {len(first)} workers "
        f"{', '.join(f'{t:.2f}' for t in first.values())} s (imports)"
    )
    print(f"  registry: running -> finished {worker_s:8.3f} s summed over runs")
    print(f"ratio i1lab / bare      {i1lab_s / bare_s:8.2f}x  (target < 1.5x)")
    if profiler is not None:
        import pstats

        stats = pstats.Stats(profiler, stream=sys.stdout)
        print("\nwhere the driver's time goes (cumulative seconds, cProfile adds some overhead):")
        wanted = {
            ("spec/study.py", "load_study"): "load the study file",
            ("plan.py", "expand"): "expand into runs",
            ("plan.py", "make_plan"): "plan (hashes, cost, reuse)",
            ("store.py", "record_plan"): "record the plan in the registry",
            ("store.py", "set_status"): "registry status writes (queued, outcomes)",
            ("scheduler.py", "run_tasks"): "launch Ray tasks and wait for them",
            ("worker.py", "wait"): "  of which ray.wait (tasks running)",
            ("report.py", "ablation_table"): "final ablation table",
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
