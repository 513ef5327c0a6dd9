"""The parameter layouts of the i1 reference models and how they map onto `models.DiT` (pure Python).

**JAX (Flax) reference** (`jax/models/{components,cross_attn_backbone,single_stream_backbone,
dual_stream_backbone}.py`). Names are the Flax module paths joined by ``/``. The tensors themselves have
the same layout as ours (Flax `Dense` kernels ``(in, out)``, `Conv` kernels ``(kh, kw, in, out)``,
the fused qkv ordered q heads | k heads | v heads, the fused SwiGLU ``w12`` as a | b); only names differ:

Reference name -> our name:

- ``x_embedder/proj/{kernel,bias}`` -> ``x_embedder/{kernel,bias}``;
- ``…/adaLN_modulation/linear/…`` (blocks, refiners, final layer) -> ``…/adaLN_modulation/…``;
- MLP adapter: ``text_encoder_adapter/mlp_dense_0``, ``mlp_dense_1`` -> ``text_encoder_adapter/fc1``,
  ``fc2``;
- transformer adapter: ``text_encoder_adapter/connector_norm{2b+1}``, ``connector_norm{2b+2}``,
  ``connector_attn{'' or b+1}``, ``connector_mlp{'' or b+1}`` -> ``text_encoder_adapter/blocks_{b}/``
  ``norm1``, ``norm2``, ``attn``, ``mlp``;
- with several text encoders the reference has one adapter module whose children (and null captions)
  are suffixed ``_{i}``; ours has one module ``text_encoder_adapter_{i}`` per encoder;
- ``image_connector/connector_norm1``, ``connector_norm2``, ``connector_attn``, ``connector_mlp`` ->
  ``image_connector/norm1``, ``norm2``, ``attn``, ``mlp``;
- everything else (``pos_embed``, ``t_embedder/linear1``, ``blocks_{i}/…``, ``context_refiner_{i}/…``,
  ``final_layer/norm_final``, …) keeps its name.

**PyTorch reference** (`torch_inference/generate.py`, `torch_train/models/dit.py`; the i1 dual-stream
model without AdaLN only). State-dict names are joined by ``.``; ``nn.Linear`` weights are
``(out, in)`` (transposed here), the ``nn.Conv2d`` patchify weight is ``(out, in, kh, kw)`` (moved to
``(kh, kw, in, out)``), the blocks are ``in_blocks.{j}`` / ``mid_block`` / ``out_blocks.{j}`` (our
``blocks_{j}``, ``blocks_{d//2}``, ``blocks_{d//2+1+j}``), and ``rope_embedder.{cos,sin}_tables.{a}``
are derived RoPE tables that our model computes itself (they are checked against our computation,
not stored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from models.config import ModelConfig, default_rope_axes_dims

Transform = Literal["same", "linear", "conv"]
TIMESTEP_FEATURES = 256


@dataclass(frozen=True)
class Entry:
    """One tensor: its reference name and shape, our name, and how the array is carried over."""

    reference: str
    ours: str
    shape: tuple[int, ...]  # our shape (= the JAX reference's)
    transform: Transform = "same"

    @property
    def reference_shape(self) -> tuple[int, ...]:
        """The shape in the reference file (PyTorch layouts differ for linear and conv weights)."""
        if self.transform == "linear":
            n_in, n_out = self.shape
            return (n_out, n_in)
        if self.transform == "conv":
            kh, kw, c_in, c_out = self.shape
            return (c_out, c_in, kh, kw)
        return self.shape


class _Layout:
    """Collects entries; `jax` selects the Flax naming, else the PyTorch one."""

    def __init__(self, c: ModelConfig, flavour: Literal["jax", "torch"]) -> None:
        self.c = c
        self.torch = flavour == "torch"
        self.sep = "." if self.torch else "/"
        self.entries: list[Entry] = []

    def join(self, *parts: str) -> str:
        return self.sep.join(p for p in parts if p)

    def add(self, ref: str, ours: str, shape: tuple[int, ...], transform: Transform = "same") -> None:
        self.entries.append(Entry(ref, ours, shape, transform))

    # ------------------------------------------------------------------ components
    def dense(self, ref: str, ours: str, n_in: int, n_out: int) -> None:
        if self.torch:
            self.add(f"{ref}.weight", f"{ours}/kernel", (n_in, n_out), "linear")
            self.add(f"{ref}.bias", f"{ours}/bias", (n_out,))
        else:
            self.add(f"{ref}/kernel", f"{ours}/kernel", (n_in, n_out))
            self.add(f"{ref}/bias", f"{ours}/bias", (n_out,))

    def norm(self, ref: str, ours: str, dim: int) -> None:
        self.add(self.join(ref, "scale"), f"{ours}/scale", (dim,))
        if not self.c.use_rmsnorm:
            self.add(self.join(ref, "bias"), f"{ours}/bias", (dim,))

    def ffn(self, ref: str, ours: str) -> None:
        h = self.c.hidden
        mlp_hidden = int(h * self.c.mlp_ratio)
        if self.c.use_swiglu:
            f = int(2 / 3 * mlp_hidden)
            self.dense(self.join(ref, "w12"), f"{ours}/w12", h, 2 * f)
            self.dense(self.join(ref, "w3"), f"{ours}/w3", f, h)
        else:
            self.dense(self.join(ref, "fc1"), f"{ours}/fc1", h, mlp_hidden)
            self.dense(self.join(ref, "fc2"), f"{ours}/fc2", mlp_hidden, h)

    def qk_norms(self, ref: str, ours: str, suffix: str = "") -> None:
        if self.c.use_qknorm:
            head_dim = self.c.hidden // self.c.heads
            self.norm(self.join(ref, f"q_norm{suffix}"), f"{ours}/q_norm{suffix}", head_dim)
            self.norm(self.join(ref, f"k_norm{suffix}"), f"{ours}/k_norm{suffix}", head_dim)

    def attention(self, ref: str, ours: str) -> None:
        h = self.c.hidden
        self.dense(self.join(ref, "qkv"), f"{ours}/qkv", h, 3 * h)
        self.qk_norms(ref, ours)
        self.dense(self.join(ref, "proj"), f"{ours}/proj", h, h)

    def prenorm_block(self, ref: str, ours: str, names: tuple[str, str, str, str]) -> None:
        """A plain pre-norm block whose reference children are ``names`` (norm1, norm2, attn, mlp)."""
        n1, n2, attn, mlp = names
        h = self.c.hidden
        self.norm(self.join(ref, n1), f"{ours}/norm1", h)
        self.norm(self.join(ref, n2), f"{ours}/norm2", h)
        self.attention(self.join(ref, attn), f"{ours}/attn")
        self.ffn(self.join(ref, mlp), f"{ours}/mlp")

    def adaln(self, ref: str, ours: str, chunks: int) -> None:
        self.dense(
            self.join(ref, "adaLN_modulation", "linear"),
            f"{ours}/adaLN_modulation",
            self.c.hidden,
            chunks * self.c.hidden,
        )

    # ------------------------------------------------------------------ the model
    def build(self) -> list[Entry]:
        c = self.c
        h, p = c.hidden, c.patch_size
        if self.torch:
            self.add("x_embedder.proj.weight", "x_embedder/kernel", (p, p, c.in_channels, h), "conv")
            self.add("x_embedder.proj.bias", "x_embedder/bias", (h,))
        else:
            self.add("x_embedder/proj/kernel", "x_embedder/kernel", (p, p, c.in_channels, h))
            self.add("x_embedder/proj/bias", "x_embedder/bias", (h,))
        if c.use_image_connector:
            self.prenorm_block(
                "image_connector",
                "image_connector",
                ("connector_norm1", "connector_norm2", "connector_attn", "connector_mlp"),
            )
        if c.position_embedding in ("sinusoidal_and_rope", "sinusoidal_only"):
            grid = (c.latent_size // p) ** 2
            self.add("pos_embed", "pos_embed", (1, grid, h))
        if c.backbone != "cross_attn" or c.use_timestep:
            self.dense(self.join("t_embedder", "linear1"), "t_embedder/linear1", TIMESTEP_FEATURES, h)
            self.dense(self.join("t_embedder", "linear2"), "t_embedder/linear2", h, h)
        self.adapters()
        if c.backbone == "cross_attn":
            self.cross_attn_blocks()
        elif c.backbone == "single_stream":
            self.single_stream_blocks()
        else:
            self.dual_stream_blocks()
        self.norm(self.join("final_layer", "norm_final"), "final_layer/norm_final", h)
        if c.use_adaln:
            self.adaln("final_layer", "final_layer", 2)
        self.dense(self.join("final_layer", "linear"), "final_layer/linear", h, p * p * c.in_channels)
        return self.entries

    def adapters(self) -> None:
        c = self.c
        specs = c.encoder_specs
        for i, (dim, length) in enumerate(specs):
            several = len(specs) > 1
            sfx = f"_{i}" if several else ""
            ref = "text_encoder_adapter"
            ours = f"text_encoder_adapter_{i}" if several else "text_encoder_adapter"
            self.add(
                self.join(ref, f"learnable_null_caption{sfx}"),
                f"{ours}/learnable_null_caption",
                (1, length, dim),
            )
            if c.adapter == "mlp":
                self.dense(self.join(ref, f"mlp_dense_0{sfx}"), f"{ours}/fc1", dim, c.hidden)
                self.dense(self.join(ref, f"mlp_dense_1{sfx}"), f"{ours}/fc2", c.hidden, c.hidden)
                continue
            self.dense(self.join(ref, f"connector_in{sfx}"), f"{ours}/connector_in", dim, c.hidden)
            for b in range(c.adapter_blocks):
                bs = "" if b == 0 else str(b + 1)
                names = (
                    f"connector_norm{2 * b + 1}{sfx}",
                    f"connector_norm{2 * b + 2}{sfx}",
                    f"connector_attn{bs}{sfx}",
                    f"connector_mlp{bs}{sfx}",
                )
                self.prenorm_block(ref, f"{ours}/blocks_{b}", names)

    def block_name(self, i: int) -> str:
        """The reference name of block ``i`` (PyTorch: in_blocks / mid_block / out_blocks)."""
        c = self.c
        if not self.torch:
            return f"blocks_{i}"
        if not c.use_long_skip:
            return f"blocks.{i}"
        half = c.depth // 2
        if i < half:
            return f"in_blocks.{i}"
        return "mid_block" if i == half else f"out_blocks.{i - half - 1}"

    def is_out(self, i: int) -> bool:
        c = self.c
        return c.use_long_skip and i >= c.depth - c.depth // 2

    def cross_attn_blocks(self) -> None:
        c = self.c
        h = c.hidden
        for i in range(c.depth):
            ref, ours = self.block_name(i), f"blocks_{i}"
            if self.is_out(i):
                self.dense(self.join(ref, "skip_linear"), f"{ours}/skip_linear", 2 * h, h)
            self.norm(self.join(ref, "norm1"), f"{ours}/norm1", h)
            self.norm(self.join(ref, "norm2"), f"{ours}/norm2", h)
            if c.use_sandwich_norm:
                self.norm(self.join(ref, "norm3"), f"{ours}/norm3", h)
                self.norm(self.join(ref, "norm4"), f"{ours}/norm4", h)
            self.attention(self.join(ref, "attn"), f"{ours}/attn")
            cross = self.join(ref, "cross_attn")
            for name in ("q", "k", "v"):
                self.dense(self.join(cross, name), f"{ours}/cross_attn/{name}", h, h)
            self.qk_norms(cross, f"{ours}/cross_attn")
            self.dense(self.join(cross, "proj"), f"{ours}/cross_attn/proj", h, h)
            self.ffn(self.join(ref, "mlp"), f"{ours}/mlp")
            if c.use_adaln:
                self.adaln(ref, ours, 4 if c.wo_shift else 6)

    def single_block(self, ref: str, ours: str, modulated: bool, skip: bool) -> None:
        c = self.c
        h = c.hidden
        if skip:
            self.dense(self.join(ref, "skip_linear"), f"{ours}/skip_linear", 2 * h, h)
        self.norm(self.join(ref, "norm1"), f"{ours}/norm1", h)
        self.norm(self.join(ref, "norm2"), f"{ours}/norm2", h)
        if modulated and c.use_sandwich_norm:  # norm3/norm4 are only called in modulated blocks
            self.norm(self.join(ref, "norm3"), f"{ours}/norm3", h)
            self.norm(self.join(ref, "norm4"), f"{ours}/norm4", h)
        self.attention(self.join(ref, "attn"), f"{ours}/attn")
        self.ffn(self.join(ref, "mlp"), f"{ours}/mlp")
        if modulated:
            self.adaln(ref, ours, 4 if c.wo_shift else 6)

    def single_stream_blocks(self) -> None:
        c = self.c
        for i in range(c.refiner_layers):
            self.single_block(f"context_refiner_{i}", f"context_refiner_{i}", False, False)
            self.single_block(f"noise_refiner_{i}", f"noise_refiner_{i}", c.use_adaln, False)
        for i in range(c.depth):
            self.single_block(self.block_name(i), f"blocks_{i}", c.use_adaln, self.is_out(i))

    def dual_stream_blocks(self) -> None:
        c = self.c
        h = c.hidden
        for i in range(c.depth):
            ref, ours = self.block_name(i), f"blocks_{i}"
            if self.is_out(i):
                for s in ("image", "text"):
                    self.dense(self.join(ref, f"skip_linear_{s}"), f"{ours}/skip_linear_{s}", 2 * h, h)
            for n in ("norm1", "norm2"):
                if c.use_separate_norms:
                    for s in ("image", "text"):
                        self.norm(self.join(ref, f"{n}_{s}"), f"{ours}/{n}_{s}", h)
                else:
                    self.norm(self.join(ref, n), f"{ours}/{n}", h)
            if c.use_sandwich_norm:
                self.norm(self.join(ref, "norm3"), f"{ours}/norm3", h)
                self.norm(self.join(ref, "norm4"), f"{ours}/norm4", h)
            attn, attn_ours = self.join(ref, "attn"), f"{ours}/attn"
            for s in ("image", "text"):
                self.dense(self.join(attn, f"qkv_{s}"), f"{attn_ours}/qkv_{s}", h, 3 * h)
                self.dense(self.join(attn, f"proj_{s}"), f"{attn_ours}/proj_{s}", h, h)
            if c.use_separate_norms:
                for s in ("image", "text"):
                    self.qk_norms(attn, attn_ours, f"_{s}")
            else:
                self.qk_norms(attn, attn_ours)
            for s in ("image", "text"):
                self.ffn(self.join(ref, f"mlp_{s}"), f"{ours}/mlp_{s}")
            if c.use_adaln:
                self.adaln(ref, ours, 4 if c.wo_shift else 6)


def jax_layout(config: ModelConfig) -> list[Entry]:
    """Every parameter of the JAX reference model of ``config``: reference name, our name, shape."""
    return _Layout(config, "jax").build()


def torch_layout(config: ModelConfig) -> list[Entry]:
    """Every parameter of the PyTorch reference model (the i1 dual-stream model without AdaLN)."""
    c = config
    if (
        c.backbone != "dual_stream"
        or c.use_adaln
        or c.adapter != "transformer"
        or c.num_encoders != 1
        or c.use_separate_norms
    ):
        raise ValueError(
            "the PyTorch reference model is the i1 dual-stream model (transformer adapter, AdaLN off, shared "
            f"norms, one text encoder); this config has backbone={c.backbone}, adapter={c.adapter}, "
            f"use_adaln={c.use_adaln}, use_separate_norms={c.use_separate_norms}"
        )
    return _Layout(c, "torch").build()


def torch_rope_tables(config: ModelConfig) -> dict[str, tuple[int, int]]:
    """The PyTorch model's derived RoPE tables (``rope_embedder.{cos,sin}_tables.{a}``) and their shapes."""
    c = config
    if c.position_embedding == "sinusoidal_only":
        return {}
    dims = c.rope_axes_dims or default_rope_axes_dims(c.hidden // c.heads)
    grid = c.latent_size // c.patch_size
    lens = c.rope_axes_lens or (c.text_len + 1, grid, grid)
    out = {}
    for a, (dim, length) in enumerate(zip(dims, lens, strict=True)):
        out[f"rope_embedder.cos_tables.{a}"] = (length, dim // 2)
        out[f"rope_embedder.sin_tables.{a}"] = (length, dim // 2)
    return out


def rope_table_values(config: ModelConfig, axis: int) -> tuple[list[list[float]], list[list[float]]]:
    """(cos, sin) of RoPE axis ``axis`` as the 3-axis RoPE defines them (docs/design-space.md §3): positions
    ``0..len-1`` (row and col scaled by 256/res), frequencies ``θ^(-2k/dim)``."""
    c = config
    dims = c.rope_axes_dims or default_rope_axes_dims(c.hidden // c.heads)
    grid = c.latent_size // c.patch_size
    lens = c.rope_axes_lens or (c.text_len + 1, grid, grid)
    dim, length = dims[axis], lens[axis]
    scale = 1.0 if axis == 0 else 256.0 / c.resolution
    freqs = [1.0 / (c.rope_theta ** (2 * k / dim)) for k in range(dim // 2)]
    cos = [[math.cos(pos * scale * f) for f in freqs] for pos in range(length)]
    sin = [[math.sin(pos * scale * f) for f in freqs] for pos in range(length)]
    return cos, sin


def count(entries: list[Entry]) -> int:
    """Number of values in a layout."""
    return sum(math.prod(e.shape) for e in entries)
