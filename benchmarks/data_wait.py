"""Data wait as a fraction of step time, for the tiny and small presets on CPU (target: under 5%).

Usage: ``python benchmarks/data_wait.py [--steps 120] [--presets tiny small]
[--families shapes textured words webdataset]``

Each row trains a real run with :func:`i1lab.train.runner.train` (the baseline's ``tiny`` profile:
16x16 px, batch 16, hash text encoder, pixel space) in a temporary folder, with the model size and the
data family of the row, and reads the run's own metrics: the loop times how long it blocks on the
batch prefetcher (``data_wait``) and the wall time per step (``step_time``), both averaged over the
steps after the first three (compilation excluded). ``webdataset`` reads PNG shards written first
(40x48 px images, resized and centre-cropped on the fly). The XLA cache is shared between rows, so
each preset compiles once. Printed: one line per (preset, family), then the machine's load average
(the figures are wall times: other processes on the machine inflate them).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from i1lab.data.images import encode_png
from i1lab.plan.planner import expand
from i1lab.spec import load_study
from i1lab.spec.run import RunSpec
from i1lab.train.runner import Hooks, train

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def write_shards(folder: Path, count: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per_shard = 256
    for s in range(0, count, per_shard):
        with tarfile.open(folder / f"shard-{s // per_shard:05d}.tar", "w") as tar:
            for n in range(s, min(count, s + per_shard)):
                for name, data in (
                    (f"{n:07d}.png", encode_png(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))),
                    (f"{n:07d}.json", json.dumps({"captions": [f"image {n}", f"picture {n}"]}).encode()),
                ):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(folder / "*.tar")


def spec_for(preset: str, family: str, steps: int, shards: str) -> RunSpec:
    raw: dict[str, Any] = expand(load_study(EXPERIMENTS / "baseline.yaml"), "tiny")[0].spec.model_dump(
        mode="json"
    )
    raw["model"]["size"] = preset
    if family == "webdataset":
        raw["data"]["sources"] = [{"name": "wds", "kind": "webdataset", "path": shards, "count": 2048}]
    elif family != "shapes":  # the profile's three sources, all of this family
        for source in raw["data"]["sources"]:
            source["family"] = family
    raw["train"].update(steps=steps, log_every=steps, checkpoint_every=steps, keep_every=steps)
    return RunSpec.model_validate(raw)


def measure(spec: RunSpec, workdir: Path) -> dict[str, float]:
    train(spec, workdir, Hooks())
    records = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]  # the window of steps 4..N
    return {
        "step_time": last["step_time"],
        "data_wait": last["data_wait"],
        "images_per_s": last["images_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--families", nargs="+", default=["shapes", "textured", "words", "webdataset"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="i1lab-data-wait-") as tmp:
        root = Path(tmp)
        os.environ.setdefault("I1LAB_HOME", str(root / "home"))
        shards = write_shards(root / "shards", 2048) if "webdataset" in args.families else ""
        print(f"{'preset':<7}{'data':<12}{'step ms':>9}{'wait ms':>9}{'wait %':>8}{'img/s':>8}")
        for preset in args.presets:
            for family in args.families:
                t0 = time.perf_counter()
                m = measure(spec_for(preset, family, args.steps, shards), root / f"{preset}-{family}")
                share = 100 * m["data_wait"] / m["step_time"]
                print(
                    f"{preset:<7}{family:<12}{1e3 * m['step_time']:>9.1f}{1e3 * m['data_wait']:>9.2f}"
                    f"{share:>7.2f}%{m['images_per_s']:>8.0f}   ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"batch 16, 16x16 px, {args.steps} steps (steps 4..{args.steps} timed); load average {load}")


if __name__ == "__main__":
    main()
