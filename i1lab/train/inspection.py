"""``i1lab inspect DIR``: what a run's newest usable checkpoint holds, with digests of its arrays.

The digests are computed from the arrays restored from disk (not copied from the checkpoint's own
record), so two work directories with equal digests hold bitwise-equal parameters, EMA parameters and
optimizer states.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from i1lab.errors import I1labError
from i1lab.spec.run import RunSpec


def inspect_workdir(workdir: Path) -> dict[str, Any]:
    """Step, data position, precision and digests of the newest checkpoint of ``workdir`` that
    restores and matches the digests saved with it. Read-only: corrupt checkpoints are reported."""
    from i1lab.train.digest import state_digests
    from i1lab.train.runner import initial_state, run_checkpoints

    workdir = Path(workdir)
    spec_path = workdir / "spec.json"
    if not spec_path.is_file():
        raise I1labError(f"{workdir}: not a run work directory (no spec.json)")
    try:
        spec = RunSpec.model_validate_json(spec_path.read_text())
    except ValueError as exc:
        raise I1labError(f"{spec_path}: not a valid run spec ({str(exc).splitlines()[0]})") from None
    ckpts = run_checkpoints(spec, workdir, read_only=True)
    try:
        steps = ckpts.steps()
        abstract, _, _ = initial_state(spec, abstract=True)
        found, skipped = ckpts.restore_latest(abstract, quarantine=None)
    finally:
        ckpts.close()
    if found is None:
        reason = f": {'; '.join(skipped)}" if skipped else ""
        raise I1labError(f"{workdir}: no usable checkpoint{reason}")
    data = found.meta.get("data", {})
    return {
        "workdir": str(workdir),
        "step": found.step,
        "total_steps": spec.train.steps,
        "checkpoints": steps,
        "permanent": [s for s in steps if ckpts.is_permanent(s)],
        "corrupt": skipped,
        "data_position": {
            "batches": data.get("batches", found.step),
            "examples": data.get("examples", found.step * spec.train.batch_size),
            "fingerprint": data.get("fingerprint"),
        },
        "precision": found.meta.get("precision", spec.model.precision),
        "digests": state_digests(found.state),
    }


def render(info: dict[str, Any]) -> str:
    pos = info["data_position"]
    rows = [
        ("work directory", info["workdir"]),
        ("step", f"{info['step']} of {info['total_steps']}"),
        (
            "data position",
            f"{pos['batches']} batches, {pos['examples']} examples (stream {pos['fingerprint']})",
        ),
        ("precision", info["precision"]),
        (
            "checkpoints",
            f"{', '.join(map(str, info['checkpoints']))}"
            f" (permanent: {', '.join(map(str, info['permanent'])) or 'none'})",
        ),
    ]
    rows += [("corrupt", c) for c in info["corrupt"]]
    rows += [(f"sha256 {name}", str(info["digests"][name])) for name in ("params", "ema", "opt_state")]
    return "\n".join(f"{label:<17}{value}" for label, value in rows)
