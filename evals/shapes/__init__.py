"""Synthetic GenEval on coloured shapes (docs/benchmarks.md §1, §1.6): scenes, prompts, exact judge."""

from evals.shapes.benchmark import BENCHMARK, JUDGE, NAME, default_filenames, record_for, score_images
from evals.shapes.detect import Detection, classify_fill, detect
from evals.shapes.geometry import position_ratios, relative_position
from evals.shapes.judge import Judgement, evaluate, filter_detections, judge, judge_detections
from evals.shapes.metadata import (
    RELATIONS,
    TAGS,
    Clause,
    ExcludeClause,
    PromptMeta,
    meta_from_json,
    meta_to_json,
)
from evals.shapes.prompts import (
    infer_tag,
    load_metadata_jsonl,
    parse_prompt,
    prompts,
    scene_for_prompt,
    write_metadata_jsonl,
)
from evals.shapes.scene import (
    BACKGROUND,
    COLORS,
    SHAPES,
    CaptionStyle,
    Obj,
    Scene,
    caption,
    render,
    sample_scene,
)

__all__ = [
    "BACKGROUND",
    "BENCHMARK",
    "COLORS",
    "JUDGE",
    "NAME",
    "RELATIONS",
    "SHAPES",
    "TAGS",
    "CaptionStyle",
    "Clause",
    "Detection",
    "ExcludeClause",
    "Judgement",
    "Obj",
    "PromptMeta",
    "Scene",
    "caption",
    "classify_fill",
    "default_filenames",
    "detect",
    "evaluate",
    "filter_detections",
    "infer_tag",
    "judge",
    "judge_detections",
    "load_metadata_jsonl",
    "meta_from_json",
    "meta_to_json",
    "parse_prompt",
    "position_ratios",
    "prompts",
    "record_for",
    "relative_position",
    "render",
    "sample_scene",
    "scene_for_prompt",
    "score_images",
    "write_metadata_jsonl",
]
