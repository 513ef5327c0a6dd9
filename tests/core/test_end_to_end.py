"""A real study through the real stack: CLI -> registry -> local Ray -> Flax training -> scoring -> MLflow;
then a second study that reuses one of its runs and asks it for another benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"

MICRO = """\
study: adapter_micro
extends: {adapter}
axes:
  model.adapter:
    - {{type: transformer, blocks: 1}}
  sampling.cfg_scale: [2.0]
profiles:
  tiny:
    train.steps: 20
    train.checkpoint_every: 10
    train.keep_every: 20
    train.log_every: 5
    sampling.steps: 4
    eval.prompts_per_tag: 1
    eval.images_per_prompt: 2
    eval.prompt_limit: 1
"""

# The baseline of MICRO (same training, same shapes settings) in a study of its own that also asks for
# LongText: the run is reused and gets that one evaluation.
MORE = """\
study: more_micro
extends: {baseline}
profiles:
  tiny:
    train.steps: 20
    train.checkpoint_every: 10
    train.keep_every: 20
    train.log_every: 5
    sampling.steps: 4
    eval.benchmarks: [shapes, longtext]
    eval.prompts_per_tag: 1
    eval.images_per_prompt: 2
    eval.prompt_limit: 1
    eval.judges: {{longtext: ocr}}
"""


def i1lab(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "I1LAB_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "i1lab", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def micro(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, Path, subprocess.CompletedProcess[str]]]:
    """MICRO submitted once (one Ray session, three runs trained) in a home of its own, shared by the tests
    below: (home, study file, the first submit)."""
    root = tmp_path_factory.mktemp("micro")
    home = root / "home"
    study = root / "micro.yaml"
    study.write_text(MICRO.format(adapter=EXPERIMENTS / "adapter_size.yaml"))
    with pytest.MonkeyPatch.context() as mp:  # what the ``home`` fixture does, for the whole module
        mp.setenv("I1LAB_HOME", str(home))
        mp.delenv("I1LAB_DATABASE_URL", raising=False)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        first = i1lab("submit", str(study), "--profile", "tiny", "--no-progress", home=home)
        yield home, study, first


def test_submit_trains_scores_mirrors_and_reuses(
    micro: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    home, study, first = micro
    assert first.returncode == 0, first.stdout + first.stderr
    assert "3 runs — 3 new, 0 reused" in first.stdout
    assert "adapter=transformer-1" in first.stdout and "shapes/overall" in first.stdout

    from i1lab.registry import Registry

    reg = Registry()
    members = reg.members("adapter_micro")
    assert [m.name for m in members] == ["baseline", "adapter=transformer-1", "cfg_scale=2.0"]
    # A sampling-only variant shares the baseline's training: same work directory, trained once.
    assert members[2].run.workdir == members[0].run.workdir != members[1].run.workdir
    for m in members:
        assert m.run.status == "finished" and m.run.step == 20, m.run.reason
        headline = [s for s in m.scores if (s.benchmark, s.metric, s.step) == ("shapes", "overall", 20)]
        assert len(headline) == 1 and headline[0].judge == "exact-pixel" and 0.0 <= headline[0].value <= 1.0
        # the variant sharing a training sees only the checkpoints still kept on disk (the permanent one)
        assert [c[0] for c in reg.checkpoints(m.run.id)] == ([20] if m.name == "cfg_scale=2.0" else [10, 20])
        workdir = Path(m.run.workdir or "")
        lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
        assert [x["step"] for x in lines] == [1, 2, 3, 5, 10, 15, 20]  # one training, not two
        assert all(k in lines[-1] for k in ("loss", "grad_norm", "images_per_s", "data_wait"))
        layout = workdir / "eval" / m.run.hash[:12] / "shapes" / "step_0000020"
        assert (layout / "00000" / "metadata.jsonl").is_file() and (
            layout / "00000" / "samples" / "00001.png"
        ).is_file()

    # A second submit of the same study creates nothing and does not start Ray.
    t0 = time.perf_counter()
    second = i1lab("submit", str(study), "--profile", "tiny", "--no-progress", home=home)
    elapsed = time.perf_counter() - t0
    assert second.returncode == 0, second.stderr
    assert "3 runs — 0 new, 3 reused" in second.stdout
    assert len(Registry().runs()) == 3 and elapsed < 30

    compare = i1lab("compare", "adapter_micro", "--format", "json", home=home)
    table = json.loads(compare.stdout)
    assert [r["name"] for r in table["rows"]] == ["baseline", "adapter=transformer-1", "cfg_scale=2.0"]
    base, variant, _ = (r["cells"][0] for r in table["rows"])
    assert abs(variant["delta"] - (variant["value"] - base["value"])) < 1e-12

    query = i1lab(
        "query", "model.adapter.type = transformer and status = finished", "--format", "json", home=home
    )
    assert [r["name"] for r in json.loads(query.stdout)] == ["adapter=transformer-1"]

    # The MLflow mirror: parent run + one child per run, flattened params and scores per step.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("adapter_micro")
    runs = client.search_runs([exp.experiment_id])
    children = {r.data.tags["mlflow.runName"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert set(children) == {"baseline", "adapter=transformer-1", "cfg_scale=2.0"} and len(runs) == 4
    child = children["adapter=transformer-1"]
    assert child.data.params["model.adapter.type"] == "transformer"
    assert child.data.metrics["shapes/overall"] == next(
        s.value for s in members[1].scores if s.metric == "overall" and s.step == 20
    )
    assert len(client.get_metric_history(child.info.run_id, "loss")) >= 4


def test_a_reused_run_asked_for_another_benchmark_is_evaluated_on_it_only_once(
    micro: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    from i1lab.registry import Registry

    home, _, first = micro
    assert first.returncode == 0, first.stdout + first.stderr
    more = home.parent / "more.yaml"
    more.write_text(MORE.format(baseline=EXPERIMENTS / "baseline.yaml"))
    reg = Registry()
    run = reg.members("adapter_micro")[0].run  # MICRO's baseline, evaluated on shapes only
    before = {(s.step, s.benchmark, s.metric): s for s in reg.scores([run.id])}
    assert {b for _, b, _ in before} == {"shapes"}
    evaluated = len(reg.events([run.id], kinds=["evaluated"]))
    runs = len(reg.runs())

    b = i1lab("submit", str(more), "--profile", "tiny", "--no-progress", home=home)
    assert b.returncode == 0, b.stdout + b.stderr
    assert "1 runs — 0 new, 1 reused" in b.stdout
    assert "1 evaluation(s) of 1 run(s) trained before" in b.stdout, b.stdout
    assert len(reg.runs()) == runs
    after = {(s.step, s.benchmark, s.metric): s for s in reg.scores([run.id])}
    new = {k: s for k, s in after.items() if k not in before}
    assert {(step, bench) for step, bench, _ in new} == {(20, "longtext")}
    assert {s.judge for s in new.values()} == {"ocr-tesseract"}
    # shapes was not evaluated again: its scores are those the first study recorded
    assert all(after[k].created_at == s.created_at for k, s in before.items())
    assert len(reg.events([run.id], kinds=["evaluated"])) == evaluated + 1

    for study in ("adapter_micro", "more_micro"):
        table = json.loads(i1lab("compare", study, "--format", "json", home=home).stdout)
        benches = [c["benchmark"] for c in table["columns"]]
        assert "longtext" in benches and "shapes" in benches, (study, benches)
        col = benches.index("longtext")
        assert table["rows"][0]["cells"][col]["value"] == after[(20, "longtext", "text_score")].value

    again = i1lab("submit", str(more), "--profile", "tiny", "--no-progress", home=home)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "evaluation(s)" not in again.stdout
    assert len(reg.events([run.id], kinds=["evaluated"])) == evaluated + 1


STAGES = """\
study: stages_micro
extends: {baseline}
baseline: false
variants:
  - {{name: s1, set: {{data.resolution: 16}}}}
  - {{name: s2, set: {{data.resolution: 24, data.resume_from: s1, train.steps: 30}}}}
profiles:
  tiny:
    train.steps: 20
    train.checkpoint_every: 10
    train.keep_every: 10
    train.log_every: 5
    sampling.steps: 4
    eval.benchmarks: []
"""


def test_resolution_stage_resumes_from_its_parent(home: Path, tmp_path: Path) -> None:
    study = tmp_path / "stages.yaml"
    study.write_text(STAGES.format(baseline=EXPERIMENTS / "baseline.yaml"))
    res = i1lab("submit", str(study), "--profile", "tiny", "--no-progress", "--no-mlflow", home=home)
    assert res.returncode == 0, res.stdout + res.stderr
    from i1lab.registry import Registry

    s1, s2 = Registry().members("stages_micro")
    assert s2.run.spec["data"]["resume_from"] == s1.run.hash  # lineage by content hash, not by name
    steps = [
        json.loads(x)["step"] for x in (Path(s2.run.workdir or "") / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [25, 30]  # continued from the parent's step 20 at the new resolution
    # same weights; only the frozen position table grows from 8x8 to 12x12 tokens of width 64
    assert s2.run.status == "finished" and (s2.run.params or 0) - (s1.run.params or 0) == (144 - 64) * 64
