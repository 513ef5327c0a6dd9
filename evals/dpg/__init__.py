"""DPG-Bench (docs/benchmarks.md §2): prompts, question table, 2×2 grids, exact aggregation."""

from evals.dpg.benchmark import BENCHMARK
from evals.dpg.io import DpgFileError, read_answers, read_detail_txt, read_results_txt, write_answers
from evals.dpg.layout import crop_boxes, crop_tiles, grid_path, sample_path, stitch_2x2, walk, write_images
from evals.dpg.prompts import N_PROMPTS, load_prompts, parse_prompts
from evals.dpg.questions import (
    DpgCsvError,
    Question,
    QuestionSet,
    build_question_set,
    csv_path,
    l1_category,
    l2_category,
    load_questions,
    parse_csv,
)
from evals.dpg.score import (
    DpgSummary,
    ImageFailure,
    ImageResult,
    answers_from_records,
    format_summary,
    item_key,
    score_image,
    summarize,
)

__all__ = [
    "BENCHMARK",
    "N_PROMPTS",
    "DpgCsvError",
    "DpgFileError",
    "DpgSummary",
    "ImageFailure",
    "ImageResult",
    "Question",
    "QuestionSet",
    "answers_from_records",
    "build_question_set",
    "crop_boxes",
    "crop_tiles",
    "csv_path",
    "format_summary",
    "grid_path",
    "item_key",
    "l1_category",
    "l2_category",
    "load_prompts",
    "load_questions",
    "parse_csv",
    "parse_prompts",
    "read_answers",
    "read_detail_txt",
    "read_results_txt",
    "sample_path",
    "score_image",
    "stitch_2x2",
    "summarize",
    "walk",
    "write_answers",
    "write_images",
]
