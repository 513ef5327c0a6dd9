"""``i1lab train``, ``inspect``, ``forward`` and ``generate``: one run by hand, in its work directory and
without the registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from i1lab.cli.common import JsonOpt, ProfileOpt, StudyArg, err, out
from i1lab.errors import I1labError


def train(
    study: StudyArg,
    workdir: Annotated[Path, typer.Option("--workdir", help="where checkpoints and metrics go")],
    profile: ProfileOpt = None,
    variant: Annotated[str, typer.Option(help="which run of the study")] = "baseline",
    evaluate: Annotated[bool, typer.Option(help="score checkpoints on the spec's benchmarks")] = True,
) -> None:
    """Train one run of a study in a work directory, without the registry (what a worker runs). On
    SIGTERM it checkpoints the step it is in and exits with code 75; the same command resumes."""
    from i1lab.plan.planner import expand
    from i1lab.spec import load_study

    variants = {v.name: v for v in expand(load_study(study), profile)}
    for v in list(variants.values()):
        variants.update({a: v for a in v.aliases})
    if variant not in variants:
        raise I1labError(f"no run named {variant!r} in {study}; runs: {', '.join(variants)}")
    spec = variants[variant].spec
    from i1lab.train.runner import Hooks
    from i1lab.train.runner import train as run_train

    def on_log(m: dict[str, float]) -> None:
        err.print(f"step {int(m['step'])}: loss {m['loss']:.4f} ({m['images_per_s']:.0f} img/s)")

    def on_start(step: int, notes: list[str]) -> None:
        for note in notes:
            err.print(note, markup=False, highlight=False)

    hooks = Hooks(on_log=on_log, on_start=on_start)
    if evaluate:
        from i1lab.evaluation.evaluate import evaluate as run_eval

        def on_eval(step: int, ema: object) -> None:
            for res in run_eval(spec, ema, step, workdir / "eval"):
                err.print(f"step {step}: {res.benchmark} {res.headline} = {res.metrics[res.headline]:.4f}")

        hooks.on_eval = on_eval
    from i1lab.train.preemption import EXIT_INTERRUPTED, Interrupted

    try:
        summary = run_train(spec, workdir, hooks)
    except Interrupted as exc:
        # a notice to stop (SIGTERM, a TPU maintenance notice): the same command resumes from exc.step
        err.print(f"interrupted: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    out.print(f"finished at step {summary['step']}, loss {summary['loss']:.4f}")


def inspect_run(
    workdir: Annotated[Path, typer.Argument(help="a run's work directory", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """The newest usable checkpoint of a run: step, data position, sha256 of params, EMA and optimizer."""
    from i1lab.train.inspection import inspect_workdir, render

    info = inspect_workdir(workdir)
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
    else:
        sys.stdout.write(render(info) + "\n")


def forward_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="a run folder or one of its checkpoints/<step> folders")],
    inputs: Annotated[
        Path, typer.Option("--inputs", help=".npz with x (B,C,h,w), t (B,), text (B,L,D), mask (B,L)")
    ],
    out: Annotated[Path, typer.Option("--out", help=".npz to write the velocity v (B,C,h,w) to")],
    weights: Annotated[str, typer.Option(help="ema or params")] = "ema",
) -> None:
    """Apply the model once to given arrays and save the predicted velocity `v` (deterministic)."""
    from i1lab.evaluation.forward import forward

    if weights not in ("ema", "params"):
        raise I1labError(f"--weights must be ema or params, not {weights!r}")
    step, shape = forward(checkpoint, inputs, out, weights)  # type: ignore[arg-type]
    out_shape = "x".join(map(str, shape))
    err.print(
        f"wrote {out}: v {out_shape} from step {step} ({weights} weights)", markup=False, highlight=False
    )


def generate_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="a run folder or one of its checkpoints/<step> folders")],
    prompt: Annotated[list[str] | None, typer.Option("--prompt", help="a prompt (repeatable)")] = None,
    prompts: Annotated[
        Path | None, typer.Option("--prompts", help="prompts file: one per line, or .jsonl")
    ] = None,
    out: Annotated[Path, typer.Option(help="folder for the PNGs")] = Path("samples"),
    cfg_scale: Annotated[float | None, typer.Option(help="CFG scale w (default: the run's)")] = None,
    cfg_rescale: Annotated[float | None, typer.Option(help="CFG rescale φ (default: the run's)")] = None,
    steps: Annotated[int | None, typer.Option(help="Euler steps (default: the run's)")] = None,
    seed: Annotated[int | None, typer.Option(help="noise seed (default: the run's sampling seed)")] = None,
    size: Annotated[int | None, typer.Option(help="image size in pixels (default: the trained one)")] = None,
    batch_size: Annotated[int, typer.Option(help="images sampled together")] = 8,
) -> None:
    """Generate one image per prompt from a checkpoint (EMA weights) into a folder of PNGs."""
    from i1lab.evaluation.generate import generate_images, read_prompts

    texts = read_prompts(prompt, prompts)
    result = generate_images(
        checkpoint,
        texts,
        out,
        cfg_scale=cfg_scale,
        cfg_rescale=cfg_rescale,
        steps=steps,
        seed=seed,
        size=size,
        batch_size=batch_size,
        console=err,
    )
    err.print(
        f"wrote {len(result.files)} images to {result.folder} (step {result.step})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
