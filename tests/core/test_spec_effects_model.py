"""The walk of tests/core/test_spec_effects.py over the ``model`` section: every model field changes the
network the runner builds (or, for a text encoder's ``drop_prob``, its training step). A file of its own,
so that it runs beside the other sections."""

from __future__ import annotations

from pathlib import Path

from tests.core.test_spec_effects import env, unchanged

__all__ = ["env"]  # the fixture, used below


def test_every_model_field_changes_the_network_or_its_training(env: None, tmp_path: Path) -> None:
    same = unchanged("model", tmp_path)
    assert same == [], f"changing these changed nothing the network or training does: {same}"
