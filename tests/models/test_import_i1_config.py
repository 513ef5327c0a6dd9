"""`i1lab import-i1 CONFIG`: reference configs are parsed (never run), every knob is mapped or rejected, the
study they become plans, and the model it describes has the reference modules' parameter tree.

The reference files cannot be committed, so the tests write config files in the reference's
ml_collections style from the knob values of the six shipped configs (three controlled-experiment
baselines, three resolution stages of the final recipe). The full-size models are checked with
`jax.eval_shape` and the closed-form counts only.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import pytest

from i1lab.hashing import content_hash, training_hash
from i1lab.i1import.knobs import KnobError, import_config
from i1lab.i1import.layout import jax_layout
from i1lab.i1import.pyconfig import ConfigReadError, read_config
from i1lab.plan.planner import expand
from i1lab.spec import load_study
from i1lab.spec.model import model_config
from models.param_count import count_params_fast
from models.params import param_shapes

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"

#: The reference's dataset folders and image counts (docs/design-space.md §11), in the baselines' order.
DATASETS = [
    ("yfcc", 98_121_424),
    ("imagenet22k", 13_673_551),
    ("rendered_text", 11_977_824),
    ("fluxreason", 5_890_279),
    ("textatlas", 5_397_762),
    ("pexels", 2_810_634),
    ("gptedit", 1_553_575),
    ("midjourneyv6", 1_240_185),
    ("redcaps", 4_817_431),
    ("places", 8_026_628),
    ("megalith10m", 9_393_971),
    ("inaturalist", 4_813_543),
]


def knobs(name: str) -> dict[str, Any]:
    """The knob values of one of the six shipped configs (docs/design-space.md §9, §13)."""
    base: dict[str, Any] = {
        "seed": 0,
        "total_steps": 500_000,
        "resume": "",
        "image_size": 256,
        "vae_type": "flux2",
        "text_encoder_type": "T5Gemma",
        "text_encoder_precision": "bf16",
        "token_len": None,
        "backbone": "cross_attn",
        "model_size": "DiT-XL",
        "patch_size": 2,
        "model_kwargs": {
            "use_long_skip": True,
            "text_encoder_adapter_type": "mlp",
            "text_encoder_adapter_num_blocks": 1,
            "use_image_connector": False,
            "use_pooled_text": True,
            "use_timestep": True,
            "use_adaln": True,
            "repeat_text_emb": False,
            "position_embedding": "sinusoidal_and_rope",
            "use_sandwich_norm": False,
        },
        "use_qknorm": True,
        "use_swiglu": True,
        "use_rmsnorm": True,
        "use_grad_ckpt": False,
        "shard_text_encoder_params": False,
        "transport": {
            "prediction": "velocity",
            "use_lognorm": True,
            "lognorm_mu": 0.0,
            "lognorm_sigma": 1.0,
            "train_timestep_shift": 0.0,
            "cfg_interval_start": 0,
        },
        "tensor_parallel_size": 1,
        "fsdp_axis_size": 1,
        "datasets": DATASETS,  # (folder, count): weights proportional to count
        "batch_size": 512,
    }
    rope = {"rope_axes_dims": None, "rope_axes_lens": None, "rope_theta": 10000.0}
    stream_kwargs = {
        k: v for k, v in base["model_kwargs"].items() if k not in ("use_pooled_text", "use_timestep")
    }
    if name == "cross_attn":
        return base
    if name == "single_stream":
        return {
            **base,
            "backbone": "single_stream",
            "model_kwargs": {"refiner_layers": 2, **rope, **stream_kwargs},
        }
    dual = {
        **base,
        "backbone": "dual_stream",
        "model_kwargs": {**rope, **stream_kwargs, "use_separate_norms": False},
    }
    if name == "dual_stream":
        return dual
    i1 = {
        **dual,
        "model_size": "DiT-XL_2016",
        "model_kwargs": {
            **dual["model_kwargs"],
            "text_encoder_adapter_type": "transformer",
            "text_encoder_adapter_num_blocks": 2,
            "use_adaln": False,
            "use_sandwich_norm": True,
        },
    }
    equal = [(folder, 1) for folder, _ in DATASETS if folder != "inaturalist"]
    if name == "256_resolution":
        return {**i1, "total_steps": 2_000_000, "datasets": equal}
    if name == "512_resolution":
        stage2 = [(f"512_resolution_{f}", 1) for f, _ in equal if f != "yfcc"]
        return {**i1, "total_steps": 2_500_000, "image_size": 512, "datasets": stage2}
    assert name == "1024_resolution"
    stage3 = [
        (f"1024_resolution_{f}", 1) for f in ("fluxreason", "textatlas", "gptedit", "midjourneyv6", "redcaps")
    ]
    return {
        **i1,
        "total_steps": 2_800_000,
        "image_size": 1024,
        "datasets": stage3,
        "batch_size": 128,
        "transport": {**base["transport"], "train_timestep_shift": 0.3},
    }


def write_reference_config(path: Path, k: dict[str, Any], extra: str = "") -> Path:
    """A config file in the reference's ml_collections style (get_config() building a ConfigDict)."""
    top = [key for key in k if key not in ("model_kwargs", "transport", "datasets", "batch_size")]
    body = ["import ml_collections as mlc", "", "", "def get_config():", "    config = mlc.ConfigDict()", ""]
    body += [f"    config.{key} = {k[key]!r}" for key in top]
    body.append("    config.model_kwargs = mlc.ConfigDict(dict(")
    body += [f"        {key}={value!r}," for key, value in k["model_kwargs"].items()]
    body.append("    ))")
    body.append('    """A string statement, as the reference uses for comments."""')
    body.append("    config.transport = mlc.ConfigDict(dict(")
    body += [f"        {key}={value!r}," for key, value in k["transport"].items()]
    body.append("    ))")
    body.append("    path_and_count = [")
    body += [f"        ('gs://bucket/{folder}/tfrecord', {count}), " for folder, count in k["datasets"]]
    body.append("    ]")
    body.append("    sum_count = sum([item[1] for item in path_and_count])")
    body.append(
        "    path_and_count = [(item[0], float(item[1]) / float(sum_count)) for item in path_and_count]"
    )
    body.append("    config.input = {}")
    body.append("    config.input.data = [(dict(split='train', data_dir=d), w) for d, w in path_and_count]")
    body.append(f"    config.input.batch_size = {k['batch_size']}")
    body.append("    config.input.shuffle_buffer_size = 10_000")
    body.append(
        "    config.input.preprocess = ('|decode_png()' '|sample_caption(key=\"caption\")' "
        '\'|value_range(-1, 1)\' \'|copy("caption", "labels")\' \'|keep("image", "labels")\')'
    )
    body += [
        "    config.prefetch_to_device = 4",
        "    config.grad_accum_steps = 1",
        "    config.log_training_steps = 100",
        "    config.ckpt_steps = 5000",
        "    config.keep_ckpt_steps = 50000",
        "    config.save_ckpt = True",
        "    config.ckpt_timeout = 120",
        "    config.grad_clip_norm = 1.0",
        "    config.optax_name = 'scale_by_adam'",
        "    config.optax = dict(mu_dtype='bfloat16', b1=0.9, b2=0.95)",
        "    config.lr = 1e-4",
        "    config.wd = None",
        "    config.schedule = [('pos_embed', None), ('.*', 1.0)]",
        "    config.use_ema = True",
        "    config.ema_decay_rate = 0.9999",
        "    config.wandb = dict(log_wandb=True, project='i1', experiment='x')",
    ]
    if extra:
        body += [f"    {line}" for line in extra.splitlines()]
    body += ["", "    return config", ""]
    path.write_text("\n".join(body))
    return path


CONFIGS = [
    "cross_attn",
    "single_stream",
    "dual_stream",
    "256_resolution",
    "512_resolution",
    "1024_resolution",
]
#: Closed-form parameter counts (every leaf, frozen pos_embed and null caption included).
PARAMS = {
    "cross_attn": 894_068_384,  # docs/design-space.md §6 calibration: 0.8941 B
    "single_stream": 819_683_984,
    "dual_stream": 1_239_338_960,
    "256_resolution": 3_166_272_848,  # "i1-3B"
    "512_resolution": 3_167_821_136,
    "1024_resolution": 3_174_014_288,
}


def flat_shapes(tree: Any, prefix: str = "") -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat_shapes(value, f"{prefix}{key}/"))
        else:
            out[prefix + key] = tuple(value.shape)
    return out


@pytest.mark.parametrize("name", CONFIGS)
def test_config_imports_plans_and_has_the_reference_parameter_tree(name: str, tmp_path: Path) -> None:
    source = write_reference_config(tmp_path / f"{name}.py", knobs(name))
    imported = import_config(source)
    statuses = {r.knob: r.status for r in imported.rows}
    assert set(statuses) == set(read_config(source).knobs)  # every knob accounted for
    assert statuses["use_grad_ckpt"] == "runtime" and statuses["optax_name"] == "fixed"

    study = tmp_path / f"{name}.yaml"
    imported.write(study)
    variants = expand(load_study(study))
    assert len(variants) == 1
    assert content_hash(variants[0].spec) == content_hash(imported.spec)
    spec = variants[0].spec
    k = knobs(name)
    assert spec.model.backbone == k["backbone"] and spec.model.size == k["model_size"]
    assert spec.data.resolution == k["image_size"] and spec.train.steps == k["total_steps"]
    assert spec.train.batch_size == k["batch_size"]
    assert spec.diffusion.train_shift == k["transport"]["train_timestep_shift"]
    assert spec.model.adaln == k["model_kwargs"]["use_adaln"]
    assert spec.model.sandwich_norm == k["model_kwargs"]["use_sandwich_norm"]
    kept = {s.name for s in spec.data.kept_sources()}
    assert len(kept) == len(k["datasets"])
    assert spec.data.mixing.strategy == ("count_proportional" if name in CONFIGS[:3] else "equal")

    # the model's parameter tree (eval_shape, nothing allocated) is the reference modules' tree
    config = model_config(spec)
    ours = flat_shapes(jax.tree_util.tree_map(lambda x: x, param_shapes(config)))
    layout = jax_layout(config)
    assert len({e.reference for e in layout}) == len(layout) == len(ours)
    assert {e.ours: e.shape for e in layout} == ours
    assert sum(math.prod(e.shape) for e in layout) == count_params_fast(config) == PARAMS[name]


def test_imported_baselines_train_exactly_what_the_hand_written_studies_train(tmp_path: Path) -> None:
    base = expand(load_study(EXPERIMENTS / "baseline.yaml"))[0].spec
    i1 = expand(load_study(EXPERIMENTS / "i1.yaml"))[0].spec
    cross = import_config(write_reference_config(tmp_path / "cross_attn.py", knobs("cross_attn"))).spec
    stage1 = import_config(write_reference_config(tmp_path / "256.py", knobs("256_resolution"))).spec
    assert training_hash(cross) == training_hash(base)
    assert training_hash(stage1) == training_hash(i1)
    # and a one-knob change is a different training
    changed = knobs("cross_attn")
    changed["model_kwargs"] = {**changed["model_kwargs"], "use_adaln": False}
    other = import_config(write_reference_config(tmp_path / "noadaln.py", changed)).spec
    assert training_hash(other) != training_hash(base)


def _error(tmp_path: Path, k: dict[str, Any], extra: str = "") -> str:
    path = write_reference_config(tmp_path / "bad.py", k, extra)
    with pytest.raises((KnobError, ConfigReadError)) as info:
        import_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}:")
    return message


def test_unknown_knobs_and_unrepresentable_values_are_one_line_errors(tmp_path: Path) -> None:
    k = knobs("cross_attn")
    text = _error(tmp_path, k, "config.lr_mults = [('.*', 2.0)]")
    assert "lr_mults: i1lab does not know this knob" in text
    line = int(text.split(":")[1])
    assert "lr_mults" in (tmp_path / "bad.py").read_text().splitlines()[line - 1]

    assert "not a knob of the cross_attn backbone" in _error(
        tmp_path, {**k, "model_kwargs": {**k["model_kwargs"], "refiner_layers": 2}}
    )
    assert "set twice" in _error(tmp_path, {**k, "model_kwargs": {**k["model_kwargs"], "depth": 12}})
    ss = knobs("single_stream")
    assert "rope_theta = 10000" in _error(
        tmp_path, {**ss, "model_kwargs": {**ss["model_kwargs"], "rope_theta": 500.0}}
    )
    assert "weight decay" in _error(tmp_path, k, "config.wd = 0.01")
    assert "neither count-proportional nor equal" in _error(
        tmp_path, {**k, "datasets": [("yfcc", 1), ("pexels", 3)]}
    )
    assert "names no dataset" in _error(tmp_path, {**k, "datasets": [("laion", 1)]})
    assert "resume" in _error(tmp_path, {**k, "resume": "gs://b/checkpoint.npz"})
    assert "unknown text encoder" in _error(tmp_path, {**k, "text_encoder_type": "T5-huge"})


def test_nothing_in_a_config_is_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    k = knobs("cross_attn")
    attempts = {
        f"import os\nos.system('touch {marker}')": "statement `Import` is not evaluated",
        f"config.x = __import__('os').system('touch {marker}')": (
            "call of `__import__('os').system` is not evaluated"
        ),
        f"config.x = open('{marker}', 'w')": "call of `open` is not evaluated",
        "config.x = (lambda: 1)()": "call of `lambda: 1` is not evaluated",
        "config.x = [lambda: 1]": "expression `Lambda` is not evaluated",
        "config.x = config.__class__": "`__class__` is read before it is set",
        "config.x = 10 ** 10 ** 10": "exponent or base too large",
        "config.x = [0] * 10 ** 9": "sequence repetition too large",
        "for i in range(3):\n    config.lr = i": "statement `For` is not evaluated",
        "config.x = f'{config.lr}'": "expression `JoinedStr` is not evaluated",
        "config.x = 'a'.join(['b'])": "call of `'a'.join` is not evaluated",
    }
    for extra, expected in attempts.items():
        assert expected in _error(tmp_path, k, extra), extra
    assert not marker.exists()

    module_level = tmp_path / "module.py"
    module_level.write_text(f"import os\nos.system('touch {marker}')\n\ndef get_config():\n    return 1\n")
    with pytest.raises(
        ConfigReadError, match=r"module.py:2: only imports, docstrings and `def get_config\(\)`"
    ):
        read_config(module_level)
    assert not marker.exists()


def test_cli_writes_the_study_and_reports_the_parameter_count(tmp_path: Path) -> None:
    source = write_reference_config(tmp_path / "dual_stream.py", knobs("dual_stream"))
    env = {**os.environ, "I1LAB_HOME": str(tmp_path / "home"), "COLUMNS": "300"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "i1lab", *args], capture_output=True, text=True, env=env, check=False
        )

    out = tmp_path / "study.yaml"
    res = run("import-i1", str(source), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "1,239,338,960 parameters" in res.stderr
    text = out.read_text()
    assert "model.backbone: dual_stream" in text and "# backbone (line" in text
    assert "wandb.project" in text  # listed as not mapped
    bad = write_reference_config(tmp_path / "bad.py", knobs("dual_stream"), "config.mystery = 3")
    res = run("import-i1", str(bad), "--out", str(tmp_path / "bad.yaml"))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: {bad}:{len(bad.read_text().splitlines()) - 2}: mystery: i1lab does not know this knob"
    ]
    assert not (tmp_path / "bad.yaml").exists()
