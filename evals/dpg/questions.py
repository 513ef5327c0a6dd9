"""DPG-Bench's question table `dpg_bench.csv` read the official way (docs/benchmarks.md §2.1, §2.5).

The official `prepare_dpg_data` is reproduced row by row:

* the CSV is read with ``pd.read_csv(path)`` defaults (so dtypes are inferred exactly as upstream);
* the FIRST data row is skipped (never asked);
* a row whose `item_id` differs from the previous row's starts a NEW question dict for that item, so a
  later separate block of the same item REPLACES the earlier one (rows of an item must be contiguous);
* `dependency` must be text: a column inferred as numbers makes the official ``.split(",")`` crash,
  which is raised here as `DpgCsvError`;
* within an item, proposition ids map to (tuple, parents, question) in CSV order.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from evals.benchdir import benchmarks_dir, require

if TYPE_CHECKING:
    import pandas as pd

CSV_FILE: Final = Path("dpg") / "dpg_bench.csv"
COLUMNS: Final = (
    "item_id",
    "text",
    "keywords",
    "proposition_id",
    "dependency",
    "category_broad",
    "category_detailed",
    "tuple",
    "question_natural_language",
)


class DpgCsvError(ValueError):
    """The official script would crash while reading the CSV."""


@dataclass(frozen=True)
class Question:
    """One proposition of an item."""

    proposition_id: int
    parents: tuple[int, ...]
    tuple: str
    question: str

    @property
    def l2(self) -> str:
        """L2 category: the tuple text before the first "(", trimmed."""
        return l2_category(self.tuple)


def l2_category(tuple_text: str) -> str:
    return tuple_text.split("(")[0].strip()


def l1_category(l2: str) -> str:
    """L1 category: the L2 text before the first "-", trimmed."""
    return l2.split("-")[0].strip()


QuestionSet = dict[Any, dict[int, Question]]
"""item_id (as pandas parsed it) → proposition id → question, in CSV order."""


def build_question_set(rows: Iterable[Mapping[str, Any]]) -> QuestionSet:
    """The official `prepare_dpg_data` on already-read rows (first row skipped, contiguous blocks)."""
    questions: QuestionSet = {}
    previous: Any = ""
    for i, row in enumerate(rows):
        if i == 0:
            continue
        current = row["item_id"]
        qid = int(row["proposition_id"])
        dependency = row["dependency"]
        if not isinstance(dependency, str):
            raise DpgCsvError(
                f"row {i}: dependency {dependency!r} was not read as text; the official script's "
                "dependency.split(',') crashes here (a CSV whose dependencies are all single integers "
                "is parsed as numbers)"
            )
        parents = tuple(int(d.strip()) for d in dependency.split(","))
        q = Question(qid, parents, str(row["tuple"]), str(row["question_natural_language"]))
        if current == previous:
            questions[current][qid] = q
        else:
            questions[current] = {qid: q}
        previous = current
    return questions


def _rows(frame: pd.DataFrame) -> Iterable[dict[str, Any]]:
    missing = [
        c
        for c in ("item_id", "proposition_id", "dependency", "tuple", "question_natural_language")
        if c not in frame
    ]
    if missing:
        raise DpgCsvError(f"not a DPG-Bench question table: missing columns {missing}")
    for record in frame.to_dict(orient="records"):
        yield {str(k): v for k, v in record.items()}


def parse_csv(text: str) -> QuestionSet:
    """Questions from CSV text, read with pandas defaults like the official script."""
    import pandas as pd

    return build_question_set(_rows(pd.read_csv(io.StringIO(text))))


def csv_path(directory: str | os.PathLike[str] | None = None) -> Path:
    return benchmarks_dir(directory) / CSV_FILE


def load_questions(
    path: str | os.PathLike[str] | None = None, *, directory: str | os.PathLike[str] | None = None
) -> QuestionSet:
    """Questions from `path`, else from ``<benchmarks dir>/dpg/dpg_bench.csv``. The file is not shipped:
    a missing one raises `BenchmarkFileMissing` naming where to put it."""
    target = Path(path) if path is not None else csv_path(directory)
    require(target, "dpg", "question/dependency/category table, not shipped in shared/benchmarks")
    import pandas as pd

    return build_question_set(_rows(pd.read_csv(target)))
