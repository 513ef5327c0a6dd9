"""ModelConfig validation, derived sizes and presets (docs/design-space.md §2, §5, §6)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from models.config import ModelConfig
from models.presets import PRESETS, i1_config, make_config


def test_defaults_are_the_cross_attn_baseline() -> None:
    c = ModelConfig()
    assert (c.backbone, c.hidden, c.depth, c.heads, c.head_dim) == ("cross_attn", 1152, 29, 16, 72)
    assert c.ffn_hidden == 3072  # F = int(2/3·int(H·4)) at H = 1152 (§2)
    assert c.num_patches == 256 and c.patch_dim == 128
    assert c.position_scale == 1.0
    assert ModelConfig(resolution=512, latent_size=64).position_scale == 0.5


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hidden": 100, "heads": 3}, "not divisible by heads"),
        ({"use_pooled_text": False, "use_timestep": False}, "cannot both be False"),
        ({"latent_size": 31}, "latent_size=31 is not divisible"),
        ({"depth": 28}, "odd depth"),
        ({"adapter": "lstm"}, "adapter='lstm'"),
        ({"position_embedding": "alibi"}, "position_embedding"),
        ({"backbone": "unet"}, "backbone"),
        ({"dtype": "float16"}, "dtype"),
        ({"backbone": "dual_stream", "use_timestep": False}, "only for cross_attn"),
        ({"hidden": 1152, "heads": 64}, "head_dim=18 is not divisible by 4"),
        ({"hidden": 30, "heads": 2, "position_embedding": "rope_only"}, "even head_dim, got 15"),
        ({"mlp_ratio": 0.0}, "mlp_ratio"),
    ],
)
def test_impossible_combinations_raise(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig(**changes)  # type: ignore[arg-type]


def test_rope_constraint_only_applies_with_rope() -> None:
    # head_dim 18 is fine without RoPE but not with it
    ModelConfig(hidden=1152, heads=64, position_embedding="sinusoidal_only")
    with pytest.raises(ValueError):
        ModelConfig(hidden=1152, heads=64, position_embedding="sinusoidal_and_rope")


def test_even_depth_is_fine_without_long_skips() -> None:
    assert ModelConfig(depth=28, use_long_skip=False).depth == 28


def test_config_is_frozen_hashable_and_round_trips() -> None:
    c = ModelConfig(adapter="transformer", adapter_blocks=2, use_adaln=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.hidden = 8  # type: ignore[misc]
    assert hash(c) == hash(ModelConfig.from_dict(c.to_dict()))
    assert ModelConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**c.to_dict(), "typo": 1})
    assert c.replace(use_adaln=True).use_adaln and not c.use_adaln


def test_paper_presets_have_head_dim_72() -> None:
    widths = [1152, 1296, 1440, 1584, 1728, 1872, 2016]
    names = ["DiT-XL"] + [f"DiT-XL_{w}" for w in widths[1:]]
    for name, width in zip(names, widths, strict=True):
        p = PRESETS[name]
        assert (p.hidden, p.depth, p.mlp_ratio, p.head_dim) == (width, 29, 4.0, 72)
        assert make_config(name).hidden == width


def test_make_config_overrides_and_rejects_unknown_sizes() -> None:
    c = make_config("tiny", in_channels=3, latent_size=16, resolution=16, text_dim=32, text_len=8)
    assert (c.hidden, c.depth, c.heads, c.in_channels) == (PRESETS["tiny"].hidden, 3, 2, 3)
    assert make_config("small", depth=7).depth == 7
    with pytest.raises(ValueError, match="unknown model size"):
        make_config("huge")


def test_i1_recipe_preset() -> None:
    c = i1_config()
    assert (c.backbone, c.hidden, c.depth, c.heads, c.head_dim) == ("dual_stream", 2016, 29, 28, 72)
    assert (c.adapter, c.adapter_blocks, c.use_adaln, c.use_sandwich_norm) == ("transformer", 2, False, True)
    assert c.use_long_skip and not c.use_separate_norms and not c.repeat_text_emb
    assert c.position_embedding == "sinusoidal_and_rope" and c.use_qknorm and c.use_swiglu and c.use_rmsnorm
    assert (c.in_channels, c.latent_size, c.patch_size, c.text_dim, c.text_len) == (32, 32, 2, 2304, 256)
    assert c.rope_dims == (36, 18, 18) and c.rope_lens == (257, 16, 16)
    assert i1_config(1024).latent_size == 128 and i1_config(1024).position_scale == 0.25
    tiny = i1_config(16, size="tiny", in_channels=3, latent_size=16, text_dim=32, text_len=8)
    assert (tiny.hidden, tiny.backbone, tiny.adapter_blocks) == (64, "dual_stream", 2)
    code = "import sys, models.presets as p; p.i1_config(); assert 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
