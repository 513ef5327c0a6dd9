"""Official image layouts and folder walks (docs/benchmarks.md §1.2, §2.2, §3.2, §4.2, §5.2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evals import cvtg, dpg, geneval, longtext, prism
from evals.imageio import load_rgb


def tiny(seed: int, side: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def test_geneval_export_553_prompts_x4_and_official_walk(tmp_path: Path) -> None:
    metas = geneval.load_metadata()
    image = tiny(0)
    paths = geneval.write_images(tmp_path, metas, [[image] * 4 for _ in metas])
    assert len(paths) == 553 * 4
    # exactly the official layout, nothing else
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    expected = sorted(
        [f"{i:05d}/metadata.jsonl" for i in range(553)]
        + [f"{i:05d}/samples/{k:05d}.png" for i in range(553) for k in range(4)]
    )
    assert written == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i:05d}" for i in range(553)]
    found = geneval.walk(tmp_path)
    assert sorted(f.path for f in found) == sorted(paths)
    for f in found[:50]:
        # i1's rule (central file, line int(folder)) and upstream's (per-folder metadata) agree
        assert geneval.metadata_for(f, metas) == geneval.metadata_for(f) == metas[int(f.folder)]
    assert (tmp_path / "00179" / "metadata.jsonl").read_text() == json.dumps(metas[179]) + "\n"
    assert np.array_equal(load_rgb(paths[-1]), image)


def test_geneval_walk_rules(tmp_path: Path) -> None:
    samples = tmp_path / "00003" / "samples"
    samples.mkdir(parents=True)
    for name in ("0.png", "00001.png", "7.png.bak", "12.pngx", "x1.png", "1.PNG", ".1.png", "grid.png"):
        (samples / name).write_bytes(b"")
    (samples / "5.png").mkdir()  # not a regular file
    (tmp_path / "00003" / "metadata.jsonl").write_text('{"tag": "x"}')
    (tmp_path / "abc").mkdir()
    (tmp_path / "12a").mkdir()
    (tmp_path / "00004").write_text("a file, not a folder")
    found = geneval.walk(tmp_path)
    # the pattern is anchored at the start only: "7.png.bak" and "12.pngx" count
    assert sorted(f.path.name for f in found) == ["0.png", "00001.png", "12.pngx", "7.png.bak"]
    assert {f.folder for f in found} == {"00003"}
    (tmp_path / "00600" / "samples").mkdir(parents=True)
    (tmp_path / "00600" / "samples" / "0.png").write_bytes(b"")
    past_end = [f for f in geneval.walk(tmp_path) if f.folder == "00600"]
    with pytest.raises(IndexError):  # i1's evaluator crashes on an index ≥ 553
        geneval.metadata_for(past_end[0], geneval.load_metadata())
    (tmp_path / "00007").mkdir()
    with pytest.raises(FileNotFoundError):  # a digit folder without samples/ crashes the official walk
        geneval.walk(tmp_path)


def test_dpg_grids_and_crop_back(tmp_path: Path) -> None:
    prompts = dpg.load_prompts()[:3]
    images = [[tiny(10 * i + k) for k in range(4)] for i in range(3)]
    grids = dpg.write_images(tmp_path, prompts, images)
    assert grids == [tmp_path / "processed" / f"{item}.png" for item, _ in prompts]
    assert (tmp_path / "00002" / "samples" / "00003.png").is_file()
    for path, tiles in zip(grids, images, strict=True):
        grid = load_rgb(path)
        assert grid.shape == (16, 16, 3)
        assert np.array_equal(grid[:8, 8:], tiles[1]) and np.array_equal(grid[8:, :8], tiles[2])
        for k, crop in enumerate(dpg.crop_tiles(grid, 8)):
            assert np.array_equal(crop, tiles[k])
    assert dpg.item_key(str(grids[0])) == prompts[0][0]
    assert sorted(dpg.walk(tmp_path / "processed")) == sorted(f"{i}.png" for i, _ in prompts)
    with pytest.raises(ValueError, match="Expected 4 images"):
        dpg.stitch_2x2(images[0][:3])
    assert dpg.crop_boxes(8, 2) == [(0, 0, 8, 8), (8, 0, 16, 8)]


def test_prism_layout(tmp_path: Path) -> None:
    paths = prism.write_images(tmp_path, {"style": [tiny(1), tiny(2)], "entity": [tiny(3)]})
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "style/0.png",
        "style/1.png",
        "entity/0.png",
    ]
    assert [(c, j) for c, j, _ in prism.walk(tmp_path)] == [("entity", 0), ("style", 0), ("style", 1)]
    assert prism.processed_location(250) == ("entity", 50)
    assert prism.processed_location(699) == ("text_rendering", 99)


def test_cvtg_layout_and_walk(tmp_path: Path) -> None:
    prompts = [p for p in cvtg.load_prompts() if p.area == 2][:2] + [
        p for p in cvtg.load_prompts() if p.type == "CVTG-Style"
    ][:1]
    paths = cvtg.write_images(tmp_path, prompts, [tiny(i) for i in range(3)])
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "CVTG/2/0.png",
        "CVTG/2/1.png",
        "CVTG-Style/2/0.png",
    ]
    folder = tmp_path / "CVTG" / "2"
    (folder / "1.JPG").write_bytes(b"")  # same stem, another extension: both count
    (folder / "9999.png").write_bytes(b"")  # no such prompt
    (folder / "notes.txt").write_bytes(b"")
    table = cvtg.prompt_table(cvtg.load_prompts())
    found = cvtg.walk(tmp_path, table)
    assert sorted((t, a, s, p.name) for t, a, s, p in found) == [
        ("CVTG", 2, "0", "0.png"),
        ("CVTG", 2, "1", "1.JPG"),
        ("CVTG", 2, "1", "1.png"),
        ("CVTG-Style", 2, "0", "0.png"),
    ]
    assert cvtg.cells(tmp_path) == [("CVTG", 2), ("CVTG-Style", 2)]


def test_longtext_layout_and_walk(tmp_path: Path) -> None:
    prompts = longtext.load_prompts()[:2]
    paths = longtext.write_images(tmp_path, prompts, [[tiny(0), tiny(1)], [tiny(2), tiny(3)]])
    assert [p.name for p in paths] == [
        f"{prompts[0].prompt_id}_0.png",
        f"{prompts[0].prompt_id}_1.png",
        f"{prompts[1].prompt_id}_0.png",
        f"{prompts[1].prompt_id}_1.png",
    ]
    by_id = {p.prompt_id: p for p in prompts}
    walked = longtext.walk(tmp_path, by_id)
    assert [p for _, p in walked] == sorted(paths, key=str)  # sorted glob order
    assert [pid for pid, _ in walked] == [0, 0, 1, 1]
    assert longtext.prompt_id_of("dir/12_3.png") == 12 and longtext.prompt_id_of("45.png") == 45
    assert longtext.generation_path(tmp_path, 7, 2).name == "0007_2.png"
    (tmp_path / "999_0.png").write_bytes(b"")
    with pytest.raises(KeyError):
        longtext.walk(tmp_path, by_id)
