"""`i1lab import-i1 CONFIG --checkpoint CKPT` and `i1lab forward`.

A test writes a checkpoint in the reference's layout: the big_vision `.npz` of
``{"params", "params_ema", "opt", "chrono"}`` with random weights, the optimizer state built by optax
as the reference's optimizer chain (clip, Adam with a bf16 first moment, lr, schedule, frozen
pos_embed, -1) after a few updates, flattened with big_vision's naming. It converts, loads, and
round-trips bit for bit; a leftover tensor or a wrong shape is an error that writes nothing; the
forward pass of the imported checkpoint is deterministic and equals the model's own apply.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from i1lab.evaluation.forward import apply_model, forward, load_checkpoint, read_inputs
from i1lab.i1import.convert import ConversionError, convert_checkpoint, export_npz, values_equal
from i1lab.i1import.knobs import import_config
from i1lab.i1import.layout import jax_layout
from i1lab.spec.model import model_config
from models.dit import DiT
from tests.models.test_import_i1_config import knobs, write_reference_config

STEPS = 3  # optimizer updates before the checkpoint is written


def tiny(name: str) -> dict[str, Any]:
    """A CPU-sized variant of a shipped config: tiny width, 16 px pixel space, the hash text encoder."""
    k = knobs(name)
    return {
        **k,
        "model_size": "tiny",
        "image_size": 16,
        "vae_type": "identity",
        "text_encoder_type": "hash",
        "total_steps": 10,
        "batch_size": 4,
    }


def reference_names_i1_tiny() -> set[str]:
    """The reference Flax parameter names of the tiny i1 model (dual stream, depth 3 with long skips,
    2-block transformer adapter, AdaLN off, sandwich norms, shared norms), written out by hand from
    `jax/models/components.py` and `dual_stream_backbone.py`."""
    dense = ("kernel", "bias")
    names = {"x_embedder/proj/kernel", "x_embedder/proj/bias", "pos_embed"}
    names |= {f"t_embedder/{layer}/{p}" for layer in ("linear1", "linear2") for p in dense}
    adapter = "text_encoder_adapter"
    names |= {f"{adapter}/learnable_null_caption"} | {f"{adapter}/connector_in/{p}" for p in dense}
    for attn, mlp, norms in (
        ("connector_attn", "connector_mlp", (1, 2)),
        ("connector_attn2", "connector_mlp2", (3, 4)),
    ):
        names |= {f"{adapter}/connector_norm{n}/scale" for n in norms}
        names |= {f"{adapter}/{attn}/{layer}/{p}" for layer in ("qkv", "proj") for p in dense}
        names |= {f"{adapter}/{attn}/{n}/scale" for n in ("q_norm", "k_norm")}
        names |= {f"{adapter}/{mlp}/{layer}/{p}" for layer in ("w12", "w3") for p in dense}
    for i in range(3):
        block = f"blocks_{i}"
        names |= {f"{block}/norm{n}/scale" for n in (1, 2, 3, 4)}
        names |= {
            f"{block}/attn/{layer}_{s}/{p}"
            for layer in ("qkv", "proj")
            for s in ("image", "text")
            for p in dense
        }
        names |= {f"{block}/attn/{n}/scale" for n in ("q_norm", "k_norm")}
        names |= {
            f"{block}/mlp_{s}/{layer}/{p}"
            for s in ("image", "text")
            for layer in ("w12", "w3")
            for p in dense
        }
    names |= {f"blocks_2/skip_linear_{s}/{p}" for s in ("image", "text") for p in dense}
    names |= {"final_layer/norm_final/scale"} | {f"final_layer/linear/{p}" for p in dense}
    return names


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def big_vision_names(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """big_vision's checkpoint naming: dict keys sorted, sequences (NamedTuples too) by index, '/'-joined;
    None and empty containers hold nothing."""
    if tree is None:
        return []
    if isinstance(tree, dict):
        return [pair for key in sorted(tree) for pair in big_vision_names(tree[key], f"{prefix}{key}/")]
    if isinstance(tree, list | tuple):
        return [pair for i, v in enumerate(tree) for pair in big_vision_names(v, f"{prefix}{i}/")]
    return [(prefix.rstrip("/"), tree)]


def write_reference_checkpoint(path: Path, config: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """A reference-layout .npz with random weights; returns what was written (as loaded back)."""
    rng = np.random.default_rng(seed)
    layout = jax_layout(config)
    params = nest({e.reference: rng.normal(0, 0.05, e.shape).astype(np.float32) for e in layout})
    ema = nest({e.reference: rng.normal(0, 0.05, e.shape).astype(np.float32) for e in layout})
    frozen = nest({e.reference: e.reference == "pos_embed" for e in layout})
    trainable = jax.tree_util.tree_map(lambda f: not f, frozen)
    # the reference's optimizer chain for the shipped configs (jax/training/optim.py)
    tx = optax.chain(
        optax.masked(optax.clip_by_global_norm(1.0), trainable),
        optax.masked(optax.scale_by_adam(b1=0.9, b2=0.95, mu_dtype=jnp.bfloat16), trainable),
        optax.scale(1e-4),
        optax.masked(optax.scale_by_schedule(optax.constant_schedule(1.0)), trainable),
        optax.masked(optax.set_to_zero(), frozen),
        optax.scale(-1.0),
    )
    opt = tx.init(params)
    for _ in range(STEPS):
        grads = jax.tree_util.tree_map(lambda p: rng.normal(0, 1, p.shape).astype(np.float32), params)
        _, opt = tx.update(grads, opt, params)
    chrono = {
        "accum_examples_seen": 12,
        "accum_program_time": 1.5,
        "accum_train_time": 1.25,
        "accum_pause_time": 0.0,
    }
    tree = {"params": params, "params_ema": ema, "opt": opt, "chrono": chrono}
    arrays = {name: np.asarray(value) for name, value in big_vision_names(tree)}
    with path.open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def i1_tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, dict[str, np.ndarray], Path]:
    """(imported config, reference npz, its arrays, converted run folder) of the tiny i1 model."""
    root = tmp_path_factory.mktemp("i1")
    imported = import_config(write_reference_config(root / "i1_tiny.py", tiny("256_resolution")))
    npz = root / f"checkpoint.npz-{STEPS:09d}"
    written = write_reference_checkpoint(npz, model_config(imported.spec))
    out = root / "run"
    report = convert_checkpoint(imported.spec, npz, out, study_yaml=imported.study_yaml())
    assert report.step == STEPS
    return imported, npz, written, out


def test_reference_names_are_the_hand_written_ones(i1_tiny: Any) -> None:
    imported, _, written, _ = i1_tiny
    names = {e.reference for e in jax_layout(model_config(imported.spec))}
    assert names == reference_names_i1_tiny()
    assert {k.removeprefix("params/") for k in written if k.startswith("params/")} == names
    # the optimizer state optax builds for the reference chain is where the converter reads it
    assert int(written["opt/1/0/0"]) == int(written["opt/3/0/0"]) == STEPS
    assert written["opt/1/0/1/blocks_0/attn/qkv_image/kernel"].dtype.str == "|V2"  # bfloat16 as void
    assert "opt/1/0/1/pos_embed" not in written and "opt/1/0/2/pos_embed" not in written


def test_reference_npz_converts_loads_and_round_trips_exactly(i1_tiny: Any) -> None:
    imported, _, written, out = i1_tiny
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "import.json", "spec.json", "study.yaml"]
    loaded = load_checkpoint(out)
    assert loaded.step == STEPS and loaded.spec == imported.spec
    back = export_npz(loaded.state, loaded.meta, model_config(loaded.spec))
    assert sorted(back) == sorted(written)
    unequal = [k for k in written if not values_equal(written[k], back[k])]
    assert unequal == []
    assert loaded.meta["imported"]["counters"]["accum_examples_seen"]["value"] == 12
    # the same checkpoint folder is also addressable directly
    assert load_checkpoint(out / "checkpoints" / str(STEPS)).step == STEPS


def test_the_cli_reports_every_tensor(i1_tiny: Any, tmp_path: Path) -> None:
    imported, npz, _, _ = i1_tiny
    out = tmp_path / "cli-run"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "i1lab",
            "import-i1",
            str(imported.config.path),
            "--checkpoint",
            str(npz),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        check=False,
    )
    assert res.returncode == 0, res.stderr
    n = len(jax_layout(model_config(imported.spec)))
    assert f"params        {n} tensors mapped, 0 left over, 0 missing, every shape equal" in res.stdout
    assert f"opt mu        {n - 1} tensors mapped" in res.stdout  # all but the frozen pos_embed
    assert (out / "spec.json").is_file()


@pytest.mark.parametrize("damage", ["leftover", "shape", "missing"])
def test_a_checkpoint_that_does_not_match_is_an_error_and_writes_nothing(
    i1_tiny: Any, tmp_path: Path, damage: str
) -> None:
    imported, _, written, _ = i1_tiny
    arrays = dict(written)
    if damage == "leftover":
        arrays["params/blocks_9/attn/qkv_image/kernel"] = np.zeros((2, 2), np.float32)
        expected = "1 left over: params/blocks_9/attn/qkv_image/kernel"
    elif damage == "shape":
        arrays["params_ema/final_layer/linear/bias"] = np.zeros((5,), np.float32)
        expected = "1 shape mismatch: params_ema/final_layer/linear/bias (5,) != (12,)"
    else:
        del arrays["opt/1/0/2/blocks_1/norm3/scale"]
        expected = "1 missing: opt/1/0/2/blocks_1/norm3/scale"
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)  # type: ignore[arg-type]
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match="does not match the model") as info:
        convert_checkpoint(imported.spec, bad, out)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


def test_forward_is_deterministic_and_equals_the_models_apply(i1_tiny: Any, tmp_path: Path) -> None:
    imported, _, written, out = i1_tiny
    config = model_config(imported.spec)
    rng = np.random.default_rng(1)
    b, n = 2, config.text_len
    mask = np.arange(n)[None, :] < np.array([[n], [5]])
    inputs = tmp_path / "in.npz"
    np.savez(
        inputs,
        x=rng.normal(size=(b, config.in_channels, config.latent_size, config.latent_size)).astype(np.float32),
        t=np.array([0.25, 0.75], np.float32),
        text=rng.normal(size=(b, n, config.text_dim)).astype(np.float32),
        mask=mask,
    )
    first, second, raw = tmp_path / "v1.npz", tmp_path / "v2.npz", tmp_path / "raw.npz"
    assert forward(out, inputs, first) == (
        STEPS,
        (b, config.in_channels, config.latent_size, config.latent_size),
    )
    forward(out, inputs, second)
    forward(out, inputs, raw, weights="params")
    with np.load(first) as a, np.load(second) as c, np.load(raw) as r:
        v1, v2, vr = a["v"], c["v"], r["v"]
        assert int(a["step"]) == STEPS
    assert v1.tobytes() == v2.tobytes()  # bitwise deterministic
    assert not np.allclose(v1, vr)  # EMA and raw weights differ
    # the model's own apply, with the EMA weights taken straight from the reference file
    ema = nest({e.ours: jnp.asarray(written[f"params_ema/{e.reference}"]) for e in jax_layout(config)})
    arrays = read_inputs(inputs, config)
    expected = DiT(config).apply({"params": ema}, arrays.x, arrays.t, arrays.text, arrays.mask)
    np.testing.assert_array_equal(v1, np.asarray(expected))
    np.testing.assert_array_equal(apply_model(imported.spec, ema, arrays), v1)


def test_forward_cli_and_bad_inputs(i1_tiny: Any, tmp_path: Path) -> None:
    _, _, _, out = i1_tiny
    bad = tmp_path / "bad.npz"
    np.savez(
        bad,
        x=np.zeros((1, 3, 8, 8), np.float32),
        t=np.zeros(1, np.float32),
        text=np.zeros((1, 4, 32), np.float32),
    )
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "i1lab",
            "forward",
            str(out),
            "--inputs",
            str(bad),
            "--out",
            str(tmp_path / "v.npz"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        check=False,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {bad}: x has shape (1, 3, 8, 8), expected (B, 3, 16, 16)"
    assert not (tmp_path / "v.npz").exists()


def test_pytorch_checkpoint_converts_to_the_same_model(i1_tiny: Any, tmp_path: Path) -> None:
    torch_mod = pytest.importorskip("torch")
    from i1lab.i1import.layout import rope_table_values, torch_layout, torch_rope_tables

    imported, _, written, _ = i1_tiny
    config = model_config(imported.spec)
    reference = {e.ours: e.reference for e in jax_layout(config)}
    state: dict[str, Any] = {}
    for e in torch_layout(config):
        a = written[f"params_ema/{reference[e.ours]}"]
        if e.transform == "linear":
            a = a.T
        elif e.transform == "conv":
            a = a.transpose(3, 2, 0, 1)
        state[e.reference] = torch_mod.from_numpy(np.ascontiguousarray(a))
    for name in torch_rope_tables(config):
        axis = int(name.rsplit(".", 1)[1])
        cos, sin = rope_table_values(config, axis)
        state[name] = torch_mod.tensor(cos if ".cos_" in name else sin, dtype=torch_mod.float32)
    pt = tmp_path / "i1_tiny_torch.pt"
    torch_mod.save({"config": {"hidden_size": config.hidden, "depth": config.depth}, "model": state}, pt)
    report = convert_checkpoint(imported.spec, pt, tmp_path / "run")
    assert report.groups["params_ema"][0] == len(jax_layout(config)) and len(report.derived) == 6
    loaded = load_checkpoint(tmp_path / "run")
    for e in jax_layout(config):
        node = loaded.state.ema
        for part in e.ours.split("/"):
            node = node[part]
        np.testing.assert_array_equal(np.asarray(node), written[f"params_ema/{e.reference}"])
    # a .pt whose own config disagrees with the imported one is refused
    torch_mod.save({"config": {"hidden_size": 999}, "model": state}, tmp_path / "other.pt")
    with pytest.raises(ConversionError, match="hidden_size=999"):
        convert_checkpoint(imported.spec, tmp_path / "other.pt", tmp_path / "run2")
