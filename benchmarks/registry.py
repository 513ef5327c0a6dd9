"""Benchmark: the registry at campaign scale against MLflow's own search.

Builds a registry of ``--runs`` runs (default 100,000) with the real run spec (75 flattened fields each),
5 benchmarks x ``--steps`` checkpoint steps (default 10) of scores, in studies of 20 runs, then times the
median of ``--reps`` repetitions of:

* filtered queries through ``i1lab.registry.query.runs_frame`` (spec fields, scores at the latest / a given /
the
  best step, ``or`` / ``not`` / ``in``, study membership);
* ``compare`` of a 20-variant study (baseline with 3 seeds, so the noise band is computed) and its curves;
* the same questions through ``mlflow.search_runs`` on an MLflow store holding as many of the same runs
  as can be logged in ``--mlflow-seconds`` (the number is printed).

Prints figures and asserts nothing. Run: ``.venv/bin/python benchmarks/registry.py`` (about 10 minutes
on the 2-core machine; ``--runs 10000`` for a quick look). ``--database-url`` runs it on PostgreSQL.

The bulk load writes through SQLAlchemy Core in large transactions, with the secondary indexes dropped
during the load and rebuilt after (what a bulk loader does); score summaries and each checkpoint's packed
score vector are computed while loading.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCHMARKS = {
    "geneval": ("overall", "geneval-mask2former"),
    "dpg": ("dpg_score", "mplug-large"),
    "prism": ("final_combined_average", "qwen-vl"),
    "cvtg": ("word_accuracy", "paddleocr"),
    "longtext": ("text_score", "qwen-vl"),
}
AXES: dict[str, list[Any]] = {
    "model.backbone": ["cross_attn", "single_stream", "dual_stream"],
    "model.adapter.type": ["mlp", "transformer"],
    "model.adapter.blocks": [1, 2, 3],
    "train.lr": [5e-5, 1e-4, 2e-4, 4e-4],
    "data.resolution": [256, 512],
    "sampling.cfg_scale": [4.0, 7.5, 12.0],
    "model.position_embedding": ["sinusoidal_and_rope", "sinusoidal_only", "rope_only"],
}
STUDY_SIZE = 20


def set_path(spec: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = spec
    for p in parents:
        node = node[p]
    node[leaf] = value


def median_ms(fn: Callable[[], Any], reps: int) -> tuple[float, float, Any]:
    """Median wall and CPU milliseconds of ``reps`` calls after one warm-up call, and the last result.

    CPU time is this process's (SQLite runs in it): on a shared machine it varies less than wall time."""
    fn()  # warm the OS page cache once, as a person re-running a query would
    walls, cpus, result = [], [], None
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
    return statistics.median(walls), statistics.median(cpus), result


def make_runs(n: int, steps: int, seed: int = 0) -> list[dict[str, Any]]:
    """Run descriptions: spec (the real default spec with axis values drawn), hash, study, scores."""
    from i1lab.spec.run import RunSpec

    rng = random.Random(seed)
    base = RunSpec().model_dump(mode="json")
    step_list = [(i + 1) * 50_000 for i in range(steps)]
    runs = []
    for i in range(n):
        spec = json.loads(json.dumps(base))
        study, pos = divmod(i, STUDY_SIZE)
        if study == 0:  # the compare study: baseline with 3 seeds, then 17 one-axis variants
            choices = {k: v[0] for k, v in AXES.items()}
            if pos < 3:
                name, choices["train.seed"] = f"baseline#seed={pos}", pos
            else:
                axis = list(AXES)[pos % len(AXES)]
                value = AXES[axis][1 + pos % (len(AXES[axis]) - 1)]
                choices[axis] = value
                choices["train.seed"] = 100 + pos
                name = f"{axis.rsplit('.', 1)[-1]}={value}#{pos}"
        else:
            choices = {k: rng.choice(v) for k, v in AXES.items()}
            choices["train.seed"] = i
            name = "baseline" if pos == 0 else f"v{pos}"
        for k, v in choices.items():
            set_path(spec, k, v)
        spec["name"] = name
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        quality = rng.gauss(0.5, 0.08) + (0.05 if choices["model.adapter.type"] == "transformer" else 0)
        scores = []
        for b, (metric, judge) in BENCHMARKS.items():
            offset = rng.gauss(0, 0.05)
            for j, st in enumerate(step_list):
                growth = 1 - 0.5 ** (j + 1)
                value = min(1.0, max(0.0, (quality + offset) * growth + rng.gauss(0, 0.01)))
                scores.append((b, metric, judge, st, value))
        runs.append(
            {
                "spec": spec,
                "hash": digest,
                "study": f"study{study:05d}",
                "name": name,
                "pos": pos,
                "scores": scores,
            }
        )
    return runs


def bulk_load(registry: Any, runs: list[dict[str, Any]], batch: int = 2000) -> None:
    from sqlalchemy import Index, insert

    from i1lab.registry.fields import field_row, flatten, run_facts
    from i1lab.registry.records import now
    from i1lab.registry.schema import (
        FieldKeyRow,
        RunFieldRow,
        RunRow,
        ScoreKeyRow,
        ScoreRow,
        ScoreSummaryRow,
        ScoreVectorRow,
        StudyRow,
        StudyRunRow,
    )
    from i1lab.registry.scores import summarize
    from i1lab.registry.vectors import key_id, pack

    tables = [RunFieldRow.__table__, ScoreRow.__table__, ScoreSummaryRow.__table__, StudyRunRow.__table__]
    secondary = [ix for t in tables for ix in t.indexes if isinstance(ix, Index)]  # type: ignore[attr-defined]
    eng = registry.engine
    with registry.session(write=True) as s:
        for ix in secondary:
            ix.drop(s.connection())
    t = now()
    studies = sorted({r["study"] for r in runs})
    keys: set[str] = set()
    with registry.session(write=True) as s:
        conn = s.connection()
        if eng.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA cache_size=-1000000")
        conn.execute(
            insert(StudyRow),
            [{"name": name, "created_at": t, "updated_at": t, "description": "bench"} for name in studies],
        )
        study_ids = {name: i + 1 for i, name in enumerate(studies)}
    for start in range(0, len(runs), batch):
        chunk = runs[start : start + batch]
        with registry.session(write=True) as s:
            conn = s.connection()
            if eng.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA cache_size=-1000000")
            run_rows, field_rows, score_rows, members, summaries, packed = [], [], [], [], [], []
            for offset, r in enumerate(chunk):
                rid = start + offset + 1
                last = max(sc[3] for sc in r["scores"])
                run_rows.append(
                    {
                        "id": rid,
                        "hash": r["hash"],
                        "spec": r["spec"],
                        "status": "finished",
                        "step": last,
                        "total_steps": last,
                        "params": 2_000_000_000,
                        "imported": False,
                        "attempts": 1,
                        "created_at": t,
                        "updated_at": t,
                        "stage": 0,
                        "wall_seconds": 3600.0,
                        **run_facts(r["spec"]),
                    }
                )
                flat = flatten(r["spec"])
                keys.update(flat)
                field_rows.extend(field_row(rid, k, flat[k]) for k in sorted(flat))
                score_rows.extend(
                    {
                        "run_id": rid,
                        "benchmark": b,
                        "metric": m,
                        "judge": j,
                        "step": st,
                        "value": v,
                        "created_at": t,
                    }
                    for b, m, j, st, v in r["scores"]
                )
                summaries.extend(summarize((rid, b, m, j, st, v) for b, m, j, st, v in r["scores"]).values())
                by_step: dict[int, list[tuple[int, float]]] = {}
                for b, m, j, st, v in r["scores"]:
                    by_step.setdefault(st, []).append((key_id(b, m, j), v))
                packed.extend(
                    {"run_id": rid, "step": st, "entries": pack(e)} for st, e in sorted(by_step.items())
                )
                members.append(
                    {
                        "study_id": study_ids[r["study"]],
                        "name": r["name"],
                        "run_id": rid,
                        "label": r["name"],
                        "is_baseline": r["name"].startswith("baseline"),
                        "baseline": r["name"]
                        if r["name"].startswith("baseline")
                        else "baseline#seed=0"
                        if r["study"] == "study00000"
                        else "baseline",
                        "varied": {},
                        "position": r["pos"],
                    }
                )
            conn.execute(insert(RunRow), run_rows)
            conn.execute(insert(RunFieldRow), field_rows)
            conn.execute(insert(ScoreRow), score_rows)
            conn.execute(insert(ScoreSummaryRow), summaries)
            conn.execute(insert(ScoreVectorRow), packed)
            conn.execute(insert(StudyRunRow), members)
    with registry.session(write=True) as s:
        conn = s.connection()
        if eng.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA cache_size=-1000000")
        conn.execute(insert(FieldKeyRow), [{"key": k} for k in sorted(keys)])
        scored = [{"benchmark": b, "metric": m, "judge": j} for b, (m, j) in sorted(BENCHMARKS.items())]
        conn.execute(insert(ScoreKeyRow), scored)
        for ix in secondary:
            ix.create(conn)
    with eng.connect() as conn:  # planner statistics, as after any bulk load
        conn.exec_driver_sql("ANALYZE")
        conn.commit()


def mlflow_load(uri: str, runs: list[dict[str, Any]], seconds: float) -> tuple[str, int]:
    """Log runs (flattened spec as params, scores per step) until ``seconds`` pass; returns (exp, n)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from i1lab.registry.tracking import _params

    client = MlflowClient(uri)
    exp = client.create_experiment("bench")
    deadline = time.perf_counter() + seconds
    n = 0
    # the compare study first, so the compare question has all its runs
    for r in runs:
        if time.perf_counter() > deadline:
            break
        created = client.create_run(exp, tags={"study": r["study"], "mlflow.runName": r["name"]})
        rid = created.info.run_id
        params = [Param(k, v) for k, v in _params(r["spec"]).items()]
        metrics = [Metric(f"{b}/{m}", v, 0, st) for b, m, _j, st, v in r["scores"]]
        client.log_batch(rid, params=params[:90], metrics=metrics, tags=[RunTag("i1lab.baseline", "false")])
        if len(params) > 90:
            client.log_batch(rid, params=params[90:])
        client.set_terminated(rid)
        n += 1
    return exp, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--mlflow-seconds", type=float, default=120.0)
    ap.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary folder")
    ap.add_argument("--workdir", default=None, help="keep the databases here (default: temporary)")
    ap.add_argument("--reuse", action="store_true", help="the registry in --workdir is already loaded")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        run_bench(args, work)


def run_bench(args: argparse.Namespace, work: Path) -> None:
    import os

    from i1lab.registry import Registry
    from i1lab.registry.query import runs_frame
    from i1lab.report import tables as report

    url = args.database_url or f"sqlite:///{work / 'registry.db'}"
    t0 = time.perf_counter()
    runs = make_runs(args.runs, args.steps)
    t_gen = time.perf_counter() - t0
    registry = Registry(url)
    t1 = time.perf_counter()
    if not args.reuse:
        bulk_load(registry, runs)
    t_load = time.perf_counter() - t1
    n_scores = args.runs * len(BENCHMARKS) * args.steps
    print(
        f"registry: {registry.dialect}, {args.runs:,} runs x {len(BENCHMARKS)} benchmarks x "
        f"{args.steps} steps = {n_scores:,} scores, {args.runs * 75:,} spec field rows; "
        f"generated in {t_gen:.0f} s, "
        f"bulk-loaded in {t_load:.0f} s"
    )
    if registry.dialect == "sqlite":
        print(f"registry file: {(work / 'registry.db').stat().st_size / 1e9:.2f} GB")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work shares the CPUs)"
    )

    mid = (args.steps // 2) * 50_000
    metrics = [f"{b}/{m}" for b, (m, _j) in BENCHMARKS.items()]
    print(
        "\nregistry questions, runs_frame(...) with all 5 metric columns "
        f"(median of {args.reps} after a warm-up):"
    )
    print(f"  {'question':<34} {'wall ms':>8} {'cpu ms':>8} {'runs':>7}   as a command")
    for label, (expr, at) in questions(mid).items():
        wall, cpu, frame = median_ms(
            lambda e=expr, a=at: runs_frame(e, metrics, at_step=a, registry=registry), args.reps
        )
        print(f"  {label:<34} {wall:8.1f} {cpu:8.1f} {len(frame):7d}   i1lab query {expr!r} --at-step {at}")

    def compare() -> Any:
        return report.ablation_table("study00000", registry.members("study00000"))

    wall, cpu, table = median_ms(compare, args.reps)
    row("compare (20 variants, 3 seeds)", wall, cpu, len(table.rows), "i1lab compare study00000")
    wall, cpu, _ = median_ms(lambda: report.render_markdown(compare()), args.reps)
    row("compare + markdown", wall, cpu, len(table.rows), "i1lab compare study00000 --format markdown")
    wall, cpu, curves = median_ms(lambda: report.curves(registry.members("study00000")), args.reps)
    row("curves (20 runs x 5 benchmarks)", wall, cpu, len(curves), "i1lab compare study00000 --curves")
    if args.mlflow_seconds > 0:
        mlflow_bench(args, work, runs)


def row(label: str, wall: float, cpu: float, n: int, command: str = "") -> None:
    print(f"  {label:<34} {wall:8.1f} {cpu:8.1f} {n:7d}   {command}")


def questions(mid: int) -> dict[str, tuple[str, str]]:
    return {
        "spec fields + latest score": (
            "model.adapter.type = transformer and model.backbone = dual_stream and train.lr >= 2e-4 "
            "and score:geneval/overall > 0.6",
            "latest",
        ),
        "score at a given step": (
            "score:dpg/dpg_score >= 0.5 and model.adapter.blocks = 3 and model.backbone = cross_attn "
            "and data.resolution = 512",
            str(mid),
        ),
        "a large result (a sixth of all)": (
            "score:dpg/dpg_score >= 0.5 and model.adapter.blocks = 3",
            str(mid),
        ),
        "best score over steps": ("score:cvtg/word_accuracy > 0.75 and data.resolution = 512", "best"),
        "or / not / in": (
            "(model.backbone in (single_stream, dual_stream) or train.lr < 1e-4) "
            "and not model.adapter.type = mlp and sampling.cfg_scale = 4 "
            "and score:prism/final_combined_average > 0.62",
            "latest",
        ),
        "one study, one score": ("study = study00020 and score:geneval/overall > 0.3", "latest"),
        "selective spec value": ("train.seed = 77777", "latest"),
    }


MLFLOW_QUESTIONS = {
    "spec fields + latest score": "params.`model.adapter.type` = 'transformer' and params.`model.backbone` = "
    "'dual_stream' and params.`train.lr` = '0.0002' and metrics.`geneval/overall` > 0.6",
    "one study, one score": "tags.study = 'study00020' and metrics.`geneval/overall` > 0.3",
    "selective spec value": "params.`train.seed` = '777'",
    "compare inputs (20 runs)": "tags.study = 'study00000'",
}


def mlflow_bench(args: argparse.Namespace, work: Path, runs: list[dict[str, Any]]) -> None:
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    t0 = time.perf_counter()
    exp, n = mlflow_load(uri, runs, args.mlflow_seconds)
    secs = time.perf_counter() - t0
    rate = n / secs
    print(
        f"\nMLflow {mlflow.__version__} (SQLite store): logged {n:,} of the {len(runs):,} runs "
        f"in {secs:.0f} s "
        f"({rate:.1f} runs/s; all of them would take ~{len(runs) / max(rate, 1e-9) / 3600:.1f} h)"
    )
    mlflow.set_tracking_uri(uri)
    print(
        f"mlflow.search_runs over those {n:,} runs (median of {args.reps}; params are strings, so a range "
        "like lr >= 2e-4 needs one query per value):"
    )
    for label, flt in MLFLOW_QUESTIONS.items():
        wall, cpu, frame = median_ms(
            lambda f=flt: mlflow.search_runs([exp], filter_string=f, max_results=50_000), args.reps
        )
        print(f"  {label:<34} {wall:8.1f} {cpu:8.1f} {len(frame):7d}")


if __name__ == "__main__":
    main()
