"""The "shapes" benchmark: judge images with the pixel judge, aggregate like GenEval (§1.3–1.4)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

import numpy.typing as npt

from evals.geneval_score import GenEvalRecord, GenEvalSummary, summarize
from evals.shapes.judge import judge
from evals.shapes.metadata import PromptMeta, meta_to_json

NAME: Final = "shapes"


def record_for(meta: PromptMeta, image: npt.ArrayLike, filename: str) -> GenEvalRecord:
    """One GenEval-style `results.jsonl` row for one image."""
    verdict = judge(image, meta)
    return {
        "filename": filename,
        "tag": meta["tag"],
        "prompt": meta["prompt"],
        "correct": verdict.correct,
        "reason": verdict.reason,
        "metadata": meta_to_json(meta),
        "details": json.dumps(verdict.details),
    }


def default_filenames(metas: Sequence[PromptMeta]) -> list[str]:
    """``<prompt index:05d>/samples/<k:05d>.png`` (§1.2), prompts indexed by first appearance."""
    folders: dict[str, int] = {}
    seen: dict[str, int] = {}
    names = []
    for meta in metas:
        key = meta_to_json(meta)
        folder = folders.setdefault(key, len(folders))
        k = seen.get(key, 0)
        seen[key] = k + 1
        names.append(f"{folder:05d}/samples/{k:05d}.png")
    return names


def score_images(
    images: Sequence[tuple[PromptMeta, npt.ArrayLike]], *, filenames: Sequence[str] | None = None
) -> tuple[list[GenEvalRecord], GenEvalSummary]:
    """Judge every ``(metadata, image)`` pair and summarise; records keep the input order."""
    metas = [meta for meta, _ in images]
    names = list(filenames) if filenames is not None else default_filenames(metas)
    if len(names) != len(images):
        raise ValueError("filenames must match images one to one")
    records = [record_for(meta, image, name) for (meta, image), name in zip(images, names, strict=True)]
    return records, summarize(records)
