"""A finished study with synthetic scores and sample images, recorded through the real registry API.

For the dashboard's tests and benchmark (``benchmarks/dashboard.py``): the runs come from planning a real
study file (so names, hashes, specs, parameter counts and costs are real), then each run is marked
finished with checkpoints, scores of the shapes benchmark (every metric, at every checkpoint) and sample
PNGs in the layout evaluation writes (``<workdir>/eval/<hash12>/shapes/step_<N:07d>/<idx:05d>/samples/``).
Values are a deterministic function of the run's position and the step, returned for assertions.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from i1lab.registry import Registry, ScoreRecord

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
JUDGE = "exact-pixel"
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
PALETTE = ((220, 50, 47), (38, 139, 210), (133, 153, 0), (181, 137, 0), (108, 113, 196), (42, 161, 152))


class SyntheticStudy(BaseModel):
    study: str
    names: list[str]  # members in plan order
    run_ids: dict[str, int]
    steps: list[int]
    values: dict[str, dict[int, dict[str, float]]]  # member -> step -> metric -> value
    prompts: list[str]
    workdirs: dict[str, str]


def metric_values(position: int, step: int, total: int, seed_jitter: float = 0.0) -> dict[str, float]:
    """Scores of the configuration at ``position`` at ``step``: rising with the step, spread by position
    (+0.03 per position, cycling every 7), shifted by ``seed_jitter`` for another seed."""
    progress = step / total
    overall = round(min(0.95, 0.2 + 0.4 * progress + 0.03 * (position % 7) + seed_jitter), 6)
    out = {"overall": overall, "correct_images": round(overall * 0.9, 6)}
    for i, tag in enumerate(TAGS):
        out[f"tag/{tag}"] = round(min(1.0, max(0.0, overall + 0.05 * (i - 2.5) / 2.5)), 6)
    return out


def _png(path: Path, colour: tuple[int, int, int], size: int = 16) -> None:
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (size, size), (245, 245, 245))
    ImageDraw.Draw(img).ellipse((3, 3, size - 4, size - 4), fill=colour)
    img.save(path)


def build(
    registry: Registry,
    *,
    study_text: str | None = None,
    study_file: Path | None = None,
    profile: str = "tiny",
    steps: tuple[int, ...] = (10, 20),
    prompts: int = 3,
    images_per_prompt: int = 2,
    images: bool = True,
    seed_jitter: float = 0.03,
) -> SyntheticStudy:
    """Plan a study (a file, or YAML text) and record it as finished with synthetic results."""
    from evals.shapes import prompts as shape_prompts
    from i1lab.execution.submit import planned_members
    from i1lab.plan.planner import expand, make_plan
    from i1lab.spec import load_study

    with tempfile.TemporaryDirectory() as tmp:
        path = study_file or EXPERIMENTS / "adapter_size.yaml"
        if study_text is not None:
            path = Path(tmp) / "study.yaml"
            path.write_text(study_text.replace("{experiments}", str(EXPERIMENTS)))
        study = load_study(path)
        plan = make_plan(study, expand(study, profile), {}, profile)
    total = max(steps)
    members = planned_members(plan, total_steps=total)
    ids = registry.record_plan(
        plan.study, members, file=str(path), profile=profile, description=study.doc.description
    )
    metas = shape_prompts(n_per_tag=1, seed=0)[:prompts]
    values: dict[str, dict[int, dict[str, float]]] = {}
    scores: list[ScoreRecord] = []
    seen: set[int] = set()
    stems = list(dict.fromkeys(m.name.split("#", 1)[0] for m in members))
    for m in members:
        run_id = ids[m.name]
        pos = stems.index(m.name.split("#", 1)[0])  # the seeds of one configuration share a position
        jitter = seed_jitter * int(m.name.rsplit("seed=", 1)[1]) if "#seed=" in m.name else 0.0
        values[m.name] = {st: metric_values(pos, st, total, jitter) for st in steps}
        if run_id in seen:
            continue
        seen.add(run_id)
        for st in steps:
            registry.add_checkpoint(run_id, st, f"{m.workdir}/checkpoints/{st}", st == total)
            scores += [
                ScoreRecord(run_id=run_id, step=st, benchmark="shapes", metric=k, judge=JUDGE, value=v)
                for k, v in values[m.name][st].items()
            ]
            if images:
                root = Path(m.workdir or "") / "eval" / m.hash[:12] / "shapes" / f"step_{st:07d}"
                for i, meta in enumerate(metas):
                    folder = root / f"{i:05d}"
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / "metadata.jsonl").write_text(json.dumps(meta) + "\n")
                    for k in range(images_per_prompt):
                        _png(folder / "samples" / f"{k:05d}.png", PALETTE[(pos + i + k) % len(PALETTE)])
                _png(root / "grid.png", PALETTE[pos % len(PALETTE)], size=32)
        registry.set_fields(run_id, status="finished", step=total, accelerator_hours=0.001 * (1 + pos % 3))
    registry.add_scores(scores)
    return SyntheticStudy(
        study=plan.study,
        names=[m.name for m in members],
        run_ids=ids,
        steps=list(steps),
        values=values,
        prompts=[str(meta["prompt"]) for meta in metas],
        workdirs={m.name: m.workdir or "" for m in members},
    )


@dataclass
class Built:
    """A registry folder (``home``) holding synthetic studies."""

    home: Path
    studies: dict[str, SyntheticStudy] = field(default_factory=dict)


def file_state(path: Path) -> tuple[str, int, int]:
    """Content hash, size and modification time of a file: what must not change when only reading."""
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns
