"""`i1lab evals fetch`: official prompt files from upstream, one-line failure offline, complete dirs."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from evals.benchdir import benchmarks_dir
from i1lab.errors import I1labError
from i1lab.evaluation.fetch import I1_RAW, fetch, missing, remotes

FIXTURES = benchmarks_dir()  # the shipped copies (shared/benchmarks), a complete directory


def i1lab(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "I1LAB_HOME": str(home), "COLUMNS": "300", **env}
    for name in ("no_proxy", "NO_PROXY"):
        full.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "i1lab", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
        check=False,
    )


def fixture_server(overrides: dict[str, bytes] | None = None) -> tuple[list[str], object]:
    """A fake opener serving the shipped files at their URLs (upstream and i1 mirror alike)."""
    by_url: dict[str, bytes] = {}
    for r in remotes():
        path = FIXTURES / r.path
        if not path.is_file():
            continue
        data = gzip.decompress(path.read_bytes()) if r.gzip else path.read_bytes()
        for url in r.urls:
            by_url[url] = data
    by_url.update(overrides or {})
    asked: list[str] = []

    def opener(url: str, timeout: float) -> bytes:
        asked.append(url)
        if url not in by_url:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)  # type: ignore[arg-type]
        return by_url[url]

    return asked, opener


def test_shipped_fixtures_are_reported_complete(home: Path) -> None:
    assert missing(FIXTURES) == []
    res = i1lab("evals", "fetch", "--dir", str(FIXTURES), home=home)
    assert res.returncode == 0, res.stderr
    assert "complete" in res.stdout and "nothing to download" in res.stdout
    n = len([r for r in remotes() if not r.optional])
    assert f"{n} files present" in res.stdout


def test_offline_fails_with_one_line_naming_files_and_where_to_put_them(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "bench"
    # a proxy on a closed local port: every download fails at once, as on a machine without internet
    proxy = "http://127.0.0.1:9"
    res = i1lab("evals", "fetch", "--dir", str(target), home=home, https_proxy=proxy, HTTPS_PROXY=proxy)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    line = lines[0]
    total = len([r for r in remotes() if not r.optional])
    assert line.startswith(f"error: evals fetch: could not download {total} of {total} missing files")
    assert "geneval/evaluation_metadata.jsonl" in line and "network unreachable" in line
    assert f"put them under {target} by hand" in line and "github.com/djghosh13/geneval" in line
    assert "I1LAB_BENCHMARKS_DIR" in line
    assert not any(target.rglob("*.part"))  # nothing half-written


def test_fetch_writes_the_layout_the_loaders_read(tmp_path: Path) -> None:
    asked, opener = fixture_server()
    report = fetch(tmp_path, opener=opener)  # type: ignore[arg-type]
    expected = [r.path for r in remotes() if not r.optional]
    assert sorted(report.downloaded) == sorted(expected) and report.present == [] and not report.notes
    # upstream first for GenEval, only the pinned i1 copy for i1's own packagings
    assert (
        asked[0]
        == "https://raw.githubusercontent.com/djghosh13/geneval/main/prompts/evaluation_metadata.jsonl"
    )
    assert all(u.startswith(I1_RAW) for u in asked if "prompt_variants" in u or "cvtg-2k" in u)
    for path in expected:
        got, ref = tmp_path / path, FIXTURES / path
        if path.endswith(".gz"):
            assert gzip.decompress(got.read_bytes()) == gzip.decompress(ref.read_bytes())
        else:
            assert got.read_bytes() == ref.read_bytes()
    from evals import longtext
    from evals.variants import load_variant

    assert len(longtext.load_prompts(tmp_path)) == 160
    assert len(load_variant("geneval", "repeated8", tmp_path)) == 553
    # a second fetch finds everything in place and downloads nothing
    asked.clear()
    again = fetch(tmp_path, opener=opener)  # type: ignore[arg-type]
    assert again.complete and asked == [] and len(again.present) == len(expected)


def test_upstream_that_differs_falls_back_to_the_pinned_copy(tmp_path: Path) -> None:
    upstream = "https://raw.githubusercontent.com/X-Omni-Team/X-Omni/main/textbench/text_prompts.jsonl"
    _, opener = fixture_server({upstream: b'{"changed": true}\n'})
    report = fetch(tmp_path, opener=opener)  # type: ignore[arg-type]
    assert (tmp_path / "longtext/text_prompts.jsonl").read_bytes() == (
        FIXTURES / "longtext/text_prompts.jsonl"
    ).read_bytes()
    assert len(report.notes) == 1 and "longtext/text_prompts.jsonl" in report.notes[0]
    assert "differs from the reference copy" in report.notes[0]


def test_a_file_no_source_serves_is_named(tmp_path: Path) -> None:
    _, opener = fixture_server()
    with pytest.raises(I1labError) as info:
        fetch(tmp_path, include_optional=True, opener=opener)  # type: ignore[arg-type]
    msg = str(info.value)
    assert "could not download 1 of" in msg and "dpg/dpg_bench.csv" in msg and "HTTP 404" in msg
    assert "TencentQQGYLab/ELLA" in msg and "\n" not in msg
    # everything else was fetched and kept
    assert (tmp_path / "dpg/dpg_bench.json").is_file() and missing(tmp_path) == []
