"""LongText-Bench (docs/benchmarks.md §5): prompts, OCR clean-up, exact aggregation, layout, results files."""

from evals.longtext.benchmark import BENCHMARK
from evals.longtext.io import read_results, write_results
from evals.longtext.layout import generation_path, image_path, prompt_id_of, walk, write_images
from evals.longtext.prompts import N_PROMPTS, LongTextPrompt, load_prompts, parse_prompts
from evals.longtext.score import (
    LongTextRecord,
    LongTextSummary,
    clean_ocr_output,
    format_summary,
    match_counts,
    normalize,
    summarize,
)

__all__ = [
    "BENCHMARK",
    "N_PROMPTS",
    "LongTextPrompt",
    "LongTextRecord",
    "LongTextSummary",
    "clean_ocr_output",
    "format_summary",
    "generation_path",
    "image_path",
    "load_prompts",
    "match_counts",
    "normalize",
    "parse_prompts",
    "prompt_id_of",
    "read_results",
    "summarize",
    "walk",
    "write_images",
    "write_results",
]
