"""Peak resident memory of `i1lab import-i1 --checkpoint` against the checkpoint's size (issue #24).

Writes synthetic reference-layout ``.npz`` checkpoints (big_vision names, random float32 weights,
params ≠ EMA, ``chrono`` counters, no optimizer state, as the reference's Flax code writes them) of the
dual-stream DiT-XL baseline (`controlled_exp_baselines/dual_stream.py` at 64 px) with ``--depths``
blocks — depth 29 is the baseline itself, 1,239,338,960 parameters, a 9.9 GB file; fewer blocks give
smaller files whose tensors are the same — and converts each in a fresh subprocess, whose peak RSS
(``wait4``'s ``ru_maxrss``) and wall time are printed against the checkpoint's size. The files are
written member by member (no whole checkpoint in memory) and deleted afterwards unless ``--keep``.

Usage: ``python benchmarks/import_memory.py --depths 3 9 29 --workdir /tmp/import-bench``.

``--forward RUN NPZ``: runs ``i1lab forward`` on a converted run and compares its velocity with the
model's own apply on the EMA weights read straight from the reference file (bitwise, as
`tests/models/test_import_i1_checkpoint.py` does for the tiny model).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def baseline_config(workdir: Path) -> Path:
    """The dual-stream baseline's reference config at 64 px, written in the reference's style."""
    from tests.models.test_import_i1_config import knobs, write_reference_config

    return write_reference_config(workdir / "dual_stream_64.py", {**knobs("dual_stream"), "image_size": 64})


def spec_for(config_py: Path, depth: int) -> Any:
    from i1lab.i1import.knobs import import_config

    spec = import_config(config_py).spec
    return spec.model_copy(update={"model": spec.model.model_copy(update={"depth": depth})})


def write_checkpoint(path: Path, spec: Any, seed: int = 0) -> tuple[int, int, int]:
    """A reference-layout .npz of ``spec``'s model: (bytes, parameters, largest tensor's bytes)."""
    from i1lab.i1import.layout import jax_layout
    from i1lab.i1import.write import write_npz
    from i1lab.spec.model import model_config

    layout = jax_layout(model_config(spec))
    rng = {g: np.random.default_rng([seed, i]) for i, g in enumerate(("params", "params_ema"))}

    def members() -> Any:
        for group in ("params", "params_ema"):
            for e in layout:
                a = rng[group].standard_normal(e.shape, dtype=np.float32)
                a *= 0.05
                yield f"{group}/{e.reference}", a
        for name, value in (("accum_examples_seen", 12), ("accum_train_time", 1.25)):
            yield f"chrono/{name}", np.asarray(value)

    write_npz(path, members())
    params = sum(int(np.prod(e.shape)) for e in layout)
    largest = max(int(np.prod(e.shape)) for e in layout) * 4
    return path.stat().st_size, params, largest


def child(spec_json: str, checkpoint: str, out: str, buffer_mib: int) -> None:
    """The conversion itself (run in a subprocess so that its peak RSS is its own)."""
    from i1lab.i1import.convert import convert_checkpoint
    from i1lab.i1import.write import TerminalProgress
    from i1lab.spec.run import RunSpec

    spec = RunSpec.model_validate_json(Path(spec_json).read_text())
    report = convert_checkpoint(
        spec,
        Path(checkpoint),
        Path(out),
        buffer_bytes=buffer_mib << 20,
        progress=lambda n, b: TerminalProgress("converting", n, b, every=30.0),
    )
    print(report.text().splitlines()[0], file=sys.stderr)


def measure(spec_json: Path, checkpoint: Path, out: Path, buffer_mib: int) -> tuple[float, float, int]:
    """(peak RSS in bytes, seconds, exit status) of one conversion subprocess."""
    cmd = [sys.executable, __file__, "--child", str(spec_json), str(checkpoint), str(out)]
    cmd += ["--buffer-mib", str(buffer_mib)]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss * 1024, time.monotonic() - start, proc.returncode


def forward_check(run: Path, npz: Path) -> None:
    import jax.numpy as jnp

    from i1lab.evaluation.forward import read_inputs
    from i1lab.i1import.layout import jax_layout
    from i1lab.i1import.sources import NpzArchive
    from i1lab.spec.model import model_config
    from i1lab.spec.run import RunSpec
    from models.dit import DiT
    from models.hf_weights import unflatten

    spec = RunSpec.model_validate_json((run / "spec.json").read_text())
    config = model_config(spec)
    rng = np.random.default_rng(1)
    b, n = 2, config.text_len
    inputs = run.parent / f"{run.name}-inputs.npz"
    np.savez(
        inputs,
        x=rng.normal(size=(b, config.in_channels, config.latent_size, config.latent_size)).astype(np.float32),
        t=np.array([0.25, 0.75], np.float32),
        text=rng.normal(size=(b, n, config.text_dim)).astype(np.float32),
        mask=np.arange(n)[None, :] < np.array([[n], [5]]),
    )
    v_out = run.parent / f"{run.name}-v.npz"
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "i1lab", "forward", str(run), "--inputs", str(inputs), "--out", str(v_out)],
        check=True,
        cwd=ROOT,
    )
    print(f"i1lab forward: {time.monotonic() - start:.0f} s")
    with np.load(v_out) as z:
        v = z["v"]
    with NpzArchive(npz) as archive:
        ema = unflatten(
            {e.ours: jnp.asarray(archive.read(f"params_ema/{e.reference}")) for e in jax_layout(config)}
        )
    arrays = read_inputs(inputs, config)
    expected = np.asarray(DiT(config).apply({"params": ema}, arrays.x, arrays.t, arrays.text, arrays.mask))
    diff = float(np.max(np.abs(v - expected)))
    print(
        json.dumps(
            {
                "velocity_shape": list(v.shape),
                "bitwise_equal": bool(v.tobytes() == expected.tobytes()),
                "max_abs_diff": diff,
                "max_abs_v": float(np.max(np.abs(expected))),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depths", type=int, nargs="+", default=[3, 9, 29])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/i1lab-import-memory"))
    ap.add_argument("--keep", action="store_true", help="keep the checkpoints and run folders")
    ap.add_argument("--buffer-mib", type=int, default=256, help="the conversion's buffer (import-i1's)")
    ap.add_argument("--child", nargs=3, metavar=("SPEC", "NPZ", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--forward", nargs=2, type=Path, metavar=("RUN", "NPZ"))
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.buffer_mib)
        return
    if args.forward:
        forward_check(*args.forward)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    config_py = baseline_config(args.workdir)
    rows = []
    for depth in args.depths:
        spec = spec_for(config_py, depth)
        spec_json = args.workdir / f"spec-d{depth}.json"
        spec_json.write_text(spec.model_dump_json())
        npz = args.workdir / f"dual_stream_d{depth}.npz"
        out = args.workdir / f"run-d{depth}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.monotonic()
        size, params, largest = write_checkpoint(npz, spec)
        print(
            f"depth {depth}: wrote {npz} ({size / 1e9:.2f} GB) in {time.monotonic() - start:.0f} s",
            flush=True,
        )
        rss, seconds, code = measure(spec_json, npz, out, args.buffer_mib)
        row = {
            "depth": depth,
            "buffer_mib": args.buffer_mib,
            "parameters": params,
            "checkpoint_gb": round(size / 1e9, 2),
            "largest_tensor_mb": round(largest / 1e6, 1),
            "peak_rss_gb": round(rss / 1e9, 2),
            "seconds": round(seconds, 1),
            "mb_per_s": round(size / 1e6 / seconds, 0),
            "exit": code,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep:
            npz.unlink()
            shutil.rmtree(out, ignore_errors=True)
    print()
    print("| depth | parameters | checkpoint | largest tensor | peak RSS | time |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['depth']} | {r['parameters']:,} | {r['checkpoint_gb']} GB | {r['largest_tensor_mb']} MB "
            f"| {r['peak_rss_gb']} GB | {r['seconds']} s |"
        )


if __name__ == "__main__":
    main()
