"""GenEval (docs/benchmarks.md §1): prompt set, per-image decision, aggregation, layout, importers."""

from evals.geneval.benchmark import BENCHMARK
from evals.geneval.decide import COLORS, decide, details_json, filter_boxes, make_record, relations
from evals.geneval.io import read_results, records_from_judgements, write_results
from evals.geneval.layout import (
    FoundImage,
    metadata_for,
    sample_path,
    walk,
    write_images,
    write_prompt_folder,
)
from evals.geneval.prompts import (
    N_PROMPTS,
    TAG_RANGES,
    Metadata,
    load_metadata,
    load_object_names,
    metadata_path,
    parse_metadata,
)
from evals.geneval_score import GenEvalRecord, GenEvalSummary, TagScore, format_summary, summarize

__all__ = [
    "BENCHMARK",
    "COLORS",
    "N_PROMPTS",
    "TAG_RANGES",
    "FoundImage",
    "GenEvalRecord",
    "GenEvalSummary",
    "Metadata",
    "TagScore",
    "decide",
    "details_json",
    "filter_boxes",
    "format_summary",
    "load_metadata",
    "load_object_names",
    "make_record",
    "metadata_for",
    "metadata_path",
    "parse_metadata",
    "read_results",
    "records_from_judgements",
    "relations",
    "sample_path",
    "summarize",
    "walk",
    "write_images",
    "write_prompt_folder",
    "write_results",
]
