"""Property tests: any malformed study document gives a clean, located, one-line SpecError."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from i1lab.errors import SpecError
from i1lab.plan.planner import expand
from i1lab.spec import load_study

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
KEYS = [
    "study",
    "run",
    "axes",
    "grid",
    "seeds",
    "variants",
    "profiles",
    "max_runs",
    "evals",
    "baseline",
    "model",
    "train",
    "data",
    "sampling",
    "size",
    "adapter",
    "type",
    "blocks",
    "lr",
    "steps",
    "resolution",
    "model.adapter",
    "train.lr",
    "data.mixing",
    "model.size",
    "tiny",
    "set",
    "name",
    "bogus",
    "strategy",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["mlp", "transformer", "tiny", "DiT-XL", "equal", "capped", "cpu"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)
DOCS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6)
LOCATED = re.compile(r"^\S+:\d+:\d+: ")


def check(text: str, profile: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "study.yaml"
        path.write_text(text)
        try:
            expand(load_study(path), profile)
        except SpecError as exc:
            message = str(exc)
            assert "\n" not in message and message.strip() == message and message
            assert "Traceback" not in message
            if exc.where is not None:
                assert LOCATED.match(message), message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=DOCS, profile=st.sampled_from([None, "tiny", "huge"]), extend=st.booleans())
def test_random_documents_fail_cleanly(doc: dict[str, object], profile: str | None, extend: bool) -> None:
    if extend:
        doc = {"extends": str(EXPERIMENTS / "baseline.yaml"), **doc}
    check(yaml.safe_dump(doc, allow_unicode=True), profile)


@settings(max_examples=100, deadline=None)
@given(garbage=st.text(max_size=200))
def test_random_text_fails_cleanly(garbage: str) -> None:
    check(garbage, None)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_mutated_real_study_fails_cleanly(data: st.DataObject) -> None:
    """Take a real study file, corrupt one value somewhere, and plan it."""
    doc = yaml.safe_load((EXPERIMENTS / "adapter_size.yaml").read_text())
    doc["extends"] = str(EXPERIMENTS / "baseline.yaml")
    section = data.draw(st.sampled_from(["model", "train", "data", "sampling", "eval", "resources"]))
    key = data.draw(
        st.sampled_from(["steps", "lr", "size", "adapter", "resolution", "cfg_scale", "bogus", "sources"])
    )
    doc["run"] = {section: {key: data.draw(VALUES)}}
    check(yaml.safe_dump(doc), data.draw(st.sampled_from([None, "tiny"])))
