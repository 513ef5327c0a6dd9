"""Packed score vectors: one value per checkpoint holding all its scores (i1lab.registry.vectors)."""

from __future__ import annotations

import math

from i1lab.registry import vectors


def test_pack_and_unpack_round_trip_sorted_by_key() -> None:
    a, b = vectors.key_id("geneval", "overall", "j"), vectors.key_id("dpg", "dpg_score", "j")
    assert a != b and vectors.key_id("geneval", "overall", "j") == a  # stable, distinct
    assert vectors.key_id("gen", "eval/overall", "j") != vectors.key_id("gen/eval", "overall", "j")
    blob = vectors.pack([(a, 0.5), (b, 0.25), (a, 0.75)])  # the last value of a key wins
    assert len(blob) == 2 * vectors.PAIR.size
    assert vectors.unpack(blob) == {a: 0.75, b: 0.25}
    assert [k for k, _ in vectors.PAIR.iter_unpack(blob)] == sorted([a, b])
    assert vectors.pack([]) == b"" and vectors.unpack(b"") == {}


def test_matrix_places_each_value_by_run_and_key() -> None:
    k1, k2, k3 = (vectors.key_id("b", m, "j") for m in ("m1", "m2", "m3"))
    rows = [
        (10, vectors.pack([(k1, 1.0), (k2, 2.0), (k3, 3.0)])),
        (30, vectors.pack([(k2, 32.0)])),
        (40, memoryview(vectors.pack([(k3, 43.0)]))),  # PostgreSQL drivers may hand back buffers
    ]
    got = vectors.matrix([10, 20, 30, 40], [k2, k1], rows)  # columns in the order asked; k3 not asked
    want = [[2.0, 1.0], [None, None], [32.0, None], [None, None]]
    assert got.shape == (4, 2)
    for r, row in enumerate(want):
        for c, value in enumerate(row):
            assert (got[r, c] == value) if value is not None else math.isnan(got[r, c]), (r, c)
    assert vectors.matrix([1, 2], [], rows).shape == (2, 0)
    assert math.isnan(vectors.matrix([1], [k1], []).item())
