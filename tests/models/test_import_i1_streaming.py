"""`i1lab import-i1 --checkpoint` streams (issue #24): tensors are read one batch at a time from the
`.npz` (memory-mapped members, or decompressed one by one) or the `.pt` (mmap, weights_only) and written
to the Orbax checkpoint as they come, after names and shapes are checked from the headers and the free
disk space is checked; a conversion killed half-way publishes nothing and the next one succeeds. The
export back to the reference layout streams too.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from i1lab.errors import I1labError
from i1lab.evaluation.forward import load_checkpoint
from i1lab.i1import import convert as convert_mod
from i1lab.i1import import sources
from i1lab.i1import.convert import (
    ConversionError,
    convert_checkpoint,
    export_npz,
    export_run,
    values_equal,
)
from i1lab.i1import.knobs import import_config
from i1lab.i1import.layout import jax_layout
from i1lab.i1import.write import TerminalProgress, write_npz
from i1lab.spec.model import model_config
from tests.models.test_import_i1_checkpoint import STEPS, tiny
from tests.models.test_import_i1_config import write_reference_config


def reference_arrays(config: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """A reference-layout checkpoint's arrays drawn directly (the optimizer's update rule does not matter
    here; `write_reference_checkpoint` runs the reference's optax chain): params ≠ EMA, a bfloat16 first
    moment stored as 2-byte void, no moments for the frozen pos_embed, the two step counters."""
    import ml_dtypes

    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for e in jax_layout(config):
        arrays[f"params/{e.reference}"] = rng.normal(0, 0.05, e.shape).astype(np.float32)
        arrays[f"params_ema/{e.reference}"] = rng.normal(0, 0.05, e.shape).astype(np.float32)
        if e.reference != "pos_embed":
            mu = rng.normal(0, 0.01, e.shape).astype(ml_dtypes.bfloat16)
            arrays[f"opt/1/0/1/{e.reference}"] = mu.view(np.dtype("V2"))
            arrays[f"opt/1/0/2/{e.reference}"] = rng.random(e.shape, dtype=np.float32) * 1e-4
    arrays["opt/1/0/0"] = arrays["opt/3/0/0"] = np.asarray(STEPS, np.int32)
    arrays["chrono/accum_examples_seen"] = np.asarray(12)
    arrays["chrono/accum_train_time"] = np.asarray(1.25)
    return arrays


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("stream")
    imported = import_config(write_reference_config(root / "i1_tiny.py", tiny("256_resolution")))
    npz = root / f"checkpoint.npz-{STEPS:09d}"
    with npz.open("wb") as f:  # (a path without .npz would get the suffix)
        np.savez(f, **reference_arrays(model_config(imported.spec)))  # type: ignore[arg-type]
    with np.load(npz) as z:
        written = {k: z[k] for k in z.files}
    return imported, npz, written


def _round_trip(out: Path, written: dict[str, np.ndarray]) -> dict[str, Any]:
    loaded = load_checkpoint(out)  # restores and checks the digests computed while streaming
    back = export_npz(loaded.state, loaded.meta, model_config(loaded.spec))
    assert sorted(back) == sorted(written)
    assert [k for k in written if not values_equal(written[k], back[k])] == []
    return loaded.meta


def _meta(run: Path) -> dict[str, Any]:
    (step,) = (run / "checkpoints").iterdir()
    return dict(json.loads((step / "meta" / "metadata").read_text()))


def test_streaming_gives_the_reference_tensors_whatever_the_buffer_and_storage(
    tiny_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported, npz, written = tiny_ckpt
    calls: list[tuple[int, int]] = []
    totals: list[tuple[int, int]] = []

    def progress(tensors: int, nbytes: int) -> Any:
        totals.append((tensors, nbytes))
        return lambda n, b: calls.append((n, b))

    # one tensor at a time, every member memory-mapped
    monkeypatch.setattr(sources, "MMAP_MIN_BYTES", 0)
    one = convert_checkpoint(imported.spec, npz, tmp_path / "one", buffer_bytes=0, progress=progress)
    monkeypatch.undo()
    digests = _round_trip(tmp_path / "one", written)["digests"]
    (n_tensors, n_bytes) = totals[0]
    assert len(calls) == n_tensors and calls[-1] == (n_tensors, n_bytes)  # a batch per tensor
    # the default buffer (all at once here), from a compressed archive (members decompressed one by one):
    # the same arrays (the digests of what was streamed; the restore above checked them against the disk)
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, **written)  # type: ignore[arg-type]
    convert_checkpoint(imported.spec, compressed, tmp_path / "all")
    assert _meta(tmp_path / "all")["digests"] == digests
    assert one.groups["params"][0] == len([k for k in written if k.startswith("params/")])
    # and back: the reference layout written member by member, an array restored at a time
    back = tmp_path / "back.npz"
    assert export_run(tmp_path / "one", back, buffer_bytes=300_000) == len(written)  # a few batches
    with np.load(back) as z:
        assert sorted(z.files) == sorted(written)
        assert [k for k in written if not values_equal(written[k], z[k])] == []
    with pytest.raises(I1labError, match="already exists"):
        export_run(tmp_path / "one", back)


def test_a_shape_that_disagrees_is_named_before_any_tensor_is_read(
    tiny_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported, _, written = tiny_ckpt
    arrays = dict(written)
    arrays["params/blocks_1/attn/qkv_image/kernel"] = np.zeros((64, 7), np.float32)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)  # type: ignore[arg-type]
    read: list[str] = []
    original = sources.NpzArchive.read

    def spy(self: sources.NpzArchive, key: str) -> np.ndarray:
        read.append(key)
        return original(self, key)

    monkeypatch.setattr(sources.NpzArchive, "read", spy)
    with pytest.raises(ConversionError) as info:
        convert_checkpoint(imported.spec, bad, tmp_path / "out")
    message = str(info.value)
    assert "\n" not in message
    assert "1 shape mismatch: params/blocks_1/attn/qkv_image/kernel (64, 7) != (64, 192)" in message
    assert all(k.startswith(("opt/1/0/0", "opt/3/0/0", "chrono/")) for k in read)  # scalars only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


def test_too_little_disk_is_one_line_saying_what_is_needed(
    tiny_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported, npz, written = tiny_ckpt
    monkeypatch.setattr(convert_mod, "free_bytes", lambda path: 1_000_000)
    with pytest.raises(I1labError) as info:
        convert_checkpoint(imported.spec, npz, tmp_path / "out")
    need = sum(a.nbytes for k, a in written.items() if k.split("/")[0] in ("params", "params_ema", "opt"))
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: not enough free disk space: converting {npz.name} writes about ")
    assert message.endswith(", 1 MB free") and "\n" not in message
    assert int(message.split("writes about ")[1].split(" MB")[0]) >= need // 1_000_000
    assert list(tmp_path.iterdir()) == []


def _import_cli(config: Path, npz: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "i1lab",
            "import-i1",
            str(config),
            "--checkpoint",
            str(npz),
            "--out",
            str(out),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )


def test_a_conversion_killed_half_way_publishes_nothing_and_a_rerun_succeeds(
    tiny_ckpt: Any, tmp_path: Path
) -> None:
    imported, npz, _ = tiny_ckpt
    out = tmp_path / "run"
    proc = _import_cli(imported.config.path, npz, out, "--buffer-mib", "0")  # one tensor at a time
    deadline = time.monotonic() + 120
    written_files: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        written_files = [p for p in tmp_path.glob(".run.tmp-*/checkpoints/**/d/*") if p.is_file()]
        if len(written_files) >= 20:  # some tensors on disk, far from all
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the conversion ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert written_files and not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [f".run.tmp-{proc.pid}"]  # only the hidden leftover
    again = _import_cli(imported.config.path, npz, out)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert f"wrote {out}" in stdout and "converting: " in stderr  # progress on the terminal
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the killed one's folder is gone
    assert _meta(out)["step"] == STEPS and len(_meta(out)["digests"]) == 3


def test_a_pt_with_pickled_code_is_refused_in_one_line(tiny_ckpt: Any, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    imported, _, _ = tiny_ckpt
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": {"x": torch.zeros(2)}, "extra": Payload()}, evil)
    with pytest.raises(ConversionError) as info:
        convert_checkpoint(imported.spec, evil, tmp_path / "out")
    assert str(info.value).startswith(f"{evil}: cannot read the checkpoint safely (")
    assert "\n" not in str(info.value)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_progress_lines_and_streamed_npz_members() -> None:
    stream = io.StringIO()
    progress = TerminalProgress("converting", 4, 2_000_000_000, stream=stream, every=3600)
    progress(1, 500_000_000)  # not a TTY: nothing before `every` seconds ...
    progress(4, 2_000_000_000)  # ... and a line at the end
    line = stream.getvalue()
    assert line.startswith("converting: 4/4 tensors, 2.00/2.00 GB, ") and line.count("\n") == 1
    buf = io.BytesIO()
    import ml_dtypes

    bf = np.arange(6, dtype=np.float32).astype(ml_dtypes.bfloat16).reshape(2, 3)
    assert write_npz(buf, [("a/b", np.ones((2, 2), np.float32)), ("c", bf)]) == 2  # type: ignore[arg-type]
    buf.seek(0)
    with np.load(buf) as z:
        assert z["a/b"].tolist() == [[1, 1], [1, 1]] and z["c"].dtype.str == "|V2"
        assert values_equal(z["c"], bf)
