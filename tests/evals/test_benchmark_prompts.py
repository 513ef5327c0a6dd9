"""Loaders of the official prompt files against the real fixtures (docs/benchmarks.md §1.1–5.1) and the
prompt variants (`shared/benchmarks/prompt_variants/`)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from evals import cvtg, dpg, geneval, longtext, prism
from evals.benchdir import ENV_VAR, BenchmarkFileMissing, benchmarks_dir
from evals.longtext import normalize
from evals.variants import load_keyed, load_variant, repeat, variant_names

BENCH = benchmarks_dir()


def test_the_tests_read_the_fixture_copies() -> None:
    assert (BENCH / "geneval" / "evaluation_metadata.jsonl").is_file()


def test_the_default_is_the_user_level_folder_of_the_pinned_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "i1lab" / "benchmarks" / "b58a62f4a301"
    with pytest.raises(FileNotFoundError, match="run `i1lab evals fetch` \\(it fills " + str(folder)):
        benchmarks_dir()
    folder.mkdir(parents=True)
    assert benchmarks_dir() == folder  # never ../shared next to the repository


def test_env_var_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert benchmarks_dir() == tmp_path
    with pytest.raises(BenchmarkFileMissing) as err:
        geneval.load_metadata()
    assert str(tmp_path / "geneval" / "evaluation_metadata.jsonl") in str(err.value)


def test_geneval_prompt_set() -> None:
    metas = geneval.load_metadata()
    assert len(metas) == geneval.N_PROMPTS == 553
    for tag, lines in geneval.TAG_RANGES.items():
        assert {metas[i]["tag"] for i in lines} == {tag}
    assert sum(len(r) for r in geneval.TAG_RANGES.values()) == 553
    counting = [metas[i] for i in geneval.TAG_RANGES["counting"]]
    assert Counter(m["include"][0]["count"] for m in counting) == {2: 26, 3: 28, 4: 26}
    assert all(
        m["exclude"] == [{"class": m["include"][0]["class"], "count": m["include"][0]["count"] + 1}]
        for m in counting
    )
    positions = Counter(metas[i]["include"][1]["position"][0] for i in geneval.TAG_RANGES["position"])
    assert positions == {"below": 28, "right of": 27, "above": 26, "left of": 19}
    assert len({m["prompt"] for m in metas}) == 553
    names = geneval.load_object_names()
    assert len(names) == 80 and names[0] == "person"
    assert {c["class"] for m in metas for c in m["include"]} <= set(names)
    lines = (BENCH / "geneval" / "evaluation_metadata.jsonl").read_text().splitlines()
    assert [json.dumps(m) for m in metas] == lines  # the metadata string the official evaluator stores


def test_dpg_prompts_and_missing_csv(tmp_path: Path) -> None:
    prompts = dpg.load_prompts()
    assert len(prompts) == dpg.N_PROMPTS == 1065
    prefixes = Counter(re.sub(r"\d+$", "", item) or "<number>" for item, _ in prompts)
    assert prefixes["partiprompts"] == 324 and prefixes["<number>"] == 299 and prefixes["COCOval"] == 100
    assert prefixes["localized"] == 22 and prefixes["whoops"] == 40
    with pytest.raises(BenchmarkFileMissing) as err:
        dpg.load_questions(directory=BENCH)
    message = str(err.value)
    assert str(BENCH / "dpg" / "dpg_bench.csv") in message and "TencentQQGYLab/ELLA" in message
    with pytest.raises(FileNotFoundError, match=r"dpg_bench\.csv"):
        dpg.load_questions(tmp_path / "dpg_bench.csv")


def test_prism_prompt_set() -> None:
    prompts = prism.load_prompts()
    assert list(prompts) == list(prism.CATEGORIES)
    assert all(len(v) == 100 for v in prompts.values())
    flat = prism.flat_prompts(prompts)
    assert [p for _, _, p in flat] == load_variant("prism")  # prism.json: the flat alphabetical list
    assert flat[250][:2] == ("entity", 50)


def test_cvtg_prompt_set() -> None:
    prompts = cvtg.load_prompts()
    counts = Counter((p.type, p.area) for p in prompts)
    assert counts == {
        ("CVTG", 2): 200, ("CVTG", 3): 301, ("CVTG", 4): 300, ("CVTG", 5): 201,
        ("CVTG-Style", 2): 200, ("CVTG-Style", 3): 299, ("CVTG-Style", 4): 302, ("CVTG-Style", 5): 197,
    }  # fmt: skip
    assert sum(len(p.gt_words) for p in prompts) == 16206
    assert sum(len(set(w)) < len(w) for w in (p.gt_words for p in prompts)) == 135
    keys, _ = load_keyed("cvtg")
    assert keys == [p.key for p in prompts]  # CVTG-2K.json order = loader order


def test_longtext_prompt_set() -> None:
    prompts = longtext.load_prompts()
    assert len(prompts) == longtext.N_PROMPTS == 160
    assert Counter(p.category for p in prompts) == {
        c: 20 for c in ("sign", "label", "print", "webpage", "slide", "poster", "caption", "dialogue")
    }
    assert Counter(p.length for p in prompts) == {"short": 80, "long": 80}
    assert sum(len(normalize(" ".join(p.text)).split()) for p in prompts) == 4263


@pytest.mark.parametrize("bench", ["geneval", "dpg", "prism", "cvtg", "longtext"])
def test_variants_align_with_originals(bench: str) -> None:
    original = load_variant(bench)
    for name in variant_names(bench):
        prompts = load_variant(bench, name)
        assert len(prompts) == len(original)
        assert prompts != original if name != "original" else prompts == original
    assert load_variant(bench, "repeated3")[0] == " ".join([original[0]] * 3)


def test_geneval_variants() -> None:
    metas = geneval.load_metadata()
    assert load_variant("geneval") == [m["prompt"] for m in metas]
    for n in (4, 24):
        assert load_variant("geneval", f"repeated{n}") == repeat([m["prompt"] for m in metas], n)
    assert "bench" in load_variant("geneval", "complex_rewrite")[0]


def test_unknown_variant_and_bad_repeat() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        load_variant("dpg", "medium_rewrite")
    with pytest.raises(ValueError):
        repeat(["a"], 0)
