"""GenEval's relative-position formula against hand-computed cases (docs/benchmarks.md §1.3.5)."""

from __future__ import annotations

import pytest

from evals.shapes.geometry import position_ratios, relative_position


def test_left_and_right_hand_computed() -> None:
    # centres (2, 2) and (12, 2): offset (-10, 0); revised -(10 - 0.1·(4 + 4)) = -9.2; ratio -0.92
    a, b = (0, 0, 4, 4), (10, 0, 14, 4)
    assert position_ratios(a, b) == pytest.approx((-0.92, 0.0), abs=1e-6)
    assert relative_position(a, b) == ("left of",)
    assert relative_position(b, a) == ("right of",)


def test_y_grows_downwards() -> None:
    a, b = (0, 0, 4, 4), (0, 10, 4, 14)
    assert relative_position(a, b) == ("above",)
    assert relative_position(b, a) == ("below",)


def test_multi_relation() -> None:
    # offset (-10, -10), revised (-9.6, -9.6), norm of the UN-revised offset 14.142: ratios -0.6788
    a, b = (0, 0, 2, 2), (10, 10, 12, 12)
    assert position_ratios(a, b) == pytest.approx((-9.6 / 200**0.5, -9.6 / 200**0.5), abs=1e-6)
    assert relative_position(a, b) == ("left of", "above")
    assert relative_position(b, a) == ("right of", "below")


def test_normalised_by_unrevised_norm() -> None:
    # offset (-10, -20), revised (-9.6, -19.6), |offset| = 22.36: dx = -0.429 (no "left of"), dy = -0.877
    a, b = (0, 0, 2, 2), (10, 20, 12, 22)
    dx, dy = position_ratios(a, b) or (0.0, 0.0)
    assert dx == pytest.approx(-9.6 / 500**0.5, abs=1e-6)
    assert dy == pytest.approx(-19.6 / 500**0.5, abs=1e-6)
    assert relative_position(a, b) == ("above",)


def test_empty_when_revised_below_1e_3() -> None:
    assert position_ratios((0, 0, 4, 4), (0, 0, 4, 4)) is None  # identical centres
    assert relative_position((0, 0, 4, 4), (0, 0, 4, 4)) == ()
    # widths 10 + 10 → margin 2; offset 2.0005 → revised 0.0005 < 1e-3 → empty set
    assert position_ratios((2.0005, 0, 12.0005, 10), (0, 0, 10, 10)) is None
    # offset 2.002 → revised 0.002: not empty, but ratio 0.001 gives no relation
    ratios = position_ratios((2.002, 0, 12.002, 10), (0, 0, 10, 10))
    assert ratios is not None
    assert ratios[0] == pytest.approx(0.002 / 2.002, rel=1e-2)
    assert relative_position((2.002, 0, 12.002, 10), (0, 0, 10, 10)) == ()


def test_overlapping_boxes_have_no_relation() -> None:
    # offset (-1, 0) is swallowed by 0.1·(10 + 10) = 2
    assert position_ratios((0, 0, 10, 10), (1, 0, 11, 10)) is None


def test_point_boxes_use_plain_offsets() -> None:
    # zero-size boxes: revised = offset; A − B = (−1, 2) → dx = −0.447 (not left), dy = 0.894 (below)
    assert relative_position((0, 0, 0, 0), (1, -2, 1, -2)) == ("below",)
    # A − B = (−2, 2) → both ratios ±0.707
    assert relative_position((0, 0, 0, 0), (2, -2, 2, -2)) == ("left of", "below")
