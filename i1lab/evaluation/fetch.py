"""``i1lab evals fetch``: download the official prompt files into the benchmarks directory.

Each file comes from its upstream project (GitHub raw URLs: djghosh13/geneval, rongyaofang/prism-bench,
X-Omni-Team/X-Omni, TencentQQGYLab/ELLA), with the copy in zlab-princeton/i1 at commit b58a62f (the
reference packaging docs/benchmarks.md is written against) as the fallback and as the only source of i1's
own packagings (``dpg_bench.json``, the CVTG-2K prompt folders, the prompt variants). Where the sha256
of the reference copy is known, a download must match it; an upstream file that differs is replaced by
the pinned copy, and the report says so. Derived prompt variants are stored gzip-compressed, as in
``shared/benchmarks/`` (see its README). Files already present are left alone.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from evals.benchdir import PINNED_COMMIT
from i1lab.errors import I1labError

I1_COMMIT: Final = PINNED_COMMIT
I1_RAW: Final = f"https://raw.githubusercontent.com/zlab-princeton/i1/{I1_COMMIT}"
GENEVAL_RAW: Final = "https://raw.githubusercontent.com/djghosh13/geneval/main"
ELLA_RAW: Final = "https://raw.githubusercontent.com/TencentQQGYLab/ELLA/main"
PRISM_RAW: Final = "https://raw.githubusercontent.com/rongyaofang/prism-bench/main"
XOMNI_RAW: Final = "https://raw.githubusercontent.com/X-Omni-Team/X-Omni/main"

#: Where to get each folder by hand (the one-line offline message names these).
SOURCES: Final[dict[str, str]] = {
    "geneval": "github.com/djghosh13/geneval (prompts/, evaluation/object_names.txt)",
    "dpg": "github.com/zlab-princeton/i1 benchmark_eval/dpg_bench/ "
    "(questions: github.com/TencentQQGYLab/ELLA dpg_bench/dpg_bench.csv)",
    "prism": "github.com/rongyaofang/prism-bench (captions/en/)",
    "cvtg-2k": "github.com/zlab-princeton/i1 benchmark_eval/cvtg-2k/prompts/ (upstream: Hugging Face dataset "
    "dnkdnk/CVTG-2K)",
    "longtext": "github.com/X-Omni-Team/X-Omni (textbench/text_prompts.jsonl)",
    "prompt_variants": "github.com/zlab-princeton/i1 jax/inference/prompts/",
}


@dataclass(frozen=True)
class Remote:
    """One file of the benchmarks directory: where it goes, where it comes from, what it must hash to."""

    path: str
    urls: tuple[str, ...]
    sha256: str | None = None
    """sha256 of the (uncompressed) content of the reference copy, when known."""
    gzip: bool = False
    """Store gzip-compressed (``path`` ends in ``.gz``; the URL serves the uncompressed file)."""
    optional: bool = False
    """Fetched only when asked for (not part of a complete directory)."""

    @property
    def folder(self) -> str:
        return self.path.split("/", 1)[0]


def _i1(path: str) -> str:
    return f"{I1_RAW}/{path}"


PRISM_SHA: Final[dict[str, str]] = {
    "affection": "69b57783b9c3e6b6b24907b34085060c400a49d1467696be5ef2a362a0492754",
    "composition": "7e08dcfd7409eb9a9306642f141c1a357b5b5726b63a2f78adcd40c912292a27",
    "entity": "d8e5592878243126203e65a9ea00614b465cec150fd08096b66d14962fc4ebb1",
    "imagination": "e08db963ab793babd6c8c16b5c5f24c797810abcd9d05d28167416c2f4eb4354",
    "long_text": "ab58215a5e0d2f25f2df8cdb05d26f0cc220854049a5a4e7a5b0cf023386087f",
    "style": "51d2d06c64c4b7870173ffc055d7e62b23f00ce2f249fb0f7eac0f9887ab2bd8",
    "text_rendering": "f298f2bba344b2add67943275df320b597ec77e01a247b002875856dcdea36f9",
}
CVTG_SHA: Final[dict[str, str]] = {
    "CVTG/2": "e8aa98a4f5d609f8699131328876760fbbf33db8320770188fc3979f3fa345c8",
    "CVTG/3": "36fca11a221236643ed9595d5302884db01e832309a61b230fab3eefdeff1be0",
    "CVTG/4": "24fb02addf2caae050d2e67e29af98fe10d1e086093cf43d3592bcdac8557c2c",
    "CVTG/5": "24d5a3afc060477cdcf5b678018d81c78e18dc0054aafacf8b02a69ae24118b2",
    "CVTG-Style/2": "61324577c690c4383597fffe53614d87088be108a3e577288d8e8baf71381489",
    "CVTG-Style/3": "26a92b4a53e5dc497317fb3a219121790b7a7c9da10b87b8dd3633fcadff0f97",
    "CVTG-Style/4": "1d1fe6c367191fd8a3939687f70b3e8bda83c0539344977506e09e2732e4e3ff",
    "CVTG-Style/5": "da102c0239726d1fcdf3f4cfccacd34e71d4c0a588e5a893f4bc94b03fff353a",
}
VARIANT_SHA: Final[dict[str, str]] = {
    "CVTG-2K.json": "2ec5b9934fedba559e50a705037276d3a2b9d0d8e6d9c482de26e59789d23996",
    "CVTG-2K_complex_rewrite.json": "9621549c8dfdc5f170f99a30e2c1490d7c75e4753da67083d6f7959df66c1eb8",
    "CVTG-2K_simple_rewrite.json": "740b8c987bb92127560fccd502b5ae100911333582e3f1a24204e31c54bd90d4",
    "dpg.json": "9cb9ab32a00104fb0a699335110079e6b1d1c5de035448ebddc92df0d78fdd50",
    "dpg_complex_rewrite.json": "4cda2e7d70eb1b13b5bb990d5186f6ab293d6add5c2eb4321c35e81d49a87e79",
    "dpg_simple_rewrite.json": "fa15d202b76a876b68f4e659b69fd2c7e4753dac4d4e63beee8feab07e6853a6",
    "geneval.jsonl": "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13",
    "geneval_complex_rewrite.jsonl": "6f77f8f95ee3687caf169d23dd0707b7ec6f529e8beb3dbfcaaf70ac7b6715f4",
    "geneval_repeated12.txt": "98eec27bf6b09d31131b8982b041eac555476c8495706fb8b1654eac6838e552",
    "geneval_repeated16.txt": "97fc5a53ed7243f78e337d0c5d11d719715b1c2b5e2459060c17f4e2083ba4da",
    "geneval_repeated20.txt": "da51cde47ad6b34a4c9f230c34e582fb9582bad4b904c6436b26dafa79d9e251",
    "geneval_repeated24.txt": "0f50815ef098701cea0faf117fd6e404605118345200962302f854a15e53ca5c",
    "geneval_repeated4.txt": "baa6254c0c94a94bef23347960352b83e0b3951ebca2697ab932457e4e00f3c2",
    "geneval_repeated8.txt": "cb324e2e1c930a842024455a2b5df76036dd8aa56ce4d47e57b17a1802d808c2",
    "geneval_simple_rewrite.txt": "2595fc4a9d26aa6dc96a8718f819976c4be95d38a0128164f68bf3c500d9b7ad",
    "longtext.jsonl": "a2130769e72bd8560470a066114cdac87f80f1eb071ba6bc0f7033225a9be0d8",
    "longtext_complex_rewrite.jsonl": "636a3303c78f8a08a85aff91c54c68b85f2e10cf948b79fb31049f66a041b138",
    "longtext_simple_rewrite.jsonl": "ae6ecb6590cf070fb937c6a2dcc69af07e60b9bee6f3bcff5ba4ba9cf93b26cc",
    "prism.json": "4f3f6489a39cc632025061178814747f61c0b03b3251e559725cec0d8e6f6a02",
    "prism_complex_rewrite.json": "074b7a49b96b83ab1b66b600527ccec82833ed94518631da4d93780793bc4977",
    "prism_simple_rewrite.json": "a6d18a3bfa062018718e4153572012728d00c6aa2ad214165cd3d778f5738c4f",
}
#: The five original-prompt variant files are stored uncompressed; the derived ones gzip-compressed.
VARIANT_ORIGINALS: Final = ("CVTG-2K.json", "dpg.json", "geneval.jsonl", "longtext.jsonl", "prism.json")


def remotes() -> list[Remote]:
    """Every file ``evals fetch`` knows, in directory order."""
    out = [
        Remote(
            "geneval/evaluation_metadata.jsonl",
            (
                f"{GENEVAL_RAW}/prompts/evaluation_metadata.jsonl",
                _i1("benchmark_eval/geneval/prompts/evaluation_metadata.jsonl"),
            ),
            "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13",
        ),
        Remote(
            "geneval/object_names.txt",
            (
                f"{GENEVAL_RAW}/evaluation/object_names.txt",
                _i1("benchmark_eval/geneval/evaluation/object_names.txt"),
            ),
            "608f6a0e5c8ca1c7a92b818430141fe268c85b7930b50f4160f1d65893b5bacd",
        ),
        Remote(
            "dpg/dpg_bench.json",
            (_i1("benchmark_eval/dpg_bench/dpg_bench.json"),),
            "9cb9ab32a00104fb0a699335110079e6b1d1c5de035448ebddc92df0d78fdd50",
        ),
        Remote(
            "dpg/dpg_bench.csv",
            (f"{ELLA_RAW}/dpg_bench/dpg_bench.csv", _i1("benchmark_eval/dpg_bench/dpg_bench.csv")),
            optional=True,
        ),
    ]
    out += [
        Remote(
            f"prism/captions/en/{cat}.jsonl",
            (
                f"{PRISM_RAW}/captions/en/{cat}.jsonl",
                _i1(f"benchmark_eval/prism-bench/captions/en/{cat}.jsonl"),
            ),
            sha,
        )
        for cat, sha in PRISM_SHA.items()
    ]
    out += [
        Remote(
            f"cvtg-2k/prompts/{cell}.json",
            (_i1(f"benchmark_eval/cvtg-2k/prompts/{cell}.json"),),
            sha,
        )
        for cell, sha in CVTG_SHA.items()
    ]
    out.append(
        Remote(
            "longtext/text_prompts.jsonl",
            (
                f"{XOMNI_RAW}/textbench/text_prompts.jsonl",
                _i1("benchmark_eval/longtext/text_prompts.jsonl"),
            ),
            "a2130769e72bd8560470a066114cdac87f80f1eb071ba6bc0f7033225a9be0d8",
        )
    )
    for name, sha in VARIANT_SHA.items():
        packed = name not in VARIANT_ORIGINALS
        out.append(
            Remote(
                f"prompt_variants/{name}.gz" if packed else f"prompt_variants/{name}",
                (_i1(f"jax/inference/prompts/{name}"),),
                sha,
                gzip=packed,
            )
        )
    return out


Opener = Callable[[str, float], bytes]


def urlopen_bytes(url: str, timeout: float) -> bytes:
    """The body of ``url`` (urllib; honours the usual proxy environment variables)."""
    request = urllib.request.Request(url, headers={"User-Agent": "i1lab-evals-fetch"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data: bytes = response.read()
    return data


@dataclass
class FetchReport:
    directory: Path
    present: list[str] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.downloaded


def missing(directory: Path, *, include_optional: bool = False) -> list[Remote]:
    """The files of a complete directory that are not there yet."""
    return [
        r
        for r in remotes()
        if (include_optional or not r.optional) and not (Path(directory) / r.path).is_file()
    ]


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _manual_hint(directory: Path, failed: list[Remote]) -> str:
    folders = sorted({r.folder for r in failed}, key=list(SOURCES).index)
    where = "; ".join(f"{f}/ from {SOURCES[f]}" for f in folders)
    return (
        f"put them under {directory} by hand, laid out as in shared/benchmarks/README.md ({where}), "
        f"or point I1LAB_BENCHMARKS_DIR at a copy"
    )


def fetch(
    directory: Path,
    *,
    include_optional: bool = False,
    opener: Opener = urlopen_bytes,
    timeout: float = 30.0,
) -> FetchReport:
    """Download every missing file into ``directory``. Raises `I1labError` (one line) naming what could
    not be downloaded and where to put it by hand; files fetched before a failure are kept."""
    directory = Path(directory)
    report = FetchReport(directory)
    wanted = [r for r in remotes() if include_optional or not r.optional]
    todo = missing(directory, include_optional=include_optional)
    report.present = [r.path for r in wanted if r not in todo]
    failed: list[tuple[Remote, str]] = []
    offline = ""
    for remote in todo:
        if offline:
            failed.append((remote, offline))
            continue
        reasons = []
        for url in remote.urls:
            try:
                data = opener(url, timeout)
            except urllib.error.HTTPError as exc:
                reasons.append(f"{url}: HTTP {exc.code}")
                continue
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                reasons.append(f"{url}: {reason}")
                offline = f"network unreachable ({reason})"
                break
            if remote.sha256 and hashlib.sha256(data).hexdigest() != remote.sha256:
                reasons.append(f"{url}: content differs from the reference copy (sha256)")
                continue
            if url != remote.urls[0]:
                report.notes.append(f"{remote.path}: from {url} ({'; '.join(reasons)})")
            payload = gzip.compress(data, compresslevel=9, mtime=0) if remote.gzip else data
            _write_atomic(directory / remote.path, payload)
            report.downloaded.append(remote.path)
            break
        else:
            failed.append((remote, "; ".join(reasons)))
            continue
        if offline and remote.path not in report.downloaded:
            failed.append((remote, offline))
    if failed:
        first, why = failed[0]
        raise I1labError(
            f"evals fetch: could not download {len(failed)} of {len(todo)} missing files "
            f"(first: {first.path}: {why}); {_manual_hint(directory, [r for r, _ in failed])}"
        )
    return report
