"""The CLI as a user runs it: real subprocesses, exit codes, one-line errors, nothing written on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def i1lab(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "I1LAB_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "i1lab", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def test_plan_json_lists_every_run_with_hash_status_and_spec(home: Path) -> None:
    res = i1lab("plan", str(EXPERIMENTS / "adapter_size.yaml"), "--profile", "tiny", "--json", home=home)
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    assert plan["summary"] == {"runs": 4, "new": 4, "reused": 0, "resume": 0, "not_runnable": 0}
    names = [r["name"] for r in plan["runs"]]
    assert names == ["baseline", "adapter=transformer-1", "adapter=transformer-2", "adapter=transformer-3"]
    for run in plan["runs"]:
        assert len(run["hash"]) == 64 and run["status"] == "new"
        assert run["spec"]["model"]["size"] == "tiny" and run["spec"]["train"]["b2"] == 0.95
    assert plan["runs"][2]["spec"]["model"]["adapter"] == {"type": "transformer", "blocks": 2}
    assert not home.exists()  # planning writes nothing


def test_bad_specs_exit_nonzero_with_one_line_and_write_nothing(home: Path, tmp_path: Path) -> None:
    cases = {
        "unknown.yaml": (
            "run:\n  model: {adaptr: {type: mlp}}\n",
            "model.adaptr: unknown key (did you mean 'adapter'?)",
        ),
        "type.yaml": (
            "run:\n  train: {batch_size: big}\n",
            "train.batch_size: Input should be a valid integer",
        ),
        "value.yaml": (
            "run:\n  sampling: {cfg_rescale: 3}\n",
            "sampling.cfg_rescale: Input should be less than",
        ),
    }
    for name, (body, expected) in cases.items():
        path = tmp_path / name
        path.write_text(f"extends: {EXPERIMENTS / 'baseline.yaml'}\n{body}")
        for command in ("plan", "submit"):
            res = i1lab(command, str(path), home=home)
            assert res.returncode == 2, (command, res.stdout, res.stderr)
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
            assert lines[0].startswith(f"error: {path}:3:") and expected in lines[0], lines[0]
            assert not home.exists()  # nothing submitted, no registry created


def test_evaluation_on_a_multi_host_slice_is_refused_before_anything_starts(
    home: Path, tmp_path: Path
) -> None:
    study = tmp_path / "big.yaml"
    study.write_text(f"study: big\nextends: {EXPERIMENTS / 'adapter_size.yaml'}\n")
    res = i1lab("submit", str(study), "--profile", "tiny", "--eval-on", "tpu-v6e-16", home=home)
    assert res.returncode == 2 and res.stderr.strip() == (
        "error: --eval-on: tpu-v6e-16 is a slice of 4 hosts; evaluation runs on one host"
    )
    assert not (home / "jobs").exists() and not (home / "ray").exists()  # no job, no Ray head
    assert not (home / "registry.db").exists()  # nothing recorded


def test_missing_study_file_and_unknown_study(home: Path) -> None:
    res = i1lab("plan", "no/such/study.yaml", home=home)
    assert res.returncode == 2 and res.stderr.strip() == "error: study file not found: no/such/study.yaml"
    res = i1lab("compare", "nothing", home=home)
    assert res.returncode == 2 and "no study named 'nothing'" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("argv", [["--help"], ["plan", str(EXPERIMENTS / "i1.yaml"), "--json"]])
def test_help_and_plan_do_not_import_heavy_libraries(home: Path, argv: list[str]) -> None:
    code = (
        f"import sys; sys.argv=['i1lab', *{argv!r}]\nfrom i1lab.cli.main import main\n"
        "try:\n  main()\nexcept SystemExit:\n  pass\n"
        "heavy=[m for m in ('jax','ray','mlflow','flax','optax','torch') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    env = {**os.environ, "I1LAB_HOME": str(home)}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60, env=env
    )
    assert "HEAVY []" in res.stdout, res.stdout[-500:] + res.stderr


def test_schema_is_json_schema_of_the_run_spec(home: Path) -> None:
    res = i1lab("schema", home=home)
    schema = json.loads(res.stdout)
    assert schema["title"] == "RunSpec" and "model" in schema["properties"]
