"""``i1lab import-i1`` and ``import-results``: work done elsewhere, brought in as studies, run folders
and results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from i1lab.cli.common import err, out


def import_i1(
    config: Annotated[
        Path, typer.Argument(help="an i1 reference config (jax/configs/**.py); it is parsed, never run")
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="the study file to write (default: print it); with --checkpoint, the run folder"),
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="a reference checkpoint (.npz, also with its -<step> suffix, or .pt)")
    ] = None,
    buffer_mib: Annotated[
        int,
        typer.Option(
            min=0, help="tensors read and not yet written, at most (MiB; at least one tensor at a time)"
        ),
    ] = 256,
) -> None:
    """Import an i1 reference config as a single-run study, and optionally convert its checkpoint.

    Without --checkpoint: writes the equivalent study YAML (every knob mapped or listed; an unknown knob
    is an error). With --checkpoint: converts the checkpoint into a run folder (spec.json + an Orbax
    checkpoint) that `i1lab forward`, `i1lab generate` and training read, and reports every tensor. The
    conversion streams (its memory does not grow with the checkpoint) and shows its progress."""
    from i1lab.i1import.knobs import import_config

    imported = import_config(config)
    text = imported.study_yaml()
    if checkpoint is None:
        if out is None:
            sys.stdout.write(text)
        else:
            imported.write(out)
        where = f"wrote {out}" if out is not None else str(config)
        err.print(f"{where}: {imported.summary()}", markup=False, highlight=False, soft_wrap=True)
        return
    from i1lab.i1import.convert import convert_checkpoint, step_of
    from i1lab.i1import.write import TerminalProgress

    step = step_of(checkpoint)
    target = out or Path(f"{imported.name}-step{step if step is not None else 'final'}")
    report = convert_checkpoint(
        imported.spec,
        checkpoint,
        target,
        study_yaml=text,
        buffer_bytes=buffer_mib << 20,
        progress=lambda tensors, nbytes: TerminalProgress("converting", tensors, nbytes),
    )
    sys.stdout.write(report.text() + "\n")


def export_i1(
    run: Annotated[Path, typer.Argument(help="a run folder (spec.json + checkpoints/), e.g. from import-i1")],
    out: Annotated[Path, typer.Option(help="the reference-layout .npz to write")],
    step: Annotated[int | None, typer.Option(help="the checkpoint's step (default: the newest)")] = None,
    buffer_mib: Annotated[
        int, typer.Option(min=0, help="arrays restored and not yet written, at most (MiB)")
    ] = 256,
) -> None:
    """Write a run's checkpoint back in the i1 reference layout (the big_vision .npz of params,
    params_ema, opt and chrono that `import-i1 --checkpoint` reads), streaming."""
    from i1lab.i1import.convert import export_run
    from i1lab.i1import.write import TerminalProgress

    n = export_run(
        run,
        out,
        step=step,
        buffer_bytes=buffer_mib << 20,
        progress=lambda tensors, nbytes: TerminalProgress("exporting", tensors, nbytes),
    )
    sys.stdout.write(f"wrote {out} ({n} arrays)\n")


def import_results(
    path: Annotated[Path, typer.Argument(help="JSON lines: one run trained elsewhere per line")],
) -> None:
    """Record results of runs trained elsewhere (status imported), comparable like trained ones.

    Each line: {"study", "name", "baseline", "spec": {dotted.key: value}, "params", "scores":
    [{"benchmark", "metric", "value", "step", "judge"}]}. All lines or none are recorded."""
    from i1lab.registry.importer import import_results as run_import

    summary = run_import(path)
    out.print(
        f"imported {summary.lines} lines: {summary.runs} runs, {summary.scores} scores "
        f"into {', '.join(summary.studies)}",
        markup=False,
        highlight=False,
    )
