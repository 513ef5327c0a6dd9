"""Hostile and malformed input (#23) on every surface besides study files and query filters (those are
``test_hostile_input.py``): ``import-results`` files, ``import-i1`` configs, checkpoints (``.npz``,
``.pt``), benchmark outputs read by ``i1lab score``, the dashboard's request values and the environment
variables that carry paths, URLs and numbers.

Each file of the corpus is refused with one line naming what is wrong and where, exit status 2, no
traceback and nothing written, under 2 s and 500 MB: measured in-process around the reader (time on a
plain call, peak memory on a second call under tracemalloc), through the CLI's entry point in this
process (``main()`` with ``sys.argv``), and for two cases in fresh interpreters. Hypothesis fuzzes the
``import-i1`` config reader with mutated real configs, random bytes and generated hostile expressions.
This module runs in the parallel part of the suite; its bounds are loose enough for a busy machine.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from i1lab.cli.main import main
from i1lab.environ import EnvironmentVariableError, check_environment
from i1lab.errors import I1labError
from i1lab.i1import.knobs import import_config
from i1lab.i1import.sources import ConversionError, NpzArchive, load_pt
from i1lab.registry.importer import read_results
from tests.dashboard.test_app import post_callback

REPO = Path(__file__).resolve().parents[2]
SECONDS = 2.0
PEAK_BYTES = 500 * 2**20
CLI_SECONDS = 10.0  # a fresh interpreter importing i1lab, on a busy machine

Content = str | bytes | Callable[[Path], Path]

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write(folder: Path, name: str, content: Content) -> Path:
    if callable(content):
        return content(folder)
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    return path


def sparse(size: int, name: str) -> Callable[[Path], Path]:
    """A file of ``size`` bytes that takes no disk space (its size is what a reader must refuse)."""

    def make(folder: Path) -> Path:
        path = folder / name
        with path.open("wb") as f:
            f.truncate(size)
        return path

    return make


def refused(call: Callable[[], object], kind: type[BaseException] = I1labError) -> tuple[str, float, int]:
    """The message of the error ``call`` raises, its time, and its peak traced memory (a second call)."""
    start = time.perf_counter()
    with pytest.raises(kind) as info:
        call()
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    try:
        with pytest.raises(kind):
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert message and "\n" not in message and "Traceback" not in message, message
    assert elapsed < SECONDS and peak < PEAK_BYTES, (elapsed, peak)
    return message, elapsed, peak


def cli(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """``i1lab ARGS`` through its entry point in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["i1lab", *args])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def one_line_error(code: int, out: str, err: str, start: str) -> None:
    assert code == 2 and out == "", (code, out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {start}"), err


def tree(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


# --- import-results --------------------------------------------------------------------------------
def line(**fields: Any) -> str:
    base: dict[str, Any] = {"study": "s", "name": "n", "spec": {"train.lr": 0.001}}
    return json.dumps({**base, **fields})


GOOD_LINE = line(scores=[{"benchmark": "geneval", "metric": "overall", "value": 0.5, "step": 10}])
SCORE = {"benchmark": "g", "metric": "m", "value": 0.5}

# name -> (file content, line of the error (0: the file as a whole), the start of the message)
RESULTS: dict[str, tuple[Content, int, str]] = {
    "sparse_100_mb": (sparse(100 * 2**20, "big.jsonl"), 0, "104857600 bytes (at most 67108864)"),
    "long_line": (GOOD_LINE + "\n" + line(name="x" * (2**20)) + "\n", 2, "a line of 1048631 characters"),
    "deep_json": (
        GOOD_LINE + "\n" + '{"study": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
        2,
        "not valid JSON (nested deeper than 16 levels)",
    ),
    "deep_spec": (line(spec={"a": json.loads("[" * 20 + "]" * 20)}), 1, "nested deeper than 16 levels"),
    "wrong_type": (line(study=5), 1, "'study' must be a non-empty string"),
    "spec_not_object": (line(spec=[1, 2]), 1, "'spec' must be a non-empty object"),
    "unknown_key": (line(x=1), 1, "unknown key 'x'"),
    "unknown_score_key": (line(scores=[{**SCORE, "step": 1, "y": 2}]), 1, "scores[0]: unknown key 'y'"),
    "duplicate_run": (GOOD_LINE + "\n\n" + GOOD_LINE + "\n", 3, "s/n is already on line 1"),
    "duplicate_key": ('{"study": "a", "study": "b", "name": "n", "spec": {"a": 1}}\n', 1, "not valid JSON"),
    "non_utf8": (GOOD_LINE.encode() + b'\n{"study": "caf\xe9"}\n', 2, "not UTF-8 (byte 0xe9 at column 15)"),
    "utf16": (GOOD_LINE.encode("utf-16"), 1, "not UTF-8 (byte 0xff at column 1)"),
    "nan": (line(spec={"train.lr": float("nan")}), 1, "not valid JSON (NaN is not a number JSON allows)"),
    "infinity_literal": ('{"study": "s", "name": "n", "spec": {"a": Infinity}}', 1, "not valid JSON"),
    "overflowing_float": ('{"study": "s", "name": "n", "spec": {"a": 1e999}}', 1, "the number inf is out"),
    "score_overflow": (line(scores=[{**SCORE, "value": 1e999, "step": 1}]).replace("Infinity", "1e999"), 1,
                       "scores[0]: 'value' must be a finite number"),
    "int_2_63": (line(params=2**63), 1, "not valid JSON (the integer 9223372036854775808 is out of range"),
    "int_5000_digits": ('{"study": "s", "name": "n", "params": 1' + "0" * 5000 + ', "spec": {"a": 1}}', 1,
                        "not valid JSON (the integer 1000"),
    "long_string": (line(name="n" * 5000), 1, "a string of 5000 characters (at most 4096)"),
    "long_key": (line(spec={"k" * 5000: 1}), 1, "a string of 5000 characters"),
    "many_spec_keys": (line(spec={f"k{i}": i for i in range(1001)}), 1, "'spec' has 1001 keys (at most"),
    "many_scores": (line(scores=[{**SCORE, "step": i} for i in range(10_001)]), 1,
                    "'scores' has 10001 entries (at most 10000)"),
    "repeated_score": (line(scores=[{**SCORE, "step": 1}] * 2), 1, "scores[1] repeats scores[0]"),
    "many_lines": ("\n" * 100_001, 100_001, "more than 100000 lines"),
    "lone_surrogate": ('{"study": "s", "name": "n", "spec": {"a": "\\ud800"}}', 1, "the string '\\ud800'"),
    "nul_in_name": ('{"study": "s", "name": "n\\u0000", "spec": {"a": 1}}', 1, "'name' contains an"),
    "not_an_object": ("[1, 2, 3]\n", 1, "each line must be a JSON object"),
    "spec_key_clash": (line(spec={"a": 1, "a.b": 2}), 1, "spec key 'a.b' goes inside 'a'"),
    "empty": ("\n\n", 0, "no results"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_hostile_results_file_is_one_line_fast_and_small(
    name: str,
    tmp_path: Path,
    home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    content, number, expected = RESULTS[name]
    path = write(tmp_path, "results.jsonl", content)
    message, _, _ = refused(lambda: read_results(path))
    where = f"{path}:{number}: " if number else f"{path}: "
    assert message.startswith(where + expected), message
    before = tree(tmp_path)
    code, out, err = cli(["import-results", str(path)], capsys, monkeypatch)
    one_line_error(code, out, err, where)
    assert not home.exists() and tree(tmp_path) == before  # the registry is opened only after the check


def test_a_device_is_not_read_as_results(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    message, _, _ = refused(lambda: read_results(Path("/dev/zero")))
    assert message == "/dev/zero: not a regular file"
    code, out, err = cli(["import-results", "/dev/zero"], capsys, monkeypatch)
    one_line_error(code, out, err, "/dev/zero: not a regular file")
    assert not home.exists()


def test_a_good_file_at_the_limits_imports(home: Path, tmp_path: Path) -> None:
    """The bounds refuse hostile files, not large honest ones: 4096-character names, 1000 spec keys,
    2**63 - 1, JSON nested 16 deep and 10,000 scores import."""
    nested: Any = 1
    for _ in range(13):  # line -> spec -> "deep" -> 13 lists: 16 levels
        nested = [nested]
    text = line(
        name="n" * 4096,
        params=2**63 - 1,
        spec={**{f"k{i}": i for i in range(999)}, "deep": nested},
        scores=[{**SCORE, "step": i} for i in range(10_000)],
    )
    path = write(tmp_path, "ok.jsonl", text + "\n")
    runs = read_results(path)
    assert len(runs) == 1 and len(runs[0].scores) == 10_000 and runs[0].params == 2**63 - 1


JSON_SNIPPETS = [
    "[" * 50, "]" * 50, "{", "}", '"', "\\u0000", "\\ud800", "NaN", "Infinity", "-Infinity", "1e999",
    "9" * 30, "null", "true", ",", ":", '"study": 1, ', '"spec": {}', '"scores": [{}]', '"x": 1, ', "\n",
    '"baseline": "yes", ', '"params": -1, ', "\ufeff", "\x00",
]  # fmt: skip


def check_results_fail_cleanly(path: Path) -> None:
    rss_before = maxrss_bytes()
    start = time.perf_counter()
    try:
        read_results(path)
    except I1labError as exc:
        message = str(exc)
        assert message.startswith(f"{path}") and "\n" not in message and "Traceback" not in message, message
    assert time.perf_counter() - start < SECONDS
    assert maxrss_bytes() - rss_before < PEAK_BYTES


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_results_files(tmp_path: Path, data: st.DataObject) -> None:
    text = GOOD_LINE + "\n" + line(name="m", baseline=True) + "\n"
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        at = data.draw(st.integers(0, len(text)), label="at")
        cut = data.draw(st.integers(0, 20), label="cut")
        insert = data.draw(st.one_of(st.sampled_from(JSON_SNIPPETS), st.text(max_size=6)), label="insert")
        text = text[:at] + insert + text[at + cut :]
    check_results_fail_cleanly(write(tmp_path, "mutated.jsonl", text))


@FUZZ
@given(raw=st.binary(max_size=400))
def test_fuzz_random_bytes_as_results(tmp_path: Path, raw: bytes) -> None:
    check_results_fail_cleanly(write(tmp_path, "bytes.jsonl", raw))


# --- import-i1 configs -----------------------------------------------------------------------------
def _reference_config(tmp: Path) -> str:
    """The text of a real reference config, as the import tests write it (``write_reference_config``)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.models.test_import_i1_config import knobs, write_reference_config

    return write_reference_config(tmp / "cross_attn.py", knobs("cross_attn")).read_text()


def config(*body: str) -> str:
    lines = ["import ml_collections as mlc", "", "def get_config():", "    config = mlc.ConfigDict()"]
    return "\n".join([*lines, *(f"    {b}" for b in body), "    return config", ""])


# name -> (file content, line of the error (0: the file), the start of the message)
CONFIGS: dict[str, tuple[Content, int, str]] = {
    "pow_tower": (config("config.x = 10**10**10"), 5, "exponent or base too large"),
    "huge_literal": (config("config.x = 1" + "0" * 4000), 5, "an integer of more than 256 bits"),
    "squaring": (config("x = 2**60 * 2**60 * 2**60", *["x = x * x"] * 30, "config.x = x"), 6,
                 "an integer of more than 256"),
    "augmented_squaring": (config("x = 2**60", *["x *= x"] * 30), 8, "an integer of more than 256 bits"),
    "range_bomb": (config("config.x = range(10**12)"), 5, "range() of 1000000000000 numbers is too large"),
    "range_sum": (config("config.x = sum(range(10**15))"), 5, "range() of"),
    "comprehension_loop": (
        config("a = list(range(300))", "config.x = [0 for i in a for j in a for k in a if False]"),
        6,
        "the config takes more than 100000 evaluation steps",
    ),
    "nesting_depth": (config("x = [1]", *["x = [x]"] * 40, "config.x = x"), 46, "a value nested deeper"),
    "doubling_wide": (config("x = [1]", *["x = [x, x]"] * 25, "config.x = x"), 31, "the config holds more"),
    "doubling_str": (config("x = [1]", *["x = [x, x]"] * 25, "config.x = str(x)"), 31, "the config's values"),
    "doubling_compare": (config("x = [1]", *["x = [x, x]"] * 25, "config.x = x == x"), 31, "the config's"),
    "deep_plus": (config("config.x = " + "+".join(["1"] * 100_000)), 0, "expressions nested too deeply"),
    "deep_plus_500": (config("config.x = " + "+".join(["1"] * 500)), 5, "an expression nested deeper"),
    "unary_tower": (config("config.x = " + "-" * 100_000 + "1"), 0, "expressions nested too deeply"),
    "attribute_chain": (config("config.x = config" + ".a" * 100_000), 0, "expressions nested too deeply"),
    "parens": (config("config.x = " + "(" * 1000 + "1" + ")" * 1000), 5, "not valid Python"),
    "string_repeat": (config("config.x = 'a' * 10**9"), 5, "sequence repetition too large"),
    "string_doubling": (config("x = 'ab'", *["x = x + x"] * 40, "config.x = x"), 20, "the config builds"),
    "round_huge": (config("config.x = round(5, -10**60)"), 5, "round() to at most 64 digits"),
    "complex": (config("config.x = (-8) ** 0.5"), 5, "the result is a complex number"),
    "sum_of_lists": (config("config.x = sum([[1]] * 1000, [])"), 5, "sum() takes one list"),
    "os_system": ("import os\n\ndef get_config():\n    os.system('touch pwned')\n", 4, "statement `Expr`"),
    "dunder": (config("config.x = ().__class__.__bases__"), 5, "attribute `.__class__` is not evaluated"),
    "lambda": (config("config.x = (lambda: 1)()"), 5, "call of `lambda: 1` is not evaluated"),
    "fstring": (config("config.x = f'{1}'"), 5, "expression `JoinedStr` is not evaluated"),
    "nan": (config("config.x = float('nan')"), 5, "x is not a finite number"),
    "big_file": ("#" + "x" * (2 * 2**20) + "\n", 0, "2097154 bytes (at most 1048576)"),
    "non_utf8": (b"def get_config():\n    x = 'caf\xe9'\n", 2, "not UTF-8 (byte 0xe9 at column 13)"),
    "nul_byte": ("def get_config():\n    x = 1\x00\n", 0, "not valid Python"),
    "no_get_config": ("x = 1\n", 1, "only imports, docstrings"),
    "syntax_warnings": (config("config.x = 1 is 1", "config.y = '\\d'"), 0, "backbone: not set"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_hostile_config_is_one_line_fast_and_small(
    name: str,
    tmp_path: Path,
    home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    content, number, expected = CONFIGS[name]
    path = write(tmp_path, "config.py", content)
    message, _, _ = refused(lambda: import_config(path))
    if number:
        assert message.startswith(f"{path}:{number}: {expected}"), message
    else:
        assert message.startswith(f"{path}:"), message
        assert expected in message, message
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    code, out, err = cli(["import-i1", str(path), "--out", str(tmp_path / "study.yaml")], capsys, monkeypatch)
    one_line_error(code, out, err, f"{path}:")
    assert tree(tmp_path) == before and not home.exists()
    assert not (tmp_path / "pwned").exists()


def test_a_config_compiles_without_warnings(tmp_path: Path) -> None:
    """Python warns about `1 is 1` and `'\\d'` while parsing (printed to stderr outside pytest: a second
    line); the reader parses with warnings silenced."""
    import warnings

    path = write(tmp_path, "config.py", CONFIGS["syntax_warnings"][0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(I1labError):
            import_config(path)
    assert [str(w.message) for w in caught] == []


def test_a_device_is_not_read_as_a_config(tmp_path: Path) -> None:
    message, _, _ = refused(lambda: import_config(Path("/dev/zero")))
    assert message == "/dev/zero: not a regular file"


HOSTILE_CODE = [
    "10**10**10", "2**64**64", "'a' * 10**8", "[0] * 10**8", "range(10**18)", "-" * 500 + "1",
    "(" * 150, "1" + "0" * 5000, "__import__('os')", "open('/etc/passwd')", "x.__class__", "[x, x]",
    "{**x}", "[*x]", "lambda: 0", "yield 1", "await x", "x := 1", "f'{x}'", "\x00", "\ufeff", "\\",
    "round(1, 10**9)", "sum([[1]], [])", "sorted(x)", "str(x)", "x == x", "x in x", "'%s' % x",
    "[i for i in range(10**6)]", "max(range(10**7))", "int('9' * 4000)", "float('inf')", "1e400",
    "(-1) ** 0.5", "x * x", "x + x", "x[::-1]", "x[10**20]", "config.__dict__", "dict(x)", "min()",
]  # fmt: skip


def check_config_fails_cleanly(path: Path) -> None:
    rss_before = maxrss_bytes()  # the process's high-water mark so far (other tests imported torch...)
    start = time.perf_counter()
    try:
        import_config(path)
    except I1labError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message and "Traceback" not in message
        assert message.startswith(f"{path}"), message
    assert time.perf_counter() - start < SECONDS
    assert maxrss_bytes() - rss_before < PEAK_BYTES  # the process's peak did not grow by 500 MB


@pytest.fixture(scope="module")
def reference_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _reference_config(tmp_path_factory.mktemp("reference"))


def test_the_reference_config_imports(reference_text: str, tmp_path: Path) -> None:
    """The fuzz starts from a config that imports (so its mutations test the reader, not a typo)."""
    path = write(tmp_path, "reference.py", reference_text)
    assert import_config(path).spec.model.backbone == "cross_attn"


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_reference_configs(reference_text: str, tmp_path: Path, data: st.DataObject) -> None:
    text = reference_text
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        at = data.draw(st.integers(0, len(text)), label="at")
        cut = data.draw(st.integers(0, 40), label="cut")
        insert = data.draw(st.one_of(st.sampled_from(HOSTILE_CODE), st.text(max_size=8)), label="insert")
        text = text[:at] + insert + text[at + cut :]
    path = write(tmp_path, "mutated.py", text)
    check_config_fails_cleanly(path)


@FUZZ
@given(raw=st.binary(max_size=600))
def test_fuzz_random_bytes_as_a_config(tmp_path: Path, raw: bytes) -> None:
    path = write(tmp_path, "bytes.py", raw)
    check_config_fails_cleanly(path)


NAMES = st.sampled_from(["x", "y", "config", "config.a", "config.b.c", "mlc"])
ATOMS = st.one_of(
    NAMES,
    st.integers(-(2**300), 2**300).map(str),
    st.sampled_from(["1e308", "1e-320", "0.5", "'s'", "''", "None", "True", "[]", "{}", "()"]),
    st.text(alphabet="ab'\"\\{}", max_size=6).map(repr),
)
OPERATORS = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "==", "<", " in ", " and ", " or "])


def expression(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, OPERATORS, inner).map(lambda t: f"({t[0]}{t[1]}{t[2]})"),
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(st.sampled_from(["-", "not ", "+"]), inner).map("".join),
        st.tuples(st.sampled_from(sorted(["len", "str", "sum", "range", "sorted", "min", "max", "int",
                                          "float", "round", "abs", "list", "tuple", "zip", "enumerate",
                                          "dict", "mlc.ConfigDict", "eval", "getattr"])),
                  st.lists(inner, max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.tuples(inner, inner).map(lambda t: f"[{t[0]} for _ in {t[1]}]"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
    )  # fmt: skip


EXPRESSIONS = st.recursive(ATOMS, expression, max_leaves=30)


@FUZZ
@given(body=st.lists(st.tuples(NAMES, st.sampled_from(["=", "+=", "*=", "**="]), EXPRESSIONS), max_size=8))
def test_fuzz_generated_config_expressions(tmp_path: Path, body: list[tuple[str, str, str]]) -> None:
    path = write(
        tmp_path, "generated.py", config("x = [1, 2]", "y = 'ab'", *(f"{a} {o} {e}" for a, o, e in body))
    )
    check_config_fails_cleanly(path)


# --- checkpoints -----------------------------------------------------------------------------------
def npy_bytes(array: np.ndarray, header_shape: tuple[int, ...] | None = None, descr: str = "") -> bytes:
    """The ``.npy`` bytes of ``array``; with ``header_shape`` or ``descr`` its header lies."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=True)
    raw = buf.getvalue()
    if header_shape is None and not descr:
        return raw
    header = {
        "descr": descr or np.lib.format.dtype_to_descr(array.dtype),
        "fortran_order": False,
        "shape": header_shape if header_shape is not None else array.shape,
    }
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)
    data_at = len(raw) - array.nbytes
    return out.getvalue() + raw[data_at:]


def npz(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "checkpoint.npz"
        with zipfile.ZipFile(path, "w", compression=compression) as z:
            for name, data in members:
                z.writestr(name, data)
        return path

    return make


def corrupt_member(folder: Path) -> Path:
    """A compressed member whose deflate stream is damaged (the zip's directory intact)."""
    values = np.random.default_rng(0).random(100_000).astype(np.float32)
    path = npz([("params/w.npy", npy_bytes(values))], zipfile.ZIP_DEFLATED)(folder)
    raw = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).infolist()[0]
    start = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    raw[start : start + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))
    return path


def truncated(folder: Path) -> Path:
    path = npz([("params/w.npy", npy_bytes(np.zeros(1000, np.float32)))])(folder)
    path.write_bytes(path.read_bytes()[:2500])
    return path


SMALL = np.zeros(4, np.float32)
TERABYTE = (2**20, 2**18)  # float32: 1 TiB

# name -> (file, the start of the message after "<path>: ", whether it is refused only on reading)
CHECKPOINTS: dict[str, tuple[Callable[[Path], Path], str, bool]] = {
    "terabyte_header": (npz([("params/w.npy", npy_bytes(SMALL, TERABYTE))]),
                        "params/w: its header claims 1099511627776 bytes of data", False),
    "terabyte_header_compressed": (npz([("params/w.npy", npy_bytes(SMALL, TERABYTE))], zipfile.ZIP_DEFLATED),
                                   "params/w: its header claims 1099511627776 bytes", False),
    "overflowing_shape": (npz([("w.npy", npy_bytes(SMALL, (2**62, 2**62)))]), "w: its header claims", False),
    "negative_shape": (npz([("w.npy", npy_bytes(SMALL, (-1, 4)))]), "w: its header has a negative dimension",
                       False),
    "short_data": (npz([("w.npy", npy_bytes(SMALL, (8,)))]), "w: its header claims 32 bytes of data", False),
    "pickle": (npz([("opt/x.npy", npy_bytes(np.array([{"a": 1}], dtype=object)))]),
               "opt/x holds Python objects (a pickle); refused", False),
    "duplicate_member": (npz([("w.npy", npy_bytes(SMALL)), ("w.npy", npy_bytes(SMALL))]),
                         "member w appears twice", False),
    "bad_header": (npz([("params/b.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}     \n")]),
                   "not a readable .npz archive (member params/b)", False),
    "not_npy": (npz([("params/b.npy", b"hello")]), "not a readable .npz archive (member params/b)", False),
    "truncated": (truncated, "not a readable .npz archive", False),
    "not_a_zip": (lambda folder: write(folder, "c.npz", os.urandom(4096)), "not a readable .npz archive",
                  False),
    "corrupt_member": (corrupt_member, "cannot read params/w (", True),
}  # fmt: skip


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_hostile_npz_is_one_line_fast_and_small(name: str, tmp_path: Path) -> None:
    make, expected, on_read = CHECKPOINTS[name]
    path = make(tmp_path)

    def open_and_read() -> None:
        with NpzArchive(path) as archive:
            for key in archive.files:
                archive.read(key)

    message, _, _ = refused(open_and_read if on_read else lambda: NpzArchive(path), ConversionError)
    assert message.startswith(f"{path}: {expected}"), message


def test_a_zip_directory_too_large_is_refused_before_it_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end record's count and size of the zip directory are checked before `zipfile` builds an entry
    per member: a forged record claiming 4 GB of directory, and more members than allowed, are one line."""
    from i1lab.i1import import sources

    path = npz([("w.npy", npy_bytes(SMALL))])(tmp_path)
    raw = bytearray(path.read_bytes())
    end = raw.rfind(b"PK\x05\x06")
    raw[end + 12 : end + 16] = (0xFFFFFFFE).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    message, _, _ = refused(lambda: NpzArchive(path), ConversionError)
    assert (
        message
        == f"{path}: its zip directory lists 1 members in 4294967294 bytes (at most 200000 members); not read"
    )
    monkeypatch.setattr(sources, "MAX_MEMBERS", 10)
    many = npz([(f"m{i}.npy", npy_bytes(SMALL)) for i in range(11)])(tmp_path)
    message, _, _ = refused(lambda: NpzArchive(many), ConversionError)
    assert message.startswith(f"{many}: its zip directory lists 11 members in "), message


def test_an_honest_npz_reads_with_its_members_checked(tmp_path: Path) -> None:
    """The header checks refuse lies, not the layouts numpy writes (stored, compressed, bfloat16 as V2,
    Fortran order, 0-d and empty arrays)."""
    arrays = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "f": np.asfortranarray(np.ones((3, 2), np.float16)),
        "s": np.array(7, np.int64),
        "e": np.zeros((0, 5), np.float32),
        "v": np.zeros(3, np.dtype("V2")),
    }
    for saver in (np.savez, np.savez_compressed):
        path = tmp_path / f"{saver.__name__}.npz"
        saver(path, **arrays)  # type: ignore[operator]
        with NpzArchive(path) as archive:
            assert sorted(archive.files) == sorted(arrays)
            for key, value in arrays.items():
                assert archive.read(key).shape == value.shape


def test_the_converter_checks_shapes_before_reading_any_tensor(tmp_path: Path) -> None:
    """`import-i1 --checkpoint` with an honest-looking member of the wrong shape: refused from the headers,
    naming the member, before any tensor is read."""
    reads: list[str] = []
    path = npz([("params/pos_embed.npy", npy_bytes(np.zeros((3, 3), np.float32)))])(tmp_path)
    with NpzArchive(path) as archive:
        original = archive.read
        archive.read = lambda key: reads.append(key) or original(key)  # type: ignore[method-assign]
        from i1lab.i1import.convert import read_npz
        from i1lab.spec.model import model_config
        from i1lab.spec.run import RunSpec

        config = model_config(RunSpec.model_validate({"model": {"size": "tiny"}, "data": {"resolution": 16}}))
        with pytest.raises(ConversionError) as info:
            read_npz(path, config, "float32", archive)
    message = str(info.value)
    assert message.startswith(f"{path}: does not match the model: ") and "\n" not in message
    assert "params/pos_embed (3, 3) != " in message and reads == []


def test_forward_inputs_are_checked_like_checkpoints(tmp_path: Path) -> None:
    """`i1lab forward --inputs X.npz` loads with ``np.load(allow_pickle=False)`` after the same header
    checks: a member claiming a terabyte is one line naming it, with nothing allocated."""
    from types import SimpleNamespace

    from i1lab.evaluation.forward import read_inputs

    path = npz([("x.npy", npy_bytes(SMALL, TERABYTE)), ("t.npy", npy_bytes(SMALL))])(tmp_path)
    message, _, _ = refused(lambda: read_inputs(path, SimpleNamespace(encoder_specs=[(8, 4)])))
    assert message.startswith(f"{path}: x: its header claims 1099511627776 bytes of data"), message
    pickled = npz([("x.npy", npy_bytes(np.array([None], dtype=object)))])(tmp_path)
    message, _, _ = refused(lambda: read_inputs(pickled, SimpleNamespace(encoder_specs=[(8, 4)])))
    assert message == f"{pickled}: x holds Python objects (a pickle); refused (allow_pickle=False)"


def test_hostile_pt_files_are_one_line(tmp_path: Path) -> None:
    """``.pt`` is read with ``weights_only`` (no pickled code runs) and memory-mapped; a pickle that would
    run code, a truncated file, a storage shorter than its tensor and a legacy pickle are one line each."""
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    torch.save({"model": {"w": torch.zeros(3)}, "x": Evil()}, tmp_path / "evil.pt")
    torch.save({"model": {"w": torch.zeros(1000)}}, tmp_path / "good.pt")
    good = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "legacy.pt").write_bytes(b"\x80\x04\x95" + os.urandom(200))
    with zipfile.ZipFile(tmp_path / "good.pt") as src, zipfile.ZipFile(tmp_path / "short.pt", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[:8] if "/data/" in info.filename and "serialization" not in info.filename
                         else data)  # fmt: skip
    for name in ("evil", "truncated", "legacy", "short"):
        path = tmp_path / f"{name}.pt"
        message, _, _ = refused(lambda p=path: load_pt(p), ConversionError)  # type: ignore[misc]
        assert message.startswith(f"{path}: cannot read the checkpoint safely ("), message
    assert not marker.exists()


# --- benchmark outputs read by `i1lab score` -------------------------------------------------------
DEEP_LINE = "[" * 100_000 + "]" * 100_000
SCORES: dict[str, tuple[str, str, Content, str]] = {
    # name -> (benchmark, file name, content, the message after "<path>")
    "geneval_sparse_300_mb": ("geneval", "results.jsonl", sparse(300 * 2**20, "results.jsonl"),
                              ": 314572800 bytes, more than the 268435456 bytes allowed"),
    "geneval_deep": ("geneval", "results.jsonl", DEEP_LINE + "\n", ":1: not valid JSON (nested deeper than"),
    "geneval_deep_65": ("geneval", "results.jsonl", "[" * 65 + "]" * 65 + "\n", ":1: not valid JSON (nested"),
    "geneval_non_utf8": ("geneval", "results.jsonl", b'{"filename": "a"}\n{"tag": "caf\xe9"}\n',
                         ":2: not UTF-8 (byte 0xe9 at column 13)"),
    "geneval_long_line": ("geneval", "results.jsonl", '{"a": "' + "x" * (17 * 2**20) + '"}\n',
                          ":1: a line of more than 16777216 characters"),
    "longtext_deep": ("longtext", "results.jsonl", '{"a": 1}\n' + DEEP_LINE + "\n", ":2: not valid JSON"),
    "longtext_utf16": ("longtext", "results.jsonl", '{"a": 1}\n'.encode("utf-16"), ":1: not UTF-8 (byte"),
    "cvtg_deep": ("cvtg", "results.json", '{"overall_results": ' + DEEP_LINE + "}", ": not valid JSON"),
    "cvtg_non_utf8": ("cvtg", "per_image.jsonl", b"\xff\xfe", ":1: not UTF-8 (byte 0xff at column 1)"),
    "prism_deep": ("prism", "replies.jsonl", DEEP_LINE + "\n", ":1: not valid JSON (nested deeper than 64"),
    "dpg_non_utf8": ("dpg", "x_results.txt", b"a.png, 1.0\n\xc3\x28\n", ":2: not UTF-8 (byte 0xc3 at"),
    "dpg_sparse": ("dpg", "x_results.txt", sparse(300 * 2**20, "x_results.txt"), ": 314572800 bytes, more"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SCORES))
def test_hostile_benchmark_output_is_one_line_fast_and_small(
    name: str,
    tmp_path: Path,
    home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from i1lab.cli.common import out as console
    from i1lab.evaluation.scores import score_command

    bench, filename, content, expected = SCORES[name]
    path = write(tmp_path, filename, content)
    message, _, _ = refused(
        lambda: score_command(
            bench, path, as_json=False, run=None, step=None, benchmarks_dir=None, console=console
        )
    )
    assert message.startswith(f"score {bench}: {path}{expected}"), message
    before = tree(tmp_path)
    code, out, err = cli(["score", bench, str(path)], capsys, monkeypatch)
    one_line_error(code, out, err, f"score {bench}: {path}")
    assert tree(tmp_path) == before and not home.exists()


GENEVAL_ROW = {"filename": "a", "tag": "single_object", "prompt": "p", "correct": True, "reason": "",
               "metadata": "{}", "details": "{}"}  # fmt: skip
PROMPT_FILES: dict[str, tuple[Content, str]] = {
    # the official metadata file in --benchmarks-dir -> the message after "<its path>"
    "deep": (DEEP_LINE + "\n", ": not valid JSON (nested deeper than 64 levels)"),
    "non_utf8": (b'{"tag": "caf\xe9"}\n', ":1: not UTF-8 (byte 0xe9 at column 13)"),
    "sparse": (sparse(300 * 2**20, "evaluation_metadata.jsonl"), ": 314572800 bytes, more than"),
}


@pytest.mark.parametrize("name", sorted(PROMPT_FILES))
def test_hostile_benchmark_prompt_file_is_one_line(
    name: str,
    tmp_path: Path,
    home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`i1lab score` also reads the benchmark's own files (here GenEval's metadata, from --benchmarks-dir):
    bounded the same way, one line naming that file."""
    content, expected = PROMPT_FILES[name]
    (tmp_path / "geneval").mkdir()
    metadata = write(tmp_path / "geneval", "evaluation_metadata.jsonl", content)
    results = write(tmp_path, "results.jsonl", json.dumps(GENEVAL_ROW) + "\n")
    start = time.perf_counter()
    args = ["score", "geneval", str(results), "--benchmarks-dir", str(tmp_path)]
    code, out, err = cli(args, capsys, monkeypatch)
    assert time.perf_counter() - start < SECONDS
    one_line_error(code, out, err, f"score geneval: {metadata}{expected}")
    assert not home.exists()


# --- the dashboard's request values ----------------------------------------------------------------
@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The dashboard over a registry holding one imported study of two runs (built once: the requests
    only read it)."""
    from dashboards.app import create_app
    from dashboards.data import Mlflow, Source
    from i1lab.registry import Registry
    from i1lab.registry.importer import import_results

    folder = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{folder / 'registry.db'}"
    rows = [line(name=n, baseline=n == "base", spec={"train.lr": lr}, scores=[{**SCORE, "step": 1}])
            for n, lr in (("base", 0.001), ("other", 0.002))]  # fmt: skip
    import_results(write(folder, "r.jsonl", "\n".join(rows) + "\n"), Registry(url))
    mlflow = Mlflow(f"sqlite:///{folder / 'mlflow.db'}", "http://127.0.0.1:5000")
    client = create_app(Source.open(url, mlflow)).server.test_client()
    warm_up = [  # the first pages and figures import the report and plotting modules
        ("page.children", {"url.pathname": "/"}),
        ("page.children", {"url.pathname": "/study/s"}),
        ("curve.figure", {"runs.value": ["base"], "curve-metric.value": None}),
        ("breakdown.figure", {"breakdown-bench.value": "g", "runs.value": [], "table-step.value": None}),
    ]
    for output, inputs in warm_up:
        state = {} if output == "page.children" else {"study-name.data": "s"}
        assert post_callback(client, output, inputs, state).status_code == 200
    return client


LONG = "x" * 100_000
INJECTION = "s'; DROP TABLE runs; --<script>alert(1)</script>"
HOSTILE_PATHS = [
    ("/study/" + LONG, "a path of 100007 characters"),
    ("/study/" + INJECTION, "no study"),
    ("/study/%00%01", "unprintable character"),
    ("/study/%ZZ", "no study"),
    ("/../../etc/passwd", "no page at /../../etc/passwd"),
    (12345, "no page at a int"),
    ({"a": [1]}, "no page at a dict"),
    (["/"], "no page at a list"),
]


def texts(component: Any) -> str:
    return json.dumps(component)


@pytest.mark.parametrize("index", range(len(HOSTILE_PATHS)))
def test_hostile_page_paths_are_a_message_on_the_page(dashboard: Any, index: int) -> None:
    path, expected = HOSTILE_PATHS[index]
    start = time.perf_counter()
    res = post_callback(dashboard, "page.children", {"url.pathname": path}, {})
    assert time.perf_counter() - start < SECONDS
    assert res.status_code == 200, res.data[:300]
    page = texts(res.get_json()["response"]["page"]["children"])
    assert "Cannot show this page" in page and expected in page, page[:500]
    assert "Traceback" not in page and "<script>" not in res.get_data(as_text=True)


HOSTILE_CALLBACKS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("ablation-html.data", {"table-step.value": 10**30, "table-all.value": "all"}, {"study-name.data": ["s"]},
     "study: expected a name, got list"),
    ("ablation-html.data", {"table-step.value": "1; DROP", "table-all.value": [{}]},
     {"study-name.data": LONG}, "study: a name of 100000 characters"),
    ("ablation-html.data", {"table-step.value": -5, "table-all.value": None}, {"study-name.data": INJECTION},
     "no study"),
    ("curve.figure", {"runs.value": "base", "curve-metric.value": 3}, {"study-name.data": "s"},
     "runs: expected a list of names, got str"),
    ("curve.figure", {"runs.value": [{"$ne": 1}], "curve-metric.value": None}, {"study-name.data": "s"},
     "runs: expected a name, got dict"),
    ("curve.figure", {"runs.value": ["r"] * 5000, "curve-metric.value": None}, {"study-name.data": "s"},
     "runs: 5000 names (at most 1000)"),
    ("breakdown.figure", {"breakdown-bench.value": LONG, "runs.value": [], "table-step.value": None},
     {"study-name.data": "s"}, "benchmark: a name of 100000 characters"),
    ("samples-html.data", {"sample-bench.value": "geneval", "sample-step.value": 2**70, "runs.value": None},
     {"study-name.data": {"a": 1}}, "study: expected a name, got dict"),
    ("samples-html.data",
     {"sample-bench.value": "../../etc", "sample-step.value": 2**70, "runs.value": ["\x00"]},
     {"study-name.data": "s"}, "runs: the name holds an unprintable character"),
]  # fmt: skip


@pytest.mark.parametrize("index", range(len(HOSTILE_CALLBACKS)))
def test_hostile_callback_values_are_a_message_not_a_server_error(dashboard: Any, index: int) -> None:
    output, inputs, state, expected = HOSTILE_CALLBACKS[index]
    start = time.perf_counter()
    res = post_callback(dashboard, output, inputs, state)
    assert time.perf_counter() - start < SECONDS
    assert res.status_code == 200, res.data[:300]
    body = res.get_data(as_text=True)
    assert expected in body and "Traceback" not in body, body[:500]


MALFORMED_UPDATES: list[tuple[Any, str]] = [
    ("{{{", "the body is not a JSON object"),
    ([1, 2], "the body is not a JSON object"),
    ({}, "no such callback"),
    ({"output": "nope.x", "outputs": {}, "inputs": []}, "no such callback"),
    ({"output": "ablation.title", "outputs": {}, "inputs": []}, "no such callback"),  # a clientside one
    ({"output": "page.children", "outputs": {}, "inputs": "x"}, "inputs: expected 1 values"),
    ({"output": "page.children", "outputs": {}, "inputs": []}, "inputs: expected 1 values"),
    ({"output": "page.children", "outputs": {}, "inputs": [{"id": "x", "property": "y"}]},
     "inputs: expected url.pathname"),
    ({"output": "curve.figure", "outputs": {}, "inputs": [{"id": "runs", "property": "value"},
      {"id": "curve-metric", "property": "value"}]}, "state: expected 1 values"),
    ({"output": "page.children", "outputs": 5, "inputs": [{"id": "url", "property": "pathname"}]},
     "malformed callback request"),
]  # fmt: skip


@pytest.mark.parametrize("index", range(len(MALFORMED_UPDATES)))
def test_malformed_callback_requests_are_400(dashboard: Any, index: int) -> None:
    """Dash answers a malformed callback body with a server error; the dashboard refuses it first."""
    body, expected = MALFORMED_UPDATES[index]
    data = body if isinstance(body, str) else json.dumps(body)
    res = dashboard.post("/_dash-update-component", data=data, content_type="application/json")
    assert res.status_code == 400 and res.get_data(as_text=True) == f"bad request: {expected}\n"


@pytest.mark.parametrize(
    "url",
    [
        "/_dash-component-suites/x/../../x.js",
        "/_dash-component-suites/" + "y" * 5000 + "/z.js",
        "/images/99999999999999999999999999/geneval/1/grid.png",
        "/images/1/geneval/99999999999999999999999999/grid.png",
        "/images/-1/geneval/1/grid.png",
        "/images/1/..%2F..%2Fetc/1/passwd",
        "/images/1/geneval/1/..%2F..%2Fspec.json",
        "/images/1/" + "g" * 10_000 + "/1/grid.png",
        "/images/1/geneval/1/%00.png",
        "/study/" + "x" * 10_000,
    ],
)
def test_hostile_urls_are_404_not_500(dashboard: Any, url: str) -> None:
    res = dashboard.get(url)
    assert res.status_code in (200, 404), (url[:80], res.status_code)
    assert "Traceback" not in res.get_data(as_text=True)


# --- environment variables -------------------------------------------------------------------------
ENVIRONMENT: dict[str, tuple[str, str, str]] = {
    # name -> (variable, value, the message after "$VARIABLE: ")
    "database_scheme": (
        "I1LAB_DATABASE_URL",
        "mysql://root@db/x",
        "'mysql://root@db/x' is not a database URL",
    ),
    "database_garbage": ("I1LAB_DATABASE_URL", "not a url", "'not a url' is not a database URL"),
    "sqlite_two_slashes": (
        "I1LAB_DATABASE_URL",
        "sqlite://registry.db",
        "'sqlite://registry.db': a SQLite URL",
    ),
    "mlflow_scheme": ("MLFLOW_TRACKING_URI", "gopher://x", "'gopher://x': unsupported scheme 'gopher'"),
    "mlflow_no_host": ("MLFLOW_TRACKING_URI", "http://", "'http://' has no host"),
    "ui_javascript": (
        "I1LAB_MLFLOW_UI_URL",
        "javascript:alert(1)",
        "'javascript:alert(1)' is not an http(s)",
    ),
    "ui_quote": ("I1LAB_MLFLOW_UI_URL", 'http://h/"onclick=x', "'http://h/\"onclick=x' holds a character"),
    "lease_word": ("I1LAB_LEASE_SECONDS", "soon", "'soon' is not a number"),
    "lease_nan": ("I1LAB_LEASE_SECONDS", "nan", "'nan' is out of range (above 0, at most 86400)"),
    "lease_inf": ("I1LAB_LEASE_SECONDS", "inf", "'inf' is out of range"),
    "lease_negative": ("I1LAB_LEASE_SECONDS", "-3", "'-3' is out of range"),
    "threads_float": ("I1LAB_WORKER_THREADS", "1.5", "'1.5' is not a whole number"),
    "threads_zero": ("I1LAB_WORKER_THREADS", "0", "'0' is out of range (from 1 to 4096)"),
    "benchmarks_relative": ("I1LAB_BENCHMARKS_DIR", "benchmarks", "'benchmarks' is a relative path"),
    "weights_relative": ("I1LAB_WEIGHTS_DIR", "./w", "'./w' is a relative path"),
    "judges_relative": ("I1LAB_JUDGES_DIR", "j", "'j' is a relative path"),
    "data_relative": ("I1LAB_DATA_DIR", "data/x", "'data/x' is a relative path"),
    "folders_relative": ("I1LAB_BENCHMARK_FOLDERS", "/abs:rel", "'rel' is a relative path"),
    "xdg_relative": ("XDG_CACHE_HOME", "cache", "'cache' is a relative path"),
    "home_overlong": ("I1LAB_HOME", "/" + "h" * 5000, "5001 characters (at most 4096)"),
    "home_newline": ("I1LAB_HOME", "/tmp/a\nb", "holds the control character '\\n' at position 7"),
    "home_escape": ("I1LAB_HOME", "/tmp/\x1b[2J", "holds the control character '\\x1b'"),
    "job_python_relative": ("I1LAB_JOB_PYTHON", "python3", "'python3' is a relative path"),
}


@pytest.mark.parametrize("name", sorted(ENVIRONMENT))
def test_malformed_environment_variable_is_one_line(
    name: str,
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variable, value, expected = ENVIRONMENT[name]
    message, _, _ = refused(lambda: check_environment({variable: value}), EnvironmentVariableError)
    assert message.startswith(f"${variable}: {expected}"), message
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    code, out, err = cli(["status"], capsys, monkeypatch)
    one_line_error(code, out, err, f"${variable}: ")
    assert not home.exists() and tree(tmp_path) == []


def test_a_nul_byte_in_a_variable_is_one_line() -> None:
    """A real environment cannot hold NUL (C strings end there), a mapping handed over can."""
    message, _, _ = refused(lambda: check_environment({"I1LAB_HOME": "/a\x00b"}), EnvironmentVariableError)
    assert message == "$I1LAB_HOME: holds a NUL byte at position 3"


def test_well_formed_environment_variables_pass() -> None:
    check_environment(
        {
            "I1LAB_HOME": "relative/home",  # resolved at once, never forwarded as written
            "I1LAB_DATABASE_URL": "postgresql+psycopg://u:p@db:5432/i1lab",
            "MLFLOW_TRACKING_URI": "./mlruns",
            "I1LAB_MLFLOW_UI_URL": "https://mlflow.example.org/",
            "I1LAB_LEASE_SECONDS": "0.5",
            "I1LAB_WORKER_THREADS": "8",
            "I1LAB_BENCHMARKS_DIR": "~/benchmarks",
            "I1LAB_BENCHMARK_FOLDERS": "/a:/b:",
            "I1LAB_WEIGHTS_DIR": "",  # empty: unset
        }
    )
    for uri in ("http://mlflow:5000", "postgresql+psycopg://u:p@db/mlflow", "sqlite:///m.db", "file:///m"):
        check_environment({"MLFLOW_TRACKING_URI": uri})


# --- fresh interpreters ----------------------------------------------------------------------------
def run_cli(
    args: list[str], cwd: Path, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], float]:
    full = {k: v for k, v in os.environ.items() if k != "I1LAB_DATABASE_URL"}
    full.update({"I1LAB_HOME": str(cwd / "home"), **env})
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "i1lab", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=60
    )
    return done, time.perf_counter() - start


def test_hostile_inputs_in_fresh_interpreters(tmp_path: Path) -> None:
    """The real CLI, two at a time: a deep results file and a malformed database URL."""
    deep = write(tmp_path, "deep.jsonl", RESULTS["deep_json"][0])
    cases = [
        (["import-results", str(deep)], {}, f"error: {deep}:2: not valid JSON (nested deeper"),
        (["status"], {"I1LAB_DATABASE_URL": "mysql://x"}, "error: $I1LAB_DATABASE_URL: 'mysql://x' is not"),
    ]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: run_cli(c[0], tmp_path, c[1]), cases))
    for (_, _, expected), (done, elapsed) in zip(cases, results, strict=True):
        assert done.returncode == 2 and done.stdout == "", done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith(expected), done.stderr
        assert elapsed < CLI_SECONDS
    assert not (tmp_path / "home").exists() and not (tmp_path / ".i1lab").exists()
