"""Nothing accepted that does nothing: every field of the run spec changes what training or sampling does,
or is cosmetic by design.

The walk takes every leaf field of :class:`RunSpec` (nested models, list items included) and, for each,
a different valid value. It then runs what the runner itself runs — its initial state, its batch of
steps 0 and 1 (:func:`step_batch`), its bound train step (:func:`train_step`, op by op) and its
checkpoint and evaluation schedule — or, for ``sampling.*``, the evaluator's sampling of a benchmark's
prompts, and asserts that the outcome differs from the base spec's. A field added to the spec without an
entry here fails the test.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel

from i1lab.evaluation.evaluate import generate_benchmark
from i1lab.plan.planner import expand
from i1lab.plan.steps import eval_steps
from i1lab.spec import load_study
from i1lab.spec.model import model_config
from i1lab.spec.run import RunSpec
from i1lab.train.build import TextEncoder
from i1lab.train.runner import (
    batch_stream,
    initial_state,
    run_checkpoints,
    step_batch,
    step_key,
    train_step,
)
from models.dit import DiT
from tests.core.test_weights import write_flux2

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO.parent / "shared" / "benchmarks"

#: The micro base every change is measured against (the baseline's tiny profile, smaller still).
BASE: dict[str, Any] = {
    "model.hidden": 16,
    "model.depth": 1,
    "model.heads": 2,
    "model.text_encoder": {"type": "hash", "token_len": 4},
    "data.resolution": 16,
    "train.batch_size": 4,
    "train.steps": 4,
    "train.checkpoint_every": 2,
    "train.keep_every": 4,
    "sampling.steps": 2,
    "sampling.cfg_scale": 2.0,
    "eval.prompt_limit": 1,
}

#: field -> (other value, context applied to both sides: what the field needs to mean anything)
CHANGES: dict[str, tuple[Any, dict[str, Any]]] = {
    "model.backbone": ("single_stream", {}),
    "model.size": ("small", {"model.hidden": None, "model.depth": None, "model.heads": None}),
    "model.hidden": (32, {}),
    "model.depth": (3, {}),
    "model.heads": (4, {}),
    "model.mlp_ratio": (2.0, {}),
    "model.patch_size": (1, {}),
    "model.long_skip": (False, {"model.depth": 3}),
    "model.text_encoder.type": ("minilm", {}),
    "model.text_encoder.token_len": (6, {}),
    "model.text_encoder.drop_prob": (1.0, {}),
    "model.text_encoder.dtype": ("float32", {"model.text_encoder": {"type": "minilm", "token_len": 4}}),
    "model.adapter.type": ("transformer", {}),
    "model.adapter.blocks": (2, {"model.adapter": {"type": "transformer", "blocks": 1}}),
    "model.repeat_text_emb": (True, {}),
    "model.adaln": (False, {}),
    "model.pooled_text": (False, {}),
    "model.timestep": (False, {}),
    "model.position_embedding": ("rope_only", {}),
    "model.sandwich_norm": (True, {}),
    "model.separate_norms": (True, {"model.backbone": "dual_stream"}),
    "model.image_connector": (True, {}),
    "model.qknorm": (False, {}),
    "model.swiglu": (False, {}),
    "model.rmsnorm": (False, {}),
    "model.wo_shift": (True, {}),
    "model.refiner_layers": (1, {"model.backbone": "single_stream"}),
    "model.vae": ("flux2", {}),
    "model.precision": ("bfloat16", {}),
    "diffusion.prediction": ("x", {}),
    "diffusion.timestep_sampling": ("uniform", {}),
    "diffusion.lognorm_mean": (1.0, {}),
    "diffusion.lognorm_std": (2.0, {}),
    "diffusion.train_shift": (3.0, {}),
    "data.sources.0.name": ("shapes_z", {}),
    "data.sources.0.count": (50, {}),
    "data.sources.0.group": ("text", {"data.remove": ["text"]}),
    "data.sources.0.family": ("textured", {}),
    "data.mixing.strategy": ("equal", {}),
    "data.mixing.cap": (20_000, {"data.mixing": {"strategy": "capped", "cap": 100_000}}),
    "data.keep": (["real"], {}),
    "data.remove": (["real"], {}),
    "data.subset_count": (5, {}),
    "data.long_caption_fraction": (0.0, {}),
    "data.resolution": (32, {}),
    "train.steps": (6, {}),
    "train.batch_size": (2, {}),
    "train.lr": (1e-2, {}),
    "train.b1": (0.5, {}),
    "train.b2": (0.5, {}),
    "train.eps": (1.0, {}),
    "train.mu_dtype": ("float32", {}),
    "train.grad_clip": (1e-4, {}),
    "train.weight_decay": (0.5, {}),
    "train.ema_decay": (0.5, {}),
    "train.caption_dropout": (1.0, {}),
    "train.checkpoint_every": (1, {}),
    "train.keep_every": (2, {}),
    "train.seed": (1, {}),
    "sampling.steps": (3, {}),
    "sampling.cfg_scale": (5.0, {}),
    "sampling.cfg_rescale": (1.0, {}),
    "sampling.cfg_interval_start": (0.9, {}),
    "sampling.time_grid": ("shifted", {}),
    "sampling.time_shift": (3.0, {"sampling.time_grid": "shifted"}),
    "sampling.prompt_variant": ("simple_rewrite", {}),
    "sampling.seed": (7, {}),
}

#: Fields that change how a run is computed but, by design, not its result (asserted: same outcome).
SAME_RESULT = {"train.grad_accum": (2, {})}  # micro-batches average to the full batch (§9)

#: Fields the spec accepts with one value only, until i1lab can realise another (asserted: refused).
REFUSED = {"data.captioner": "recaptioned"}

#: Fields whose effect needs more than one run or data on disk; each names the test that shows it.
SHOWN_ELSEWHERE = {
    "data.resume_from": "tests/core/test_end_to_end.py::test_resolution_stage_resumes_from_its_parent",
    "data.sources.0.kind": "tests/core/test_data_sources.py (webdataset and tfrecord shards)",
    "data.sources.0.path": "tests/core/test_data_sources.py (webdataset and tfrecord shards)",
}


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The spec model a field holds, and whether as a list (``T | list[T]`` counts as ``T``)."""
    for a in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a, False
        if getattr(a, "__origin__", None) is list:
            item = a.__args__[0]
            if isinstance(item, type) and issubclass(item, BaseModel):
                return item, True
    return None, False


def leaf_paths(cls: type[BaseModel], prefix: str = "") -> dict[str, bool]:
    """Every leaf field of ``cls`` (a list of models walked at item 0) -> semantic (in the hash)."""
    out: dict[str, bool] = {}
    for name, info in cls.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        model, is_list = _model_of(info.annotation)
        if extra.get("semantic") is False:
            out[prefix + name] = False
        elif model is not None:
            out.update(leaf_paths(model, f"{prefix}{name}.0." if is_list else f"{prefix}{name}."))
        else:
            out[prefix + name] = True
    return out


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    value = copy.deepcopy(value)  # the tables above stay as written
    node: Any = raw
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value


def make_spec(*changes: dict[str, Any]) -> RunSpec:
    raw = expand(load_study(REPO / "experiments" / "baseline.yaml"), "tiny")[0].spec.model_dump(mode="json")
    for change in (BASE, *changes):
        for key, value in change.items():
            _set(raw, key, value)
    return RunSpec.model_validate(raw)


def _digest(tree: Any) -> str:
    import jax

    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        h.update(np.asarray(leaf, np.float32).tobytes())
    return h.hexdigest()[:16]


_MEASURED: dict[str, Any] = {}


def measured(spec: RunSpec, network: bool, tmp: Path) -> Any:
    """:func:`model_outcome` (``network``) or :func:`training_outcome` of ``spec``, computed once per spec."""
    key = f"{network}:{spec.model_dump_json()}"
    if key not in _MEASURED:
        _MEASURED[key] = model_outcome(spec) if network else training_outcome(spec, tmp / str(len(_MEASURED)))
    return _MEASURED[key]


def model_outcome(spec: RunSpec) -> tuple[str, str]:
    """The network the runner builds: its parameter tree and its velocity on the runner's first batch (text
    features and latents from the run's own encoders and VAE), with parameters drawn from a fixed seed
    (building the run's own initial state op by op costs seconds per new shape)."""
    import jax
    import jax.numpy as jnp

    abstract, _, _ = initial_state(spec, abstract=True)
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(lambda a: rng.normal(0, 0.5, a.shape).astype(a.dtype), abstract.params)
    stream, encoder = batch_stream(spec), TextEncoder(spec)
    batch, _ = step_batch(spec, stream, encoder, 0)
    t = jnp.full((spec.train.batch_size,), 0.5, jnp.float32)
    apply = DiT(model_config(spec)).apply  # op by op: most changes keep the shapes, whose ops are compiled
    v = apply({"params": params}, batch["latents"], t, batch["text"], batch["mask"])
    shapes = str(jax.tree_util.tree_map(lambda a: (a.shape, str(a.dtype)), abstract.params))
    return shapes, _digest(v)


def training_outcome(spec: RunSpec, tmp: Path) -> dict[str, Any]:
    """What the runner does with ``spec``: the examples of its first batches, two train steps (loss and
    resulting parameters / EMA / optimizer state) and its checkpoint and evaluation schedule."""
    state, tx, frozen = initial_state(spec, jit=False)
    step = train_step(spec, DiT(model_config(spec)), tx, frozen, jit=False)
    stream, encoder = batch_stream(spec), TextEncoder(spec)
    losses, examples = [], []
    for s in range(2):
        batch, ids = step_batch(spec, stream, encoder, s)
        examples.append([*map(str, ids["source"]), *map(int, ids["index"]), _digest(batch)])
        state, metrics = step(state, batch, step_key(spec, s))
        losses.append(float(metrics.loss))
    ckpts = run_checkpoints(spec, tmp / "ckpt")
    schedule = [(s, ckpts.is_permanent(s)) for s in range(1, spec.train.steps + 1) if ckpts.due(s)]
    ckpts.close()
    return {
        "examples": examples,
        "losses": losses,
        "state": _digest((state.params, state.ema, state.opt_state)),
        "schedule": (schedule, sorted(eval_steps(spec))),
    }


def sampling_outcome(spec: RunSpec, params: Any, tmp: Path) -> tuple[str, ...]:
    """The DPG images and prompts the evaluator writes for the first prompt (the official layout)."""
    generate_benchmark(spec, params, "dpg", 1, tmp, directory=BENCHMARKS)
    files = sorted((tmp / "dpg").rglob("*.png")) + sorted((tmp / "dpg").rglob("*.jsonl"))
    return tuple(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    weights = tmp_path_factory.mktemp("weights")
    write_flux2(weights / "vaes" / "flux2")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("I1LAB_WEIGHTS_DIR", str(weights))
        mp.setenv("I1LAB_HOME", str(tmp_path_factory.mktemp("home")))
        yield


def test_every_field_is_covered() -> None:
    fields = leaf_paths(RunSpec)
    cosmetic = {p for p, semantic in fields.items() if not semantic}
    assert cosmetic == {"name", "label", "train.log_every", "eval", "resources"}  # by design: no effect
    covered = set(CHANGES) | set(SAME_RESULT) | set(REFUSED) | set(SHOWN_ELSEWHERE)
    assert covered == {p for p, semantic in fields.items() if semantic}
    for path in SHOWN_ELSEWHERE.values():
        assert (REPO / path.split("::")[0].split(" ")[0]).is_file()


def test_a_refused_field_names_itself() -> None:
    for path, value in REFUSED.items():
        with pytest.raises(
            ValueError, match="do not exist: the data records carry qwen3-vl-30b-a3b captions"
        ):
            make_spec({path: value})


#: Fields whose effect shows in the network itself (its parameters and output), not only in a step.
NETWORK = tuple(p for p in CHANGES if p.startswith("model.") and p != "model.text_encoder.drop_prob")


def unchanged(section: str, tmp_path: Path) -> list[str]:
    """The fields of ``section`` whose change left what training (or the network) does the same."""
    same = []
    for path, (value, context) in CHANGES.items():
        if not path.startswith(section + "."):
            continue
        base = measured(make_spec(context), path in NETWORK, tmp_path)
        changed = measured(make_spec(context, {path: value}), path in NETWORK, tmp_path)
        if changed == base:
            same.append(path)
    return same


#: ``model`` is walked in tests/core/test_spec_effects_model.py (a file of its own runs beside this one)
@pytest.mark.parametrize("section", ["diffusion", "data", "train"])
def test_every_training_field_changes_what_training_does(env: None, tmp_path: Path, section: str) -> None:
    same = unchanged(section, tmp_path)
    assert same == [], f"changing these changed nothing training does: {same}"
    if section == "train":
        for path, (value, context) in SAME_RESULT.items():
            a = training_outcome(make_spec(context), tmp_path / "accum-a")
            b = training_outcome(make_spec(context, {path: value}), tmp_path / "accum-b")
            np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-5)


def test_every_sampling_field_changes_what_sampling_does(env: None, tmp_path: Path) -> None:
    spec = make_spec()
    state, _, _ = initial_state(spec, jit=False)
    base = sampling_outcome(spec, state.ema, tmp_path / "base")
    same = []
    for path, (value, context) in CHANGES.items():
        if path.startswith("sampling."):
            a = sampling_outcome(make_spec(context), state.ema, tmp_path / f"{path}-a") if context else base
            b = sampling_outcome(make_spec(context, {path: value}), state.ema, tmp_path / f"{path}-b")
            if a == b:
                same.append(path)
    assert same == [], f"changing these changed nothing sampling does: {same}"
