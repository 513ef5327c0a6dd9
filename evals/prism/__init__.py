"""PRISM-Bench (docs/benchmarks.md §3): prompts, reply parsing, exact aggregation, layout, judge files."""

from evals.prism.benchmark import BENCHMARK
from evals.prism.io import read_judge_dir, read_replies, record_path, write_record, write_replies
from evals.prism.layout import flat_path, image_path, processed_location, walk, write_images
from evals.prism.prompts import (
    CATEGORIES,
    EVAL_ORDER,
    PER_CATEGORY,
    caption_path,
    flat_prompts,
    load_prompts,
    parse_captions,
)
from evals.prism.score import (
    EVAL_TYPES,
    MAPPING_100,
    NOT_SAVED,
    UNREADABLE,
    PrismRecord,
    PrismSummary,
    clean_reply,
    format_summary,
    parse_reply,
    read_score,
    record_from_reply,
    summarize,
)

__all__ = [
    "BENCHMARK",
    "CATEGORIES",
    "EVAL_ORDER",
    "EVAL_TYPES",
    "MAPPING_100",
    "NOT_SAVED",
    "PER_CATEGORY",
    "UNREADABLE",
    "PrismRecord",
    "PrismSummary",
    "caption_path",
    "clean_reply",
    "flat_path",
    "flat_prompts",
    "format_summary",
    "image_path",
    "load_prompts",
    "parse_captions",
    "parse_reply",
    "processed_location",
    "read_judge_dir",
    "read_replies",
    "read_score",
    "record_from_reply",
    "record_path",
    "summarize",
    "walk",
    "write_images",
    "write_record",
    "write_replies",
]
