"""Ablation tables: one row per variant, each benchmark's value and its delta against the baseline.

``ablation_table`` and ``curves`` are pure functions of registry records; the renderers turn their
results into text (markdown, LaTeX, CSV, JSON; the rich terminal table lives in ``i1lab.report.display``).

**Seed noise.** When a study's baseline was trained with several seeds (members ``baseline#seed=N``, or
``CELL,baseline#seed=N`` in a grid), each cell of a variant carries ``sigma``: the sample standard
deviation (n - 1) of the baseline's seeds for that metric at the same step. A delta with
``|delta| <= 2 * sigma`` is marked *within noise* (``noise = True``): with two or more seeds this is about
the spread one would see between two baseline seeds, so such a difference is not evidence that the
variant helped or hurt. With one baseline seed there is no band (``sigma``/``noise`` are None).

**Paired confidence intervals.** Where both a variant and its baseline have per-prompt values recorded for
a headline at the same step (`i1lab.registry.prompts`; the same prompts sampled with the same initial
noise), each variant cell carries ``ci_low``/``ci_high``: the 95% paired bootstrap interval of the delta
over the prompts both have (`i1lab.report.paired`), and ``beyond_noise``: whether it excludes 0 (printed
``*``). A variant is paired with its own baseline member: with ``seeds:``, ``v#seed=N`` against
``baseline#seed=N``, the same training seed. The interval measures prompt noise only (would the delta hold
on more prompts); the seed band measures training noise — a delta worth reporting clears both.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel

from evals.benchmark import benchmarks
from i1lab.errors import I1labError
from i1lab.registry import MemberRecord, PromptScoreRecord, ScoreRecord
from i1lab.report.paired import LEVEL, paired_bootstrap


class _Headlines(Mapping[str, str]):
    """The headline metric of each benchmark, read from the catalogue (`evals.benchmark`) when asked."""

    def __getitem__(self, bench: str) -> str:
        found = benchmarks()
        if bench not in found:
            raise KeyError(bench)
        return found[bench].headline

    def __iter__(self) -> Iterator[str]:
        return iter(benchmarks())

    def __len__(self) -> int:
        return len(benchmarks())


HEADLINES: Mapping[str, str] = _Headlines()


class Column(BaseModel):
    benchmark: str
    metric: str
    judge: str

    @property
    def title(self) -> str:
        return f"{self.benchmark}/{self.metric}"


NOISE_SIGMAS = 2.0


class Cell(BaseModel):
    value: float | None
    delta: float | None
    step: int | None
    sigma: float | None = None  # std of the baseline's seeds at this step (two or more seeds)
    noise: bool | None = None  # |delta| <= NOISE_SIGMAS * sigma
    ci_low: float | None = None  # paired bootstrap 95% interval of the delta over shared prompts
    ci_high: float | None = None
    beyond_noise: bool | None = None  # the interval excludes 0


class Row(BaseModel):
    name: str
    label: str | None
    is_baseline: bool
    status: str
    step: int
    total_steps: int
    params: int | None
    cells: list[Cell]


class Table(BaseModel):
    study: str
    columns: list[Column]
    rows: list[Row]
    at_step: int | Literal["latest"]


def _pick(scores: list[ScoreRecord], col: Column, at_step: int | None) -> ScoreRecord | None:
    matching = [
        s for s in scores if (s.benchmark, s.metric, s.judge) == (col.benchmark, col.metric, col.judge)
    ]
    if at_step is not None:
        matching = [s for s in matching if s.step == at_step]
    return max(matching, key=lambda s: s.step) if matching else None


def columns_of(members: list[MemberRecord], all_metrics: bool = False) -> list[Column]:
    seen: dict[tuple[str, str, str], Column] = {}
    for m in members:
        for s in m.scores:
            if all_metrics or HEADLINES.get(s.benchmark) == s.metric:
                seen.setdefault(
                    (s.benchmark, s.metric, s.judge),
                    Column(benchmark=s.benchmark, metric=s.metric, judge=s.judge),
                )
    return sorted(
        seen.values(), key=lambda c: (c.benchmark, c.metric != HEADLINES.get(c.benchmark), c.metric, c.judge)
    )


def seed_stem(name: str) -> str:
    """``baseline#seed=2`` -> ``baseline``: the name shared by the seeds of one configuration."""
    return name.split("#", 1)[0]


def _sigma(seeds: list[MemberRecord], col: Column, step: int) -> float | None:
    values = [sc.value for m in seeds if (sc := _pick(m.scores, col, step)) is not None]
    return statistics.stdev(values) if len(values) >= 2 else None


def ablation_table(
    study: str,
    members: list[MemberRecord],
    *,
    at_step: int | None = None,
    all_metrics: bool = False,
    prompts: Sequence[PromptScoreRecord] = (),
) -> Table:
    """Baseline rows first, then variants in plan order, each cell with its delta vs its baseline, the
    paired confidence interval of that delta where ``prompts`` (the members' per-prompt values) allow, and,
    when the baseline has several seeds, the seed-noise band (see the module doc)."""
    cols = columns_of(members, all_metrics)
    per_prompt = {(p.run_id, p.step, p.benchmark, p.judge, p.metric): p.values for p in prompts}
    by_name = {m.name: m for m in members}
    seeds: dict[str, list[MemberRecord]] = {}
    for m in members:
        if m.is_baseline:
            seeds.setdefault(seed_stem(m.name), []).append(m)
    ordered = sorted(members, key=lambda m: not m.is_baseline)
    rows = []
    for m in ordered:
        base = by_name.get(m.baseline or "") if not m.is_baseline else None
        group = seeds.get(seed_stem(base.name), []) if base is not None else []
        cells = []
        for col in cols:
            own = _pick(m.scores, col, at_step)
            delta = sigma = noise = interval = None
            if own is not None and base is not None:
                ref = _pick(base.scores, col, own.step)
                delta = own.value - ref.value if ref is not None else None
                sigma = _sigma(group, col, own.step) if len(group) >= 2 else None
                if delta is not None and sigma is not None:
                    noise = abs(delta) <= NOISE_SIGMAS * sigma
                key = (own.step, col.benchmark, col.judge, col.metric)
                mine, theirs = per_prompt.get((m.run.id, *key)), per_prompt.get((base.run.id, *key))
                if delta is not None and mine and theirs:
                    interval = paired_bootstrap(theirs, mine)
            cells.append(
                Cell(
                    value=own.value if own else None,
                    delta=delta,
                    step=own.step if own else None,
                    sigma=sigma,
                    noise=noise,
                    ci_low=interval.low if interval else None,
                    ci_high=interval.high if interval else None,
                    beyond_noise=interval.beyond_noise if interval else None,
                )
            )
        rows.append(
            Row(
                name=m.name,
                label=m.label,
                is_baseline=m.is_baseline,
                status=m.run.status,
                step=m.run.step,
                total_steps=m.run.total_steps,
                params=m.run.params,
                cells=cells,
            )
        )
    return Table(study=study, columns=cols, rows=rows, at_step=at_step if at_step is not None else "latest")


def fmt_value(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def fmt_delta(delta: float | None, noise: bool | None = None, beyond: bool | None = None) -> str:
    """``+0.0100 ↑``, ``-0.0100 ↓``, ``+0.0000 =``; ``+0.0100 ↑*`` when its paired interval excludes 0;
    ``+0.0010 ↑ (noise)`` when within the seed band."""
    if delta is None:
        return ""
    arrow = "↑" if delta > 0 else "↓" if delta < 0 else "="
    return f"{delta:+.4f} {arrow}" + ("*" if beyond else "") + (" (noise)" if noise else "")


def fmt_ci(cell: Cell) -> str:
    """``[-0.0120, +0.0340]``: the delta's paired interval; empty without one."""
    if cell.ci_low is None or cell.ci_high is None:
        return ""
    return f"[{cell.ci_low:+.4f}, {cell.ci_high:+.4f}]"


def fmt_cell(cell: Cell) -> str:
    """A cell as text: value, delta with its marks, paired interval."""
    return " ".join(
        x
        for x in (fmt_value(cell.value), fmt_delta(cell.delta, cell.noise, cell.beyond_noise), fmt_ci(cell))
        if x
    )


def noise_note(table: Table) -> str | None:
    """What the marks mean, when some cell has a paired interval or a seed-noise band."""
    cells = [c for r in table.rows for c in r.cells]
    notes = []
    if any(c.ci_low is not None for c in cells):
        notes.append(
            f"[lo, hi] = paired bootstrap {LEVEL:.0%} interval of the delta over the prompts both runs "
            "share (same prompts, same initial noise); * = it excludes 0: beyond prompt noise"
        )
    if any(c.sigma is not None for c in cells):
        notes.append(
            f"σ = standard deviation of the baseline's seeds; a delta within ±{NOISE_SIGMAS:g}σ is marked "
            "(noise)"
        )
    return "; ".join(notes) if notes else None


def fmt_params(params: int | None) -> str:
    if params is None:
        return "—"
    return f"{params / 1e9:.4f}B" if params >= 1e8 else f"{params / 1e6:.3f}M"


def to_records(table: Table) -> list[dict[str, object]]:
    out = []
    for row in table.rows:
        rec: dict[str, object] = {
            "name": row.name,
            "baseline": row.is_baseline,
            "status": row.status,
            "step": row.step,
            "params": row.params,
        }
        for col, cell in zip(table.columns, row.cells, strict=True):
            rec[col.title] = cell.value
            rec[f"{col.title} delta"] = cell.delta
            rec[f"{col.title} judge"] = col.judge
            rec[f"{col.title} sigma"] = cell.sigma
            rec[f"{col.title} within noise"] = cell.noise
            rec[f"{col.title} ci_low"] = cell.ci_low
            rec[f"{col.title} ci_high"] = cell.ci_high
            rec[f"{col.title} beyond noise"] = cell.beyond_noise
        out.append(rec)
    return out


def render_json(table: Table) -> str:
    return json.dumps(table.model_dump(), indent=2)


def render_csv(table: Table) -> str:
    recs = to_records(table)
    buf = io.StringIO()
    if recs:
        writer = csv.DictWriter(buf, fieldnames=list(recs[0]))
        writer.writeheader()
        writer.writerows(recs)
    return buf.getvalue()


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(table: Table) -> str:
    head = ["variant", "params", *[f"{c.title} [{c.judge}]" for c in table.columns]]
    lines = ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        cells = [fmt_cell(c) for c in row.cells]
        name = f"**{_md(row.name)}**" if row.is_baseline else _md(row.name)
        lines.append("| " + " | ".join([name, fmt_params(row.params), *cells]) + " |")
    note = noise_note(table)
    if note:
        lines += ["", note]
    return "\n".join(lines)


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex_cell(cell: Cell) -> str:
    if cell.value is None:
        return "--"
    out = f"{cell.value:.4f}"
    if cell.delta is not None:
        arrow = r"\uparrow" if cell.delta > 0 else r"\downarrow" if cell.delta < 0 else "="
        star = "^{*}" if cell.beyond_noise else ""
        delta = f"${cell.delta:+.4f}\\,{arrow}{star}$"
        out += " " + (f"\\textcolor{{gray}}{{{delta}}}" if cell.noise else delta)
    if cell.ci_low is not None and cell.ci_high is not None:
        out += f" {{\\scriptsize$[{cell.ci_low:+.4f}, {cell.ci_high:+.4f}]$}}"
    return out


def render_latex(table: Table) -> str:
    """A booktabs table (``\\usepackage{booktabs, xcolor}``); deltas within seed noise are grey."""
    at = "the latest checkpoint" if table.at_step == "latest" else f"step {table.at_step}"
    head = ["variant", "params", *[latex_escape(f"{c.title} [{c.judge}]") for c in table.columns]]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        f"\\caption{{{latex_escape(table.study)}: deltas vs baseline at {at}}}",
        r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}",
        r"\toprule",
        " & ".join(head) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        name = latex_escape(row.name)
        name = f"\\textbf{{{name}}}" if row.is_baseline else name
        lines.append(
            " & ".join(
                [name, latex_escape(fmt_params(row.params).replace("—", "--")), *map(_latex_cell, row.cells)]
            )
            + r" \\"
        )
    lines += [r"\bottomrule", r"\end{tabular}"]
    rules = []
    if any(c.ci_low is not None for r in table.rows for c in r.cells):
        rules.append(
            f"$[\\cdot]$: paired bootstrap {LEVEL * 100:.0f}\\% interval of the delta over shared prompts; "
            "$^{*}$: it excludes 0"
        )
    if any(c.sigma is not None for r in table.rows for c in r.cells):
        rules.append(f"grey: a delta within $\\pm{NOISE_SIGMAS:g}\\sigma$ of the baseline's seeds")
    if rules:
        lines.append(f"\\par\\smallskip{{\\footnotesize {'; '.join(rules)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines)


# --- curves over checkpoint steps ------------------------------------------------------------------
class Curve(BaseModel):
    """One metric over checkpoint steps for a set of runs: ``values[i][j]`` = run ``runs[j]`` at
    ``steps[i]`` (None where that run has no score at that step)."""

    column: Column
    steps: list[int]
    runs: list[str]
    values: list[list[float | None]]


def curves(
    members: list[MemberRecord], *, runs: Sequence[str] | None = None, all_metrics: bool = False
) -> list[Curve]:
    """Each benchmark's headline (or every metric) over the checkpoint steps of the chosen runs
    (default: every member, baseline first)."""
    chosen = sorted(members, key=lambda m: not m.is_baseline)
    if runs is not None:
        by_name = {m.name: m for m in members}
        missing = [r for r in runs if r not in by_name]
        if missing:
            raise I1labError(
                f"no run named {missing[0]!r} in the study (runs: {', '.join(m.name for m in chosen)})"
            )
        chosen = [by_name[r] for r in runs]
    out = []
    for col in columns_of(chosen, all_metrics):
        key = (col.benchmark, col.metric, col.judge)
        at: dict[tuple[int, str], float] = {}
        for m in chosen:
            for sc in m.scores:
                if (sc.benchmark, sc.metric, sc.judge) == key:
                    at[(sc.step, m.name)] = sc.value
        steps = sorted({st for st, _ in at})
        names = [m.name for m in chosen]
        out.append(
            Curve(
                column=col, steps=steps, runs=names, values=[[at.get((st, n)) for n in names] for st in steps]
            )
        )
    return out


def render_curves_json(items: list[Curve]) -> str:
    return json.dumps([c.model_dump() for c in items], indent=2)


def render_curves_csv(items: list[Curve]) -> str:
    """Long format: one line per (metric, step, run)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["benchmark", "metric", "judge", "step", "run", "value"])
    for c in items:
        for st, row in zip(c.steps, c.values, strict=True):
            for name, value in zip(c.runs, row, strict=True):
                writer.writerow([c.column.benchmark, c.column.metric, c.column.judge, st, name, value])
    return buf.getvalue()


def render_curves_markdown(items: list[Curve]) -> str:
    blocks = []
    for c in items:
        head = ["step", *c.runs]
        lines = [f"**{_md(c.column.title)}** [{_md(c.column.judge)}]", ""]
        lines += ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
        lines += [
            "| " + " | ".join([str(st), *map(fmt_value, row)]) + " |"
            for st, row in zip(c.steps, c.values, strict=True)
        ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
