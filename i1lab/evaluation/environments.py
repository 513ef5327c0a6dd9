"""Official judging environments: built from the pins in the repository, fingerprinted, run unedited.

``i1lab evals setup BENCH`` reads ``evals/<bench>/judge_environment.toml``
(`evals.judges.environment`) and builds, under ``$I1LAB_JUDGES_DIR`` (default
``~/.cache/i1lab/judges``)::

    <bench>/environment.json   what was built: stages, interpreter, packages, weights, fingerprint
    <bench>/venv/              its own virtual environment with the stages' pinned requirements
    <bench>/source/            the official files at the pinned commit (sha256-checked)
    <bench>/hf/                a Hugging Face cache whose snapshots point at the local judge weights
    <bench>/spec/              the specification as written: requirements.txt and the TOML

A stage whose judge weights are absent from ``$I1LAB_WEIGHTS_DIR/judges/`` is refused (one line, naming
what and where); the specification is written all the same, so the environment can be built where the
weights are. The environment is built in a temporary folder and moved into place whole: a failed setup
leaves the previous one untouched.

The *fingerprint* hashes the TOML, the stages set up, the interpreter's version, every installed
package (``pip freeze``) and the source files' hashes; a judge model's weights have their own
fingerprint. Every score an environment gives records both (`provenance`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from pydantic import BaseModel

from evals.benchmark import lookup
from evals.judges.environment import EnvironmentSpecError, JudgeEnvironment, Stage, environment_file, load
from i1lab.errors import I1labError
from i1lab.hashing import canonical_json, fingerprint_folder
from i1lab.paths import judges_dir

MANIFEST: Final = "environment.json"


class WeightsFound(BaseModel):
    hub_id: str
    path: str
    fingerprint: str


class Installed(BaseModel):
    """An environment as built (``environment.json``)."""

    benchmark: str
    fingerprint: str
    spec_sha256: str
    stages: list[str]
    refused: dict[str, str] = {}  # stage -> why it was not set up
    python: str  # the interpreter inside the environment
    python_version: str
    packages: list[str]
    source_commit: str
    weights: dict[str, list[WeightsFound]] = {}  # stage -> its judge models
    built_at: str
    root: str = ""  # filled when read: the environment's folder

    @property
    def source(self) -> Path:
        """The working directory of every stage: the official folder."""
        return Path(self.root) / "source"

    def weights_fingerprint(self, stages: list[str]) -> str | None:
        found = sorted(w.fingerprint for s in stages for w in self.weights.get(s, []))
        return ",".join(found) or None


def spec_of(bench: str) -> tuple[JudgeEnvironment, str]:
    """The pinned environment of ``bench`` and the sha256 of its file; one-line errors."""
    try:
        benchmark = lookup(bench)
    except ValueError as exc:
        raise I1labError(str(exc)) from None
    path = environment_file(benchmark)
    if not path.is_file():
        raise I1labError(
            f"{bench}: no official judging environment is pinned (no {path.name} in its package)"
        )
    try:
        spec = load(path)
    except EnvironmentSpecError as exc:
        raise I1labError(str(exc)) from None
    return spec, hashlib.sha256(path.read_bytes()).hexdigest()


def installed(bench: str, home: Path | None = None) -> Installed | None:
    """The environment built for ``bench``, None when there is none."""
    root = (home or judges_dir()) / bench
    try:
        data = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        return Installed.model_validate({**data, "root": str(root)})
    except (OSError, ValueError):
        return None


# -- weights ---------------------------------------------------------------------------------------------


def agrees(printed: str, value: float) -> bool:
    """Whether ``value`` prints as ``printed`` at the precision it was printed with. Pure."""
    digits = len(printed.partition(".")[2])
    return f"{value:.{digits}f}" == printed


def judge_weights_dir() -> Path:
    from i1lab.spec.weights import weights_dir

    return weights_dir() / "judges"


def find_weights(stage: Stage) -> tuple[list[WeightsFound], str | None]:
    """The stage's judge models found under ``$I1LAB_WEIGHTS_DIR/judges/``, or why not."""
    base = judge_weights_dir()
    found = []
    for w in stage.weights:
        folder = base / w.local
        missing = [f for f in w.files if not (folder / f).is_file()]
        if not folder.is_dir() or missing:
            what = f"{folder}/{missing[0]}" if folder.is_dir() else str(folder)
            return [], f"weights of {w.hub_id} absent (expected {what})"
        found.append(WeightsFound(hub_id=w.hub_id, path=str(folder), fingerprint=fingerprint_folder(folder)))
    return found, None


# -- source ----------------------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _from_folder(spec: JudgeEnvironment, source: Path) -> dict[str, bytes]:
    """The pinned files from a local checkout (the repository root, or the official folder itself)."""
    roots = [source / spec.source.folder, source]
    out = {}
    for name in spec.source.files:
        path = next((r / name for r in roots if (r / name).is_file()), None)
        if path is None:
            raise I1labError(f"{spec.benchmark}: {name} not found in {source} (nor in {roots[0]})")
        out[name] = path.read_bytes()
    return out


def _download(spec: JudgeEnvironment, timeout: float) -> dict[str, bytes]:
    """The pinned files from the commit's tarball (GitHub)."""
    url = spec.source.archive
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            blob = resp.read()
    except OSError as exc:
        raise I1labError(
            f"{spec.benchmark}: cannot download {url} ({exc}); give a checkout of {spec.source.repository} "
            f"at {spec.source.commit[:12]} with --source"
        ) from None
    out = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts[1:]  # drop the archive's top folder
            rel = str(Path(*parts)) if parts else ""
            prefix = spec.source.folder.rstrip("/") + "/"
            if member.isfile() and rel.startswith(prefix) and rel[len(prefix) :] in spec.source.files:
                handle = tar.extractfile(member)
                if handle is not None:
                    out[rel[len(prefix) :]] = handle.read()
    return out


def fetch_source(spec: JudgeEnvironment, source: Path | None, timeout: float = 60.0) -> dict[str, bytes]:
    """The pinned official files, each checked against its sha256."""
    files = _from_folder(spec, source) if source is not None else _download(spec, timeout)
    for name, digest in spec.source.files.items():
        if name not in files:
            raise I1labError(f"{spec.benchmark}: {name} is not in {spec.source.archive}")
        got = _sha256(files[name])
        if got != digest:
            where = source or spec.source.archive
            raise I1labError(
                f"{spec.benchmark}: {name} from {where} has sha256 {got[:12]}…, the pinned commit's is "
                f"{digest[:12]}… (not the official code at {spec.source.commit[:12]})"
            )
    return files


# -- building --------------------------------------------------------------------------------------------


class SetupReport(BaseModel):
    benchmark: str
    root: str
    stages: list[str]
    refused: dict[str, str]
    fingerprint: str | None
    spec_written: str
    seconds: float = 0.0


def _run(argv: list[str], what: str, bench: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise I1labError(f"{bench}: {what} failed (exit {proc.returncode}): {tail[-1] if tail else ''}")
    return proc.stdout


def write_spec(spec: JudgeEnvironment, spec_path: Path, target: Path) -> Path:
    """The specification as a user would build it by hand: the TOML and one requirements file per stage."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec_path, target / spec_path.name)
    for name, stage in spec.stages.items():
        (target / f"requirements-{name}.txt").write_text(
            "\n".join(stage.requirements) + "\n", encoding="utf-8"
        )
    return target


def fingerprint(
    spec_sha: str, stages: list[str], version: str, packages: list[str], files: Mapping[str, str]
) -> str:
    """The environment's identity (16 hex digits). Pure."""
    payload = {
        "spec": spec_sha,
        "stages": sorted(stages),
        "python": version,
        "packages": sorted(packages),
        "files": dict(sorted(files.items())),
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()[:16]


def _hf_cache(root: Path, weights: dict[str, list[WeightsFound]]) -> None:
    """A Hugging Face hub cache whose ``main`` snapshot of each judge model is its local folder, so that
    official code naming a hub id loads the local weights offline, unedited."""
    for found in weights.values():
        for w in found:
            repo = root / "hf" / ("models--" + w.hub_id.replace("/", "--"))
            (repo / "refs").mkdir(parents=True, exist_ok=True)
            (repo / "refs" / "main").write_text("local", encoding="utf-8")
            (repo / "snapshots").mkdir(exist_ok=True)
            link = repo / "snapshots" / "local"
            if not link.exists():
                link.symlink_to(w.path, target_is_directory=True)


def setup(
    bench: str,
    *,
    source: Path | None = None,
    stages: list[str] | None = None,
    python: str = sys.executable,
    home: Path | None = None,
    timeout: float = 60.0,
) -> SetupReport:
    """Build ``bench``'s official environment (see the module doc). ``stages``: those to set up (default:
    every stage whose weights are present; named ones must be). Raises `I1labError` (one line) when no
    stage can be set up, after writing the specification."""
    import time

    t0 = time.perf_counter()
    spec, spec_sha = spec_of(bench)
    spec_path = environment_file(lookup(bench))
    home = home or judges_dir()
    root = home / spec.benchmark
    spec_dir = write_spec(spec, spec_path, root / "spec")
    unknown = [s for s in stages or [] if s not in spec.stages]
    if unknown:
        raise I1labError(f"{bench}: unknown stage {unknown[0]!r}; its stages: {', '.join(spec.stages)}")
    wanted = stages or list(spec.stages)
    ok: list[str] = []
    refused: dict[str, str] = {}
    weights: dict[str, list[WeightsFound]] = {}
    for name in wanted:
        found, why = find_weights(spec.stages[name])
        if why is not None:
            refused[name] = why
        else:
            ok.append(name)
            if found:
                weights[name] = found
    if not ok or (stages and refused):
        name, why = next(iter(refused.items()))
        raise I1labError(
            f"{bench}: {name} stage refused: {why}; nothing installed, the specification is in {spec_dir}"
        )
    files = fetch_source(spec, source, timeout)
    building = home / f".{spec.benchmark}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    try:
        for name, data in files.items():
            path = building / "source" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        _run([python, "-m", "venv", str(building / "venv")], "creating the virtual environment", bench)
        venv_python = building / "venv" / "bin" / "python"
        pip = [str(venv_python), "-m", "pip", "--disable-pip-version-check", "--no-input"]
        needed = spec.requirements(ok)
        if needed:
            _run([*pip, "install", "--quiet", *needed], "installing the pinned packages", bench)
        packages = [p for p in _run([*pip, "freeze", "--all"], "listing packages", bench).splitlines() if p]
        version = _run(
            [str(venv_python), "-c", "import platform; print(platform.python_version())"], "python", bench
        ).strip()
        fp = fingerprint(spec_sha, ok, version, packages, spec.source.files)
        _hf_cache(building, weights)
        shutil.copytree(spec_dir, building / "spec")
        manifest = Installed(
            benchmark=spec.benchmark,
            fingerprint=fp,
            spec_sha256=spec_sha,
            stages=ok,
            refused=refused,
            python=str(root / "venv" / "bin" / "python"),
            python_version=version,
            packages=packages,
            source_commit=spec.source.commit,
            weights=weights,
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        (building / MANIFEST).write_text(
            manifest.model_dump_json(exclude={"root"}, indent=2), encoding="utf-8"
        )
        _fix_venv_paths(building, root)
        old = home / f".{spec.benchmark}.old-{os.getpid()}"
        if root.exists():
            root.rename(old)
        building.rename(root)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return SetupReport(
        benchmark=spec.benchmark,
        root=str(root),
        stages=ok,
        refused=refused,
        fingerprint=fp,
        spec_written=str(root / "spec"),
        seconds=time.perf_counter() - t0,
    )


def _fix_venv_paths(building: Path, root: Path) -> None:
    """A virtual environment records its own folder (activate scripts, pip's shebangs, ``pyvenv.cfg``):
    point them at where it is moved to. The interpreter itself is a symlink and needs nothing."""
    old, new = str(building / "venv"), str(root / "venv")
    for path in (building / "venv" / "bin").iterdir():
        if path.is_file() and not path.is_symlink():
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if old in text:
                path.write_text(text.replace(old, new), encoding="utf-8")
    cfg = building / "venv" / "pyvenv.cfg"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")


def provenance(inst: Installed, stages: list[str]) -> dict[str, str]:
    """What a score made in ``inst`` records of it. Pure."""
    out = {
        "environment": inst.fingerprint,
        "stages": ",".join(inst.stages),
        "python": inst.python_version,
        "source_commit": inst.source_commit,
    }
    weights = inst.weights_fingerprint(stages)
    if weights:
        out["weights"] = weights
    return out


# -- running ---------------------------------------------------------------------------------------------


class StageRun(BaseModel):
    stage: str
    argv: list[str]
    cwd: str
    stdout: str
    printed: str | None = None  # the headline as the stage printed it (``printed`` pattern), if any


def stage_env(inst: Installed) -> dict[str, str]:
    """The variables every stage runs with: the local Hugging Face cache, offline."""
    hf = str(Path(inst.root) / "hf")
    return {
        **os.environ,
        "HF_HUB_CACHE": hf,
        "HUGGINGFACE_HUB_CACHE": hf,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONNOUSERSITE": "1",
    }


def run_stage(
    inst: Installed,
    name: str,
    out: Path,
    *,
    judged: Path | None = None,
    values: Mapping[str, object] | None = None,
    command: str | None = None,
    timeout: float | None = None,
) -> StageRun:
    """Run stage ``name`` of an installed environment: its interpreter, the official folder as working
    directory, a fresh ``out`` (the stage's ``inputs`` copied there from ``judged`` first)."""
    import shlex

    spec, _ = spec_of(inst.benchmark)
    if name not in inst.stages:
        why = inst.refused.get(name, "not set up")
        raise I1labError(f"{inst.benchmark}: the {name} stage of its environment is not set up ({why})")
    stage = spec.stages[name]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for rel in stage.inputs:
        src = (judged or out) / rel
        if not src.is_file():
            raise I1labError(f"{inst.benchmark}: {name} stage needs {src}")
        shutil.copyfile(src, out / rel)
    found = inst.weights.get(name, [])
    fill = {"python": inst.python, "out": str(out), "gpus": str(max(1, stage.gpus))}
    if found:
        fill["weights"] = found[0].path
    fill.update({k: str(v) for k, v in (values or {}).items()})
    template = command or stage.command
    try:
        argv = shlex.split(template.format(**{k: shlex.quote(v) for k, v in fill.items()}))
    except KeyError as exc:
        raise I1labError(f"{inst.benchmark}: {name} stage command needs a value for {exc}") from None
    try:
        proc = subprocess.run(
            argv,
            cwd=inst.source,
            env=stage_env(inst),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise I1labError(f"{inst.benchmark}: {name} stage could not run: {exc}") from None
    (out / f"{name}_stdout.txt").write_text(proc.stdout, encoding="utf-8")
    (out / f"{name}_stderr.txt").write_text(proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise I1labError(
            f"{inst.benchmark}: {name} stage exited {proc.returncode}: {tail[-1] if tail else ''} "
            f"(its output: {out}/{name}_stderr.txt)"
        )
    printed = None
    if stage.printed:
        match = re.search(stage.printed, proc.stdout)
        if match is None:
            raise I1labError(
                f"{inst.benchmark}: {name} stage printed no headline (see {out}/{name}_stdout.txt)"
            )
        printed = match.group("value")
    return StageRun(stage=name, argv=argv, cwd=str(inst.source), stdout=proc.stdout, printed=printed)
