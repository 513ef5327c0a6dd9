"""The GenEval-shaped prompt set, its JSONL file and the prompt parser (docs/benchmarks.md §1.1)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from evals.shapes import (
    TAGS,
    load_metadata_jsonl,
    parse_prompt,
    prompts,
    scene_for_prompt,
    write_metadata_jsonl,
)
from evals.shapes.prompts import candidates


def test_fixed_set_shape() -> None:
    metas = prompts()
    counts = Counter(m["tag"] for m in metas)
    assert counts == {
        "single_object": 3,
        "two_object": 6,
        "counting": 8,
        "colors": 8,
        "position": 8,
        "color_attr": 8,
    }
    assert [m["tag"] for m in metas] == sorted((m["tag"] for m in metas), key=TAGS.index)  # contiguous
    assert len({m["prompt"] for m in metas}) == len(metas)  # no duplicates
    assert prompts() == metas  # deterministic
    assert prompts(seed=1) != metas
    assert len(prompts(1000)) == 3 + 6 + 9 + 30 + 24 + 540


def test_clause_structure_per_tag() -> None:
    for meta in prompts(50):
        include, tag = meta["include"], meta["tag"]
        assert ("exclude" in meta) == (tag == "counting")
        if tag == "single_object":
            assert include == [{"class": include[0]["class"], "count": 1}]
        elif tag == "two_object":
            assert len(include) == 2 and all(set(c) == {"class", "count"} for c in include)
            assert include[0]["class"] != include[1]["class"]
        elif tag == "counting":
            assert include[0]["count"] in (2, 3, 4)
            assert meta["exclude"] == [{"class": include[0]["class"], "count": include[0]["count"] + 1}]
        elif tag == "colors":
            assert len(include) == 1 and "color" in include[0]
        elif tag == "position":
            assert "position" not in include[0] and include[1]["position"][1] == 0
        else:
            assert all("color" in c for c in include)
            assert include[0]["color"] != include[1]["color"]


def test_geneval_json_layout() -> None:
    meta = next(m for m in prompts(50) if m["tag"] == "counting")
    cls, n = meta["include"][0]["class"], meta["include"][0]["count"]
    word = {2: "two", 3: "three", 4: "four"}[n]
    assert json.dumps(meta) == (
        f'{{"tag": "counting", "include": [{{"class": "{cls}", "count": {n}}}], '
        f'"exclude": [{{"class": "{cls}", "count": {n + 1}}}], "prompt": "a photo of {word} {cls}s"}}'
    )
    position = next(m for m in prompts(50) if m["tag"] == "position")
    line = json.loads(json.dumps(position))
    assert list(line) == ["tag", "include", "prompt"]
    assert list(line["include"][1]) == ["class", "count", "position"]


def test_prompt_texts() -> None:
    texts = {m["prompt"] for m in prompts(1000)}
    assert "a photo of a circle" in texts
    assert "a photo of three blue squares" not in texts  # counting prompts name no colour
    assert "a photo of three squares" in texts
    assert "a photo of a circle left of a square" in texts
    assert "a photo of an orange triangle" in texts
    assert "a photo of a red circle and an orange square" in texts
    meta = parse_prompt("a photo of a circle left of a square")
    assert meta["include"] == [
        {"class": "square", "count": 1},
        {"class": "circle", "count": 1, "position": ("left of", 0)},
    ]


def test_every_prompt_parses_back() -> None:
    every = prompts(1000)
    assert len(every) == sum(len(candidates(tag)) for tag in TAGS)
    for meta in every:
        assert parse_prompt(meta["prompt"]) == meta


def test_parse_captions_with_colours_anywhere() -> None:
    meta = parse_prompt("a photo of three red circles")
    assert meta["tag"] == "counting"
    assert meta["include"] == [{"class": "circle", "count": 3, "color": "red"}]
    assert meta["exclude"] == [{"class": "circle", "count": 4}]
    meta = parse_prompt("a photo of a red circle left of a green square")
    assert meta["tag"] == "position"
    assert meta["include"][1] == {"class": "circle", "count": 1, "color": "red", "position": ("left of", 0)}


@pytest.mark.parametrize(
    "text",
    [
        "a picture of a circle",
        "a photo of a orange circle",
        "a photo of an circle",
        "a photo of two circle",
        "a photo of a circles",
        "a photo of a hexagon",
        "a photo of a teal circle",
        "a photo of a circle and",
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_prompt(text)


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "evaluation_metadata.jsonl"
    write_metadata_jsonl(path)
    lines = path.read_text().splitlines()
    assert len(lines) == len(prompts())
    assert load_metadata_jsonl(path) == prompts()
    assert [json.dumps(m) for m in load_metadata_jsonl(path)] == lines
    subset = prompts(2, seed=4)
    write_metadata_jsonl(path, subset)
    assert load_metadata_jsonl(path) == subset


def test_scene_for_prompt_objects() -> None:
    rng = np.random.default_rng(0)
    for meta in prompts(20):
        scene = scene_for_prompt(meta, rng)
        wanted = Counter({c["class"]: c["count"] for c in meta["include"]})
        assert Counter(o.shape for o in scene.objects) == wanted
        for clause in meta["include"]:
            if "color" in clause:
                assert clause["color"] in {o.color for o in scene.objects if o.shape == clause["class"]}
    bad = {
        "tag": "counting",
        "include": [{"class": "circle", "count": 2}],
        "exclude": [{"class": "circle", "count": 2}],
        "prompt": "x",
    }
    with pytest.raises(ValueError, match="unsatisfiable"):
        scene_for_prompt(bad, rng)  # type: ignore[arg-type]
