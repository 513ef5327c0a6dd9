"""Searches with Optuna on a tiny trained checkpoint: the real registry (SQLite and PostgreSQL), a real
local Ray cluster, real Optuna, real sampling and scoring. The checkpoint is trained once per module."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest

from i1lab.errors import SpecError
from i1lab.hashing import training_hash
from i1lab.registry import PlannedMember, Registry
from i1lab.search.run import SearchResult, run_search
from i1lab.search.setup import Setup, prepare
from i1lab.spec.run import RunSpec

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
STEP = 4

STUDY = """\
study: search_tiny
extends: {baseline}
profiles:
  tiny:
    train.steps: {step}
    train.checkpoint_every: {step}
    train.keep_every: {step}
    train.log_every: 2
    sampling.steps: 2
    eval.prompts_per_tag: 1
    eval.images_per_prompt: 1
search:
  name: {name}
  space:
    sampling.cfg_scale: {{type: float, low: 1.0, high: 6.0}}
    sampling.steps: {{type: int, low: 2, high: 3}}
  objective: {{shapes/overall: 1.0, shapes/correct_images: 0.5}}
  sampler: {sampler}
  trials: 4
  parallel: {parallel}
  seed: {seed}
"""


def write_study(folder: Path, name: str, *, sampler: str = "tpe", parallel: int = 2, seed: int = 0) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        STUDY.format(
            baseline=EXPERIMENTS / "baseline.yaml",
            step=STEP,
            name=name,
            sampler=sampler,
            parallel=parallel,
            seed=seed,
        )
    )
    return path


class Trained:
    def __init__(self, home: Path, folder: Path, member: PlannedMember, workdir: Path) -> None:
        self.home = home
        self.folder = folder
        self.member = member  # the checkpoint's run, as recorded (to copy into other registries)
        self.workdir = workdir

    def register(self, url: str) -> Registry:
        """A registry at ``url`` that knows the trained run and its checkpoint (same work directory)."""
        registry = Registry(url)
        run_id = registry.record_plan("search_tiny", [self.member])["baseline"]
        registry.set_status(run_id, "running")
        registry.add_checkpoint(run_id, STEP, str(self.workdir / "checkpoints" / str(STEP)), True)
        registry.set_progress(run_id, STEP)
        registry.set_status(run_id, "finished")
        return registry


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """A tiny checkpoint trained for 4 steps (the real worker path, without Ray), and a 4-CPU local Ray
    cluster that every search of the module shares (so four trials can run at once on 2 cores)."""
    import ray

    from i1lab.execution.worker import execute_run
    from i1lab.plan.planner import expand
    from i1lab.spec import load_study

    folder = tmp_path_factory.mktemp("search")
    home = folder / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("I1LAB_HOME", str(home))
        mp.delenv("I1LAB_DATABASE_URL", raising=False)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        study = write_study(folder, "cfg_tiny")
        base = expand(load_study(study), "tiny")[0]
        workdir = home / "runs" / training_hash(base.spec)[:16]
        member = PlannedMember(
            name="baseline",
            label="baseline",
            hash=base.hash,
            is_baseline=True,
            baseline="baseline",
            varied={},
            spec=base.spec.model_dump(mode="json"),
            total_steps=STEP,
            workdir=str(workdir),
        )
        registry = Registry()
        run_id = registry.record_plan("search_tiny", [member])["baseline"]
        outcome = execute_run(run_id)
        assert outcome.status == "finished", outcome.reason
        ray.init(
            address="local",
            num_cpus=4,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
            runtime_env={"env_vars": {"I1LAB_HOME": str(home), "JAX_PLATFORMS": "cpu"}},
        )

        try:
            yield Trained(home, folder, member, workdir)
        finally:
            ray.shutdown()


def search(setup: Setup, registry: Registry) -> tuple[SearchResult, list[str], float]:
    events: list[str] = []
    t0 = time.perf_counter()
    result = run_search(setup, registry=registry, on_event=events.append)
    return result, events, time.perf_counter() - t0


@pytest.fixture(scope="module")
def first(trained: Trained) -> tuple[Setup, SearchResult, list[str]]:
    """A TPE search of four trials, two at once, over CFG scale and sampling steps of the checkpoint."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("I1LAB_HOME", str(trained.home))
        setup = prepare(
            write_study(trained.folder, "cfg_tiny"), "tiny", checkpoint=f"search_tiny/baseline@{STEP}"
        )
        result, events, _ = search(setup, Registry())
    return setup, result, events


def scores_of(registry: Registry) -> list[tuple[Any, ...]]:
    runs = registry.runs()
    return sorted(
        (s.run_id, s.step, s.benchmark, s.metric, s.judge, s.value, s.created_at)
        for s in registry.scores(r.id for r in runs)
    )


@pytest.mark.slow
def test_an_inference_search_records_every_trial_and_reports_the_best(
    trained: Trained, first: tuple[Setup, SearchResult, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna

    from i1lab.registry.search_storage import open_storage

    monkeypatch.setenv("I1LAB_HOME", str(trained.home))
    _, result, events = first
    assert (result.trials, result.complete, result.failed, result.resumed, result.reused) == (4, 4, 0, 0, 0)
    assert result.ran == 4 and result.max_in_flight == 2, events
    registry = Registry()
    members = registry.members("cfg_tiny")
    assert [m.name for m in members] == ["trial-0000", "trial-0001", "trial-0002", "trial-0003"]
    study = optuna.load_study(study_name="cfg_tiny", storage=open_storage())
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    checkpoint = registry.find_run("search_tiny/baseline")
    values = {}
    for m, t in zip(members, trials, strict=True):
        spec = RunSpec.model_validate(m.run.spec)
        # each trial is a run of its own: its params in the spec and in `varied`, sharing the training
        assert (
            m.varied
            == t.params
            == {"sampling.cfg_scale": spec.sampling.cfg_scale, "sampling.steps": spec.sampling.steps}
        )
        assert training_hash(spec) == training_hash(RunSpec.model_validate(checkpoint.spec))
        assert m.run.workdir == checkpoint.workdir and m.run.status == "finished" and m.run.step == STEP
        assert t.user_attrs["run_hash"] == m.run.hash and t.user_attrs["member"] == m.name
        at = {(s.benchmark, s.metric): s.value for s in m.scores if s.step == STEP}
        expected = at[("shapes", "overall")] + 0.5 * at[("shapes", "correct_images")]
        assert t.state.name == "COMPLETE" and t.value == pytest.approx(expected)
        values[t.number] = t.value
        images = Path(m.run.workdir or "") / "eval" / m.run.hash[:12] / "shapes" / f"step_{STEP:07d}"
        assert (images / "results.jsonl").is_file() and (images / "00000" / "samples" / "00000.png").is_file()
        assert [c[0] for c in registry.checkpoints(m.run.id)] == [STEP]
    assert len({m.run.hash for m in members}) == 4 and len(registry.runs()) == 5  # checkpoint + 4 trials
    best = max(values, key=lambda n: (values[n], -n))
    assert result.best_number == best and result.best_value == values[best]
    assert result.best_params == trials[best].params

    from typer.testing import CliRunner

    from i1lab.cli.main import app

    shown = CliRunner().invoke(app, ["compare", "cfg_tiny", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    table = json.loads(shown.stdout)
    assert [t["number"] for t in table["trials"]] == [0, 1, 2, 3]
    assert table["best"]["number"] == best and table["best"]["params"] == trials[best].params
    assert table["checkpoint"] == f"{checkpoint.hash[:12]}@{STEP}" and table["kind"] == "inference"
    text = CliRunner().invoke(app, ["compare", "cfg_tiny"], env={"COLUMNS": "250"})
    assert f"best: trial {best} (trial-{best:04d})" in text.stdout
    assert "baseline" in CliRunner().invoke(app, ["compare", "search_tiny"]).stdout  # studies unchanged

    out = trained.folder / "report"
    shown = CliRunner().invoke(app, ["search-report", "cfg_tiny", "--out", str(out)])
    assert shown.exit_code == 0, shown.output
    for stem in ("optimization_history", "param_importances", "slice"):
        page = (out / f"{stem}.html").read_text()
        assert 'src="plotly.min.js"' in page and "cfg_tiny" in page
    assert "sampling.cfg_scale" in (out / "slice.html").read_text() and (out / "plotly.min.js").is_file()

    from dashboards.app import search_section
    from dashboards.data import Source

    source = Source.open()
    section = str(search_section(source, "cfg_tiny"))
    assert "search-history" in section and f"best: trial {best}" in section
    assert search_section(source, "search_tiny") == []


@pytest.mark.slow
def test_rerunning_a_search_reuses_finished_trials(
    trained: Trained, first: tuple[Setup, SearchResult, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna

    from i1lab.registry.search_storage import open_storage

    monkeypatch.setenv("I1LAB_HOME", str(trained.home))
    setup, before, _ = first
    registry = Registry()
    scores = scores_of(registry)
    images = sorted(p.stat().st_mtime_ns for p in trained.workdir.glob("eval/*/shapes/*/*/samples/*.png"))
    assert len(images) >= 4

    # The same search again: its Optuna study is resumed; nothing is asked, sampled or recorded.
    again, events, seconds = search(setup, registry)
    assert (again.trials, again.complete, again.resumed, again.reused, again.ran) == (4, 4, 4, 0, 0), events
    assert again.best_number == before.best_number and again.best_value == before.best_value

    # Its Optuna study gone, the same seed asks the same configurations: every one is found in the
    # registry with its scores and Optuna is told the stored value, again without sampling.
    optuna.delete_study(study_name="cfg_tiny", storage=open_storage())
    fresh, events, seconds = search(setup, registry)
    assert (fresh.trials, fresh.complete, fresh.resumed, fresh.reused, fresh.ran) == (4, 4, 0, 4, 0), events
    assert fresh.best_value == before.best_value and fresh.best_params == before.best_params
    assert all("reused: scores already recorded" in e for e in events) and seconds < 20
    assert scores_of(registry) == scores  # not one score recomputed or rewritten
    assert len(registry.runs()) == 5 and [m.name for m in registry.members("cfg_tiny")] == [
        f"trial-{n:04d}" for n in range(4)
    ]
    assert (
        sorted(p.stat().st_mtime_ns for p in trained.workdir.glob("eval/*/shapes/*/*/samples/*.png"))
        == images
    )
    assert all(
        t.user_attrs["reused"]
        for t in optuna.load_study(study_name="cfg_tiny", storage=open_storage()).trials
    )

    # Asked for a fifth trial, the resumed search draws a new configuration (not its first one again).
    more = setup.model_copy(update={"search": setup.search.model_copy(update={"trials": 5})})
    fifth, events, _ = search(more, registry)
    assert (fifth.trials, fifth.resumed, fifth.reused, fifth.ran) == (5, 4, 0, 1), events
    varied = [json.dumps(m.varied, sort_keys=True) for m in registry.members("cfg_tiny")]
    assert len(registry.runs()) == 6 and len(set(varied)) == 5


STRESS = """
import sys

import optuna

from i1lab.registry.search_storage import open_storage

url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
study = optuna.load_study(study_name=name, storage=open_storage(url))
x = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
for _ in range(n):
    trial = study.ask(x)
    study.tell(trial, trial.params["x"])
    print(trial.number, flush=True)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.slow
def test_four_trials_in_parallel_lose_and_duplicate_nothing(
    trained: Trained,
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import optuna

    from i1lab.registry.search_storage import open_storage

    monkeypatch.setenv("I1LAB_HOME", str(trained.home))
    url = (
        f"sqlite:///{tmp_path / 'registry.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    registry = trained.register(url)
    study_file = write_study(tmp_path, "cfg_parallel", sampler="random", parallel=4, seed=7)
    setup = prepare(study_file, "tiny", checkpoint=f"search_tiny/baseline@{STEP}", registry=registry)
    result, events, _ = search(setup, registry)
    assert (result.trials, result.complete, result.failed, result.ran) == (4, 4, 0, 4), events
    assert result.max_in_flight == 4

    study = optuna.load_study(study_name="cfg_parallel", storage=open_storage(url))
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3] and all(t.state.name == "COMPLETE" for t in trials)
    members = registry.members("cfg_parallel")
    assert [m.name for m in members] == [t.user_attrs["member"] for t in trials]
    assert len({m.run.id for m in members}) == 4 and len(registry.runs()) == 5
    for m in members:
        assert m.run.status == "finished" and m.run.reason is None and m.run.attempts == 1
        headline = [s for s in m.scores if (s.benchmark, s.metric, s.step) == ("shapes", "overall", STEP)]
        assert len(headline) == 1
    # the runs overlapped in time: concurrent writers of the registry
    spans = [(m.run.started_at, m.run.finished_at) for m in members]
    assert max(sum(s <= t < f for s, f in spans if s and f) for t, _ in spans if t) >= 2

    # Four processes writing one Optuna study at once: every trial kept once, none refused a lock.
    optuna.create_study(study_name="stress", storage=open_storage(url))
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", STRESS, url, "stress", "5"], stdout=PIPE, stderr=PIPE, text=True
        )
        for _ in range(4)
    ]
    try:
        outputs = [w.communicate(timeout=300) for w in writers]
    finally:
        for w in writers:
            w.kill() if w.poll() is None else None
    assert all(w.returncode == 0 for w in writers), [e for _, e in outputs]
    numbers = [[int(n) for n in out.split()] for out, _ in outputs]
    stress = optuna.load_study(study_name="stress", storage=open_storage(url)).get_trials()
    assert sorted(n for ns in numbers for n in ns) == list(range(20)) == [t.number for t in stress]
    assert all(t.state.name == "COMPLETE" for t in stress)


def test_a_bad_search_is_refused_before_anything_is_written(tmp_path: Path, home: Path) -> None:
    from i1lab.search.space import decode_params, distributions, encode_choice, grid_points
    from i1lab.spec.search import SearchSpec

    def study(block: str) -> Path:
        path = tmp_path / "bad.yaml"
        path.write_text(f"study: bad\nextends: {EXPERIMENTS / 'baseline.yaml'}\nsearch:\n{block}")
        return path

    def error(block: str, **kw: Any) -> str:
        with pytest.raises(SpecError) as info:
            prepare(study(block), "tiny", **kw)
        return str(info.value)

    objective = "  objective: {shapes/overall: 1}\n"
    one = "  space:\n    sampling.cfg_scale: {type: float, low: 1.0, high: 2.0}\n" + objective
    assert "search.space: every searched path is a sampling setting: give the checkpoint" in error(one)
    assert ":5:5: eval.prompt_limit: every value gives the same run" in error(
        "  space:\n    eval.prompt_limit: {type: int, low: 1, high: 4}\n  objective: {shapes/overall: 1}\n"
    )
    assert ":5:5: train.ema_decay: Input should be less than 1" in error(
        "  space:\n    train.ema_decay: {type: float, low: 0.5, high: 2.0}\n" + objective
    )
    assert ":6:3: search.objective.dpg/overall: benchmark 'dpg' is not scored" in error(
        "  space:\n    train.lr: {type: float, low: 0.001, high: 0.01}\n  objective: {dpg/overall: 1}\n"
    )
    assert "search.space.sampling.steps: an int dimension needs an integer low" in error(
        "  space:\n    sampling.steps: {type: int, low: 1.5, high: 4}\n  objective: {shapes/overall: 1}\n"
    )
    assert not home.exists()  # nothing written, not even a registry

    space = SearchSpec.model_validate(
        {
            "space": {
                "model.adapter": {
                    "type": "categorical",
                    "choices": [{"type": "mlp"}, {"type": "transformer", "blocks": 2}],
                },
                "sampling.steps": {"type": "int", "low": 10, "high": 30, "step": 10},
            },
            "objective": {"shapes/overall": 1.0},
            "sampler": "grid",
        }
    )
    points = grid_points(space)
    assert len(points) == 6 and points[0] == {"model.adapter": '{"type":"mlp"}', "sampling.steps": 10}
    assert decode_params(space, points[-1]) == {
        "model.adapter": {"type": "transformer", "blocks": 2},
        "sampling.steps": 30,
    }
    dists = distributions(space)
    assert all(dists[p]._contains(dists[p].to_internal_repr(v)) for pt in points for p, v in pt.items())
    assert encode_choice(3) == 3 and encode_choice([1, 2]) == "[1,2]"


def add_trial_run(
    registry: Registry,
    setup: Setup,
    study: str,
    number: int,
    params: dict[str, Any],
    hash: str,
    workdir: Path,
) -> int:
    """Record trial ``number`` of a training search (``params``) as a run of ``study``, as the search
    driver does before launching it; its run id."""
    name = f"trial-{number:04d}"
    spec = setup.trial_spec(params, name=name)
    member = PlannedMember(
        name=name,
        label=f"trial {number}",
        hash=hash,
        is_baseline=False,
        baseline="",
        varied=params,
        spec=spec.model_dump(mode="json"),
        total_steps=spec.train.steps,
        workdir=str(workdir),
    )
    return registry.add_members(study, [member])[name]


def sleeping_run(
    run_id: int,
    database_url: str | None = None,
    workdir: str | None = None,
    *,
    expect_token: int | None = None,
    owner: str | None = None,
    eval_options: dict[str, Any] | None = None,
) -> Any:
    """Stands in for training on the driver: sleeps, takes nothing."""
    time.sleep(120)


def trial_task(setup: Setup, study: str, run_id: int, digest: str, workdir: Path) -> Any:
    from i1lab.execution.launching import Task

    resources, where = setup.base.resources, str(workdir)
    return Task(run_id=run_id, name=f"{study}/trial", resources=resources, workdir=where, hash=digest)


@pytest.mark.slow
def test_a_training_trial_is_pruned_on_its_intermediate_checkpoint_scores(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pruner's side of a training search: three finished trials scored 1.0 at step 2, then a
    running trial whose step-2 checkpoint scores 0.0 is pruned: its Ray task stopped, its run cancelled.
    (Training is stood in for by a sleeping task on the driver and the score its evaluation would record.)"""
    import ray
    from optuna.trial import TrialState

    from i1lab.registry import ScoreRecord
    from i1lab.registry.search_storage import open_storage
    from i1lab.search.run import Driver, _Job, open_study

    monkeypatch.setenv("I1LAB_HOME", str(tmp_path / "home"))
    path = tmp_path / "lr.yaml"
    path.write_text(
        f"study: lr\nextends: {EXPERIMENTS / 'baseline.yaml'}\n"
        "profiles:\n  tiny: {train.steps: 4, train.checkpoint_every: 2, train.keep_every: 2}\n"
        "search:\n  space:\n    train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
        "  objective: {shapes/overall: 1.0}\n  pruner: median\n"
    )
    setup = prepare(path, "tiny")
    assert setup.kind == "training" and setup.step == 4
    registry = Registry()
    driver = Driver(setup, registry, fn=sleeping_run, poll_seconds=0.1)
    study = driver.study = open_study(setup, open_storage())
    for _ in range(3):
        done = study.ask(driver.dists)
        done.report(1.0, 2)
        study.tell(done, 1.0)
    trial = study.ask(driver.dists)
    run_id = add_trial_run(registry, setup, "lr", 3, trial.params, "f" * 64, tmp_path / "w")

    job = _Job(run_id, "f" * 64, True, [trial])
    driver.jobs[job.hash] = job
    executor = driver._driver()
    executor.submit([trial_task(setup, "lr", run_id, job.hash, tmp_path / "w")])
    deadline = time.monotonic() + 60
    while not executor.launched:
        assert time.monotonic() < deadline, "the trial was not launched"
        executor.poll(0.1)
    (ref,) = executor.launched
    registry.add_scores(
        [
            ScoreRecord(
                run_id=run_id, step=2, benchmark="shapes", metric="overall", judge="exact-pixel", value=0.0
            )
        ]
    )
    driver._maybe_prune(job)
    assert study.get_trials()[3].state == TrialState.PRUNED and study.get_trials()[3].intermediate_values == {
        2: 0.0
    }
    assert not driver.jobs and not executor.launched and not executor.pending
    run = registry.run(run_id)
    assert run.status == "cancelled" and run.reason == "pruned by search lr at step 2"
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=30)


def test_a_trial_whose_run_another_worker_holds_is_launched_again_only_once_that_lease_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training trial whose run another submitter's worker holds waits: the driver watches the run's
    lease in the registry and launches nothing while it is held (a slice trial's launch reserves the
    whole slice just to learn it); once the other worker finished the run, the trial has its result."""
    from i1lab.search.run import Driver, _Job

    monkeypatch.setenv("I1LAB_HOME", str(tmp_path / "home"))
    path = tmp_path / "lr.yaml"
    path.write_text(
        f"study: lr_held\nextends: {EXPERIMENTS / 'baseline.yaml'}\n"
        "search:\n  space:\n    train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
        "  objective: {shapes/overall: 1.0}\n"
    )
    setup = prepare(path, "tiny")
    registry = Registry()
    driver = Driver(setup, registry, poll_seconds=0.1)
    run_id = add_trial_run(registry, setup, "lr_held", 0, {"train.lr": 1.0e-3}, "e" * 64, tmp_path / "w")
    held = registry.acquire_lease(run_id, "another-submitter", ttl=60, node="elsewhere")
    assert held.token is not None
    job = _Job(run_id, "e" * 64, True, [])
    driver.jobs[job.hash] = job
    executor = driver._driver()
    executor.submit([trial_task(setup, "lr_held", run_id, job.hash, tmp_path / "w")])

    for _ in range(5):
        assert executor.poll(0.1) == []
    assert executor.launches == 0 and executor.pending

    # the other worker finishes the run: the trial's outcome is that run's, and nothing was launched
    assert registry.finish_lease(run_id, held.token, "finished")
    outcomes = []
    deadline = time.monotonic() + 60
    while not outcomes:
        assert time.monotonic() < deadline, "the finished run was not seen"
        outcomes = executor.poll(0.1)
    (outcome,) = outcomes
    assert (outcome.status, outcome.trained) == ("finished", False) and executor.launches == 0
    executor.close()
