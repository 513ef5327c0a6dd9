"""No module of the product reaches into another's private names.

A name with a leading underscore is its module's own business: another module that imports it (``from
i1lab.execution.worker import _registry``) or reads it off an imported module (``worker._registry``)
couples itself to an implementation detail. The layering between packages is checked by `lint-imports`
(the contracts in pyproject.toml); this test covers what import-linter cannot see.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("i1lab", "models", "evals", "dashboards")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    package = base if (ROOT / Path(*base) / "__init__.py").exists() else base[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def private_uses(path: Path, module: str | None = None) -> list[str]:
    """``file:line: what`` for every private name of another product module that ``path`` (the module
    ``module``, by default the one its place in the tree names) uses."""
    module = module or _module_name(path)
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> product module it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            if source.split(".")[0] not in PACKAGES or source == module:
                continue
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{where}:{node.lineno}: from {source} import {alias.name}")
                else:
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            target = node.value
            dotted: list[str] = []
            while isinstance(target, ast.Attribute):
                dotted.insert(0, target.attr)
                target = target.value
            if isinstance(target, ast.Name) and target.id in aliases:
                owner = ".".join([aliases[target.id], *dotted])
                if owner != module and (ROOT / Path(*owner.split("."))).with_suffix(".py").exists():
                    found.append(f"{where}:{node.lineno}: {owner}.{node.attr}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 100
    uses = [use for path in files for use in private_uses(path)]
    assert uses == [], "private names used across modules:\n" + "\n".join(uses)


def test_the_check_sees_both_kinds_of_private_use(tmp_path: Path) -> None:
    sample = tmp_path / "probe.py"
    sample.write_text(
        "from i1lab.execution.worker import _registry\n"
        "import i1lab.execution.scheduler as s\n"
        "x = s._init_ray\n"
    )
    uses = private_uses(sample, module="i1lab.probe")
    assert [u.split(": ", 1)[1] for u in uses] == [
        "from i1lab.execution.worker import _registry",
        "i1lab.execution.scheduler._init_ray",
    ]
