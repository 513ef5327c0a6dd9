"""Hostile and malformed input (#23): study files and query filters.

Each file of the corpus is refused with one line ``file:line:col: message``, exit status 2, no traceback
and nothing written, under 2 s and 500 MB (measured in-process around the loader and the planner; the
CLI's own start-up is measured separately in subprocesses, under a looser bound). A Hypothesis fuzz test
feeds mutated real study files, random bytes and random YAML trees to the loader and the planner.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from i1lab.cli.main import main
from i1lab.errors import I1labError, SpecError
from i1lab.plan.planner import expand
from i1lab.registry.query import MAX_FILTER_DEPTH, parse
from i1lab.spec import load_study

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
SECONDS = 2.0
PEAK_BYTES = 500 * 2**20
CLI_SECONDS = 10.0  # a fresh interpreter importing i1lab, on a busy machine


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


RSS_AT_IMPORT = maxrss_bytes()


def laughs(levels: int = 10) -> str:
    lines = ["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "run:\n  model:\n" + "".join(f"    {line}\n" for line in lines)


def chain(tmp: Path, n: int) -> Path:
    for i in range(n):
        (tmp / f"c{i}.yaml").write_text(f"extends: c{i + 1}.yaml\n" if i < n - 1 else "study: end\n")
    return tmp / "c0.yaml"


def cycle(tmp: Path) -> Path:
    (tmp / "a.yaml").write_text("extends: b.yaml\n")
    (tmp / "b.yaml").write_text("extends: a.yaml\n")
    return tmp / "a.yaml"


def grid_bomb() -> str:
    """Seven axes of 50 values: 7.8e11 runs from twenty lines."""
    fields = ["train.seed", "train.steps", "train.lr", "data.resolution", "sampling.steps", "sampling.seed"]
    fields.append("sampling.cfg_scale")
    return "max_runs: 100000\ngrid:\n" + "".join(
        f"  {f}: [{', '.join(str(i + 1) for i in range(50))}]\n" for f in fields
    )


# name -> (file content: text, bytes or a writer of files; the start of the message, alternatives split by |)
CORPUS: dict[str, tuple[str | bytes | Callable[[Path], Path], str]] = {
    "billion_laughs": (laughs(), "too many YAML nodes"),
    "recursive_alias": ("run: &r\n  model: *r\n", "recursive alias *r"),
    "recursive_list": ("axes: &a {x: [*a]}\n", "recursive alias *a"),
    "alias_depth": (
        "a: &a " + "[" * 40 + "1" + "]" * 40 + "\nb: " + "[" * 40 + "*a" + "]" * 40 + "\n",
        "nested",
    ),
    "deep_lists": (
        "run: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "nested deeper than 64|invalid YAML: exceeded maximum nesting",
    ),
    "deep_maps": ("run: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n", "nested deeper than 64"),
    "deep_block_maps": ("".join(" " * i + f"k{i}:\n" for i in range(100)) + " " * 100 + "x: 1\n", "nested"),
    "two_documents": ("study: a\n---\nstudy: b\n", "a study file holds 1 YAML document"),
    "five_mb": ("# " + "x" * (5 * 2**20) + "\n", "more than 1048576 bytes"),
    "megabyte_scalar": ("description: " + "x" * (2**20 - 100) + "\n", "a scalar of"),
    "many_nodes": ("description: [" + ",".join(["1"] * 200_000) + "]\n", "too many YAML nodes"),
    "wide_mapping": ("run:\n" + "".join(f"  k{i}: {i}\n" for i in range(24_000)), "k0: unknown key"),
    "ten_to_100000": ("seeds: [1" + "0" * 100_000 + "]\n", "a scalar of"),
    "ten_to_1000": ("seeds: [1" + "0" * 1_000 + "]\n", "an integer of 1001 characters"),
    "int_2_63": ("seeds: [9223372036854775808]\n", "an integer out of range"),
    "sexagesimal_int": ("seeds: [" + ":".join(["59"] * 20) + "]\n", "an integer out of range"),
    "python_apply": ("run: !!python/object/apply:os.system ['touch /tmp/pwned']\n", "YAML tag"),
    "python_name": ("run: !!python/name:os.system\n", "YAML tag"),
    "custom_tag": ("run: !mine {a: 1}\n", "YAML tag '!mine'"),
    "binary_tag": ("description: !!binary aGVsbG8=\n", "YAML tag"),
    "tag_directive": ("%TAG !e! tag:evil.example,2000:\n---\nrun: !e!x {}\n", "YAML tag"),
    "invalid_utf8": (b"study: a\ndescription: caf\xe9\n", "not UTF-8: byte 0xe9"),
    "utf16": ("study: a\n".encode("utf-16"), "the file is UTF-16"),
    "nul_byte": ("study: a\x00\n", "invalid YAML"),
    "merge_key": ("a: &a {x: 1}\nb: {<<: *a}\n", "YAML merge keys"),
    "complex_key": ("? [a, b]\n: 1\n", "mapping keys must be plain strings"),
    "extends_cycle": (cycle, "extends: extends cycle"),
    "extends_chain_50": (lambda tmp: chain(tmp, 50), "extends: extends chain longer than 16"),
    "extends_device": ("extends: /dev/zero\n", "extends: file not found"),
    "extends_long_name": ("extends: " + "x" * 5000 + "\n", "extends: "),
    "grid_bomb": (grid_bomb(), "max_runs: the study expands to 781250000000 runs"),
    "max_runs_huge": ("max_runs: 1000000000000\n", "max_runs: Input should be less than or equal"),
}
LOCATED = re.compile(r"^(?P<file>[^:]+):\d+:\d+: ")


def write_case(tmp: Path, name: str) -> Path:
    content = CORPUS[name][0]
    if callable(content):
        return content(tmp)
    path = tmp / f"{name}.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def load_and_plan(path: Path) -> None:
    expand(load_study(path), None)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_study_file_is_one_line_fast_and_small(name: str, tmp_path: Path) -> None:
    path = write_case(tmp_path, name)
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        load_and_plan(path)
    elapsed = time.perf_counter() - start
    tracemalloc.start()  # a second time, traced (tracing slows it down several times)
    try:
        with pytest.raises(SpecError):
            load_and_plan(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    m = LOCATED.match(message)
    assert m is not None and Path(m["file"]).parent == tmp_path, message
    assert message[m.end() :].startswith(tuple(CORPUS[name][1].split("|"))), message
    assert elapsed < SECONDS and peak < PEAK_BYTES, (elapsed, peak)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_study_file_through_the_cli(
    name: str, tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`i1lab plan FILE` (the CLI's entry point, in this process): exit 2, one line, nothing written."""
    path = write_case(tmp_path, name)
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.setattr(sys, "argv", ["i1lab", "plan", str(path)])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    assert info.value.code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith(f"error: {tmp_path}/"), captured.err
    assert not home.exists() and sorted(tmp_path.rglob("*")) == before


def run_cli(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "I1LAB_HOME": str(cwd / "home")}
    env.pop("I1LAB_DATABASE_URL", None)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "i1lab", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    return done, time.perf_counter() - start


SUBPROCESS_CASES = [
    "billion_laughs",
    "recursive_alias",
    "deep_lists",
    "python_apply",
    "five_mb",
    "extends_cycle",
]


def test_hostile_study_files_in_subprocesses(tmp_path: Path) -> None:
    """The real CLI in fresh interpreters (two at a time): exit 2, one line on stderr, nothing written."""
    dirs = {name: tmp_path / name for name in SUBPROCESS_CASES}
    for name, folder in dirs.items():
        folder.mkdir()
        dirs[name] = write_case(folder, name)
    with ThreadPoolExecutor(2) as pool:
        results = dict(
            zip(dirs, pool.map(lambda p: run_cli(["plan", str(p)], p.parent), dirs.values()), strict=True)
        )
    for name, (done, elapsed) in results.items():
        folder = dirs[name].parent
        assert done.returncode == 2, (name, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith(f"error: {folder}/"), done.stderr
        assert not (folder / "home").exists() and not (folder / ".i1lab").exists()
        assert elapsed < CLI_SECONDS, (name, elapsed)


# --- query filters ---------------------------------------------------------------------------------
HOSTILE_FILTERS: dict[str, tuple[str, str]] = {
    "long": ("name = a or " * 1_000 + "name = a", "the filter has 12008 characters"),
    "deep_parens": ("(" * 10_000 + "name = a" + ")" * 10_000, "the filter has"),
    "parens_65": ("(" * 65 + "name = a" + ")" * 65, f"nested deeper than {MAX_FILTER_DEPTH} levels"),
    "nots": ("not " * 2_000 + "name = a", f"nested deeper than {MAX_FILTER_DEPTH} levels"),
    "long_word": ("name = " + "x" * 2_000, "a word of 2000 characters"),
    "long_string": ("name = '" + "x" * 5_000 + "'", "a string of more than 1024"),
    "long_field": ("a" * 3_000 + " = 1", "a word of 3000 characters"),
    "huge_in": ("id in (" + ",".join(["1"] * 1_500) + ")", "more than 1000 values"),
    "many_terms": (" or ".join(["id = 1"] * 300), "more than 256 comparisons"),
    "huge_number": ("train.lr < 1" + "0" * 5_000, "a word of 5001 characters"),
    "unterminated": ("name = '" + "x" * 100, "unterminated string"),
    "nul": ("name = a\x00b", "unprintable character"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILTERS))
def test_hostile_filter_is_one_line_and_writes_nothing(
    name: str, home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expr, expected = HOSTILE_FILTERS[name]
    start = time.perf_counter()
    with pytest.raises(I1labError) as info:
        parse(expr)
    assert time.perf_counter() - start < SECONDS
    message = str(info.value)
    assert "\n" not in message and re.match(r"query: column \d+: ", message), message
    assert expected in message, message
    monkeypatch.setattr(sys, "argv", ["i1lab", "query", expr])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: query: column "), captured.err
    assert not home.exists()  # the registry is opened only for a filter that reads


def test_hostile_filters_in_subprocesses(tmp_path: Path) -> None:
    exprs = [HOSTILE_FILTERS["nots"][0], HOSTILE_FILTERS["huge_in"][0]]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda e: run_cli(["query", e], tmp_path), exprs))
    for done, elapsed in results:
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("error: query: column ") and "Traceback" not in done.stderr
        assert elapsed < CLI_SECONDS
    assert not (tmp_path / "home").exists()


def test_nesting_at_the_limit_runs_on_sqlite(home: Path) -> None:
    """Filters nested as deep as the parser allows still compile and run on SQLite (whose SQL parser has a
    small stack): same-kind nesting is flattened, and what remains nests at most MAX_FILTER_DEPTH deep."""
    from i1lab.registry import Registry
    from i1lab.registry.query import runs_frame

    registry = Registry()
    half = MAX_FILTER_DEPTH // 2
    for expr in (
        "not " * MAX_FILTER_DEPTH + "name = a",
        "".join(f"(name = a{i} or " for i in range(MAX_FILTER_DEPTH)) + "id = 1" + ")" * MAX_FILTER_DEPTH,
        "".join(f"(score:g/m > {i} and (name = x or " for i in range(half)) + "id = 3" + "))" * half,
        "".join(f"not (score:g/m > {i} or " for i in range(half)) + "status = queued" + ")" * half,
    ):
        assert len(runs_frame(expr, ["g/m"], registry=registry)) == 0


# --- fuzzing ---------------------------------------------------------------------------------------
REAL = sorted(p.name for p in EXPERIMENTS.glob("*.yaml"))
HOSTILE_SNIPPETS = [
    "&a ", "*a", "*b", "&b [*a, *a, *a]", "!!python/object:os.system ", "!x ", "!!binary ", "<<: ",
    "---\n", "...\n", "%TAG ! tag:x,1:\n", "[" * 100, "{a: " * 80, "\t", "\x00", "\ufeff", "? ", ": ",
    "1" + "0" * 200, "0x" + "f" * 30, "1:2:3:4:5:6:7:8:9:10:11:12:13", "extends: baseline.yaml\n",
    "extends: nowhere.yaml\n", "max_runs: 100000\n", "grid: {train.seed: [1, 2, 3]}\n",
    "'", '"', "|\n", ">-\n",
]  # fmt: skip


def check_fails_cleanly(path: Path) -> None:
    start = time.perf_counter()
    try:
        load_and_plan(path)
    except I1labError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message and "Traceback" not in message
        if isinstance(exc, SpecError) and exc.where is not None:
            assert LOCATED.match(message) or message.startswith(str(exc.where)), message
    assert time.perf_counter() - start < SECONDS
    assert maxrss_bytes() - RSS_AT_IMPORT < PEAK_BYTES  # the process's peak never grew by 500 MB


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    for name in REAL:
        shutil.copy(EXPERIMENTS / name, folder / name)
    return folder


@settings(
    max_examples=120,
    deadline=SECONDS * 1000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzz_mutated_real_study_files(fuzz_dir: Path, data: st.DataObject) -> None:
    text = (EXPERIMENTS / data.draw(st.sampled_from(REAL), label="file")).read_text()
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        at = data.draw(st.integers(0, len(text)), label="at")
        cut = data.draw(st.integers(0, 40), label="cut")
        insert = data.draw(st.one_of(st.sampled_from(HOSTILE_SNIPPETS), st.text(max_size=8)), label="insert")
        text = text[:at] + insert + text[at + cut :]
    path = fuzz_dir / "mutated.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_fails_cleanly(path)


@settings(
    max_examples=60, deadline=SECONDS * 1000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=600))
def test_fuzz_random_bytes(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "bytes.yaml"
    path.write_bytes(raw)
    check_fails_cleanly(path)


ANCHORS = st.sampled_from(["a", "b", "c"])
SCALAR_TEXT = st.one_of(
    st.sampled_from(
        ["1", "-0", "1e309", "0x1F", "0o17", "~", "null", "yes", "2024-01-01", "=", "'x'", '"y"']
    ),
    st.integers(-(2**70), 2**70).map(str),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,10}", fullmatch=True),
)
TAGS = st.sampled_from(
    ["", "", "", "!!str ", "!!int ", "!!map ", "!!seq ", "!!set ", "!x ", "!!python/tuple "]
)


def node(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(inner, max_size=5).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(st.tuples(SCALAR_TEXT, inner), max_size=5).map(
            lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"
        ),
        st.tuples(st.sampled_from(["&", "*"]), ANCHORS, TAGS, inner).map(
            lambda t: f"*{t[1]}" if t[0] == "*" else f"&{t[1]} {t[2]}{t[3]}"
        ),
    )


YAML_TREES = st.recursive(SCALAR_TEXT, node, max_leaves=40)
TOP_KEYS = st.sampled_from(
    ["run", "axes", "grid", "seeds", "variants", "profiles", "description", "x", "extends"]
)


@settings(
    max_examples=120, deadline=SECONDS * 1000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=st.lists(st.tuples(TOP_KEYS, YAML_TREES), max_size=5))
def test_fuzz_random_yaml_trees(tmp_path: Path, items: list[tuple[str, str]]) -> None:
    path = tmp_path / "tree.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in items))
    check_fails_cleanly(path)
