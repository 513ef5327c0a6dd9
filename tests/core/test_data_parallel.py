"""One run trained by two processes joined in one JAX runtime (on CPU, over loopback), as the hosts
of a multi-host TPU slice train it: each process feeds its own half of every batch, and the run
computes what one process with the whole batch computes (up to summation order); process 0 alone
writes the run's files, every process takes part in each checkpoint, and a gang resumes from them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tests.core.test_ray_cluster import free_port
from tests.core.test_train_runner import _corrupt

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from i1lab.errors import I1labError
from i1lab.train.distributed import Gang, join
processes, index, coordinator, workdir, steps, batch = sys.argv[1:]
if int(processes) > 1:
    join(Gang(coordinator=coordinator, processes=int(processes), index=int(index)))
from i1lab.train.runner import Hooks, train
from tests.core.test_train_step import tiny_spec
spec = tiny_spec(**{{"train.steps": int(steps), "train.batch_size": int(batch), "train.checkpoint_every": 4,
                    "train.keep_every": 8, "train.log_every": 1}})
notes = []
try:
    out = train(spec, Path(workdir), Hooks(on_start=lambda step, n: notes.extend(n)))
except I1labError as exc:
    print(json.dumps({{"error": str(exc)}}))
    sys.exit(3)
print(json.dumps({{"step": out["step"], "loss": out["loss"], "notes": notes}}))
"""


def train_in(workdir: Path, processes: int, steps: int, cache: Path, batch: int = 4) -> list[dict[str, Any]]:
    """Train the tiny run in ``workdir`` with ``processes`` processes; each one's last stdout line."""
    code = CHILD.format(repo=str(REPO))
    coordinator = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PLATFORMS": "cpu"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                str(processes),
                str(i),
                coordinator,
                str(workdir),
                str(steps),
                str(batch),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for i in range(processes)
    ]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode in (0, 3), out
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def losses(workdir: Path) -> list[tuple[int, float]]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [(json.loads(x)["step"], json.loads(x)["loss"]) for x in lines]


def final_params(workdir: Path, step: int) -> list[np.ndarray]:
    import jax

    from i1lab.train.checkpoint import Checkpoints
    from i1lab.train.runner import initial_state
    from tests.core.test_train_step import tiny_spec

    spec = tiny_spec(**{"train.steps": step, "train.batch_size": 4})
    ckpts = Checkpoints(workdir / "checkpoints", every=4, keep_every=8, total_steps=step, read_only=True)
    try:
        abstract, _, _ = initial_state(spec, abstract=True)
        state, _ = ckpts.restore(step, abstract)
    finally:
        ckpts.close()
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(state.params)]


def test_two_processes_train_the_run_one_process_trains(tmp_path: Path) -> None:
    cache = tmp_path / "xla"
    alone, gang = tmp_path / "alone", tmp_path / "gang"
    [one] = train_in(alone, 1, 8, cache)
    first, second = train_in(gang, 2, 8, cache)
    assert first["step"] == second["step"] == one["step"] == 8
    assert "data parallel over 2 devices of 2 hosts" in first["notes"]
    # process 0 alone logs: one line per logged step, as a run trained alone has
    a, g = losses(alone), losses(gang)
    assert [s for s, _ in g] == [s for s, _ in a] == list(range(1, 9))
    assert np.allclose([x for _, x in g], [x for _, x in a], rtol=1e-4), (a, g)
    assert second["loss"] == first["loss"]  # every process reads the same (replicated) loss
    # the gang's checkpoint holds the parameters the lone process reached (whole, written once, and
    # read back by one process, as an evaluation task reads it): within a tenth of one step's update
    # (lr 1e-3; a gang feeding the wrong rows is off by several updates)
    for x, y in zip(final_params(gang, 8), final_params(alone, 8), strict=True):
        assert float(np.abs(x - y).max()) < 1e-4
    assert sorted(p.name for p in (gang / "events").iterdir()) == ["00000008.json"]

    # a gang resumes from its checkpoints as a lone process resumes from its own; the newest one is
    # corrupt here: every process skips it (process 0's verdict), process 0 alone moves it aside, and
    # both resume from the one before
    _corrupt(gang / "checkpoints" / "8", "digest")
    [one] = train_in(alone, 1, 12, cache)
    first, second = train_in(gang, 2, 12, cache)
    for notes in (first["notes"], second["notes"]):
        assert "resumed from checkpoint 4" in notes and any("step 8: params do not match" in n for n in notes)
    assert len(list((gang / "corrupt").iterdir())) == 1
    a, g = losses(alone), losses(gang)
    assert [s for s, _ in g] == list(range(1, 13))
    assert np.allclose([x for _, x in g], [x for _, x in a], rtol=1e-4), (a, g)


def test_a_batch_that_does_not_split_over_the_hosts_is_one_line(tmp_path: Path) -> None:
    results = train_in(tmp_path / "odd", 2, 4, tmp_path / "xla", batch=3)
    assert [r.get("error") for r in results] == [
        "train.batch_size=3 does not split over the 2 devices of 2 hosts; use a multiple of 2"
    ] * 2
    assert not (tmp_path / "odd" / "checkpoints").exists()
