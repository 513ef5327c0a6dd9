"""CVTG-2K (docs/benchmarks.md §4): prompts and GT words, OCR metrics, exact aggregation, layout."""

from evals.cvtg.benchmark import BENCHMARK
from evals.cvtg.io import read_judgements, read_results_json, write_judgements, write_results_json
from evals.cvtg.layout import cells, flat_path, image_path, walk, write_images
from evals.cvtg.prompts import (
    AREAS,
    TYPES,
    CvtgPrompt,
    gt_words,
    load_prompts,
    parse_prompt_file,
    prompt_file,
    prompt_table,
)
from evals.cvtg.score import (
    AreaResult,
    CvtgJudgement,
    CvtgSummary,
    best_match,
    format_summary,
    levenshtein,
    ned,
    ocr_stats,
    predicted_words,
    results_json,
    score_area,
    summarize,
)

__all__ = [
    "AREAS",
    "BENCHMARK",
    "TYPES",
    "AreaResult",
    "CvtgJudgement",
    "CvtgPrompt",
    "CvtgSummary",
    "best_match",
    "cells",
    "flat_path",
    "format_summary",
    "gt_words",
    "image_path",
    "levenshtein",
    "load_prompts",
    "ned",
    "ocr_stats",
    "parse_prompt_file",
    "predicted_words",
    "prompt_file",
    "prompt_table",
    "read_judgements",
    "read_results_json",
    "results_json",
    "score_area",
    "summarize",
    "walk",
    "write_images",
    "write_judgements",
    "write_results_json",
]
