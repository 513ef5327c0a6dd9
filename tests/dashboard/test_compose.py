"""docker-compose.yml, the Dockerfile, .env.example and .dockerignore, checked offline.

No Docker engine here: the compose file is validated against the Compose Specification's JSON Schema
(vendored in ``schemas/``), before and after interpolating ``.env.example`` the way Compose does, and the
topology this project relies on is checked rule by rule.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
SECRET = re.compile(r"PASSWORD|TOKEN|SECRET")
I1LAB_SERVICES = ("mlflow", "migrate", "ray-head", "ray-worker", "dashboard")


class Unset(Exception):
    """A required variable (``${VAR:?message}``) has no value."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}`` in every string value."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("named")
        op, arg = m.group("op"), m.group("arg") or ""
        present = name in env
        empty = present and env[name] == ""
        missing = not present or (empty and op in (":-", ":?"))
        if not missing:
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise Unset(f"{name}: {arg}")
        return ""

    return VARIABLE.sub(one, value)


def variables(text: str) -> set[str]:
    return {m.group("braced") or m.group("named") for m in VARIABLE.finditer(text) if not m.group("escaped")}


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def dotenv(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    return dotenv(REPO / ".env.example")


@pytest.fixture(scope="module")
def resolved(raw: dict[str, Any], example: dict[str, str]) -> dict[str, Any]:
    doc = interpolate(raw, example)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def errors(validator: Draft202012Validator, doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_compose_file_follows_the_compose_specification(
    validator: Draft202012Validator, raw: dict[str, Any], resolved: dict[str, Any]
) -> None:
    assert errors(validator, raw) == []
    assert errors(validator, resolved) == []


@pytest.mark.parametrize(
    "path, value",
    [
        (("services", "postgres", "restart_policy"), "always"),  # no such key
        (("services", "mlflow", "depends_on", "postgres", "condition"), "service_ready"),
        (("services", "ray-worker", "deploy", "replicas"), [2]),
        (("services", "dashboard", "ports"), "8050:8050"),
        (("volumes", "i1lab-data"), "a string"),
    ],
)
def test_the_schema_check_catches_mistakes(
    validator: Draft202012Validator, resolved: dict[str, Any], path: tuple[str, ...], value: Any
) -> None:
    broken = copy.deepcopy(resolved)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert errors(validator, broken), f"{'/'.join(path)} = {value!r} should be rejected"


def test_the_topology(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert {"postgres", *I1LAB_SERVICES} <= set(services)
    pg = services["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert "postgres-data:/var/lib/postgresql/data" in pg["volumes"]
    assert set(resolved["volumes"]) >= {"postgres-data", "mlflow-artifacts", "i1lab-data"}
    for name in I1LAB_SERVICES:  # one image for every role
        svc = services[name]
        assert svc["image"] == "i1lab:latest" and svc["build"]["dockerfile"] == "Dockerfile", name
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services and cond["condition"].startswith("service_"), (name, dep)
    ml = services["mlflow"]
    assert ml["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "mlflow-artifacts:/mlartifacts" in ml["volumes"]
    args = ml["command"]
    assert args[:2] == ["mlflow", "server"]
    assert args[args.index("--backend-store-uri") + 1].startswith("postgresql+psycopg://")
    assert args[args.index("--backend-store-uri") + 1].endswith("@postgres:5432/mlflow")
    assert "healthcheck" in ml
    head, worker = services["ray-head"], services["ray-worker"]
    assert "--head" in head["command"] and "--block" in head["command"] and "healthcheck" in head
    assert "--address=ray-head:6379" in worker["command"]
    assert "container_name" not in worker and "ports" not in worker  # so that it scales
    assert int(worker["deploy"]["replicas"]) == 2
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
    for node in (head, worker, services["ray-worker-gpu"]):
        assert node["environment"]["RAY_AUTH_MODE"] == "token"
        assert node["environment"]["I1LAB_DATABASE_URL"].endswith("@postgres:5432/i1lab")
        assert "i1lab-data:/data" in node["volumes"]
    gpu = services["ray-worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["args"]["JAX_EXTRA"] == "cuda12"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert head["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_the_dashboard_service_is_read_only(resolved: dict[str, Any]) -> None:
    dash = resolved["services"]["dashboard"]
    assert dash["command"][:2] == ["i1lab", "dashboard"]
    assert dash["volumes"] == ["i1lab-data:/data:ro"]
    assert dash["environment"]["I1LAB_DATABASE_URL"].startswith("postgresql+psycopg://i1lab_reader:")
    assert dash["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    init = resolved["configs"]["postgres-init"]["content"]
    assert "GRANT SELECT ON TABLES TO i1lab_reader" in init
    assert "default_transaction_read_only = on" in init
    assert 'CREATE DATABASE "${MLFLOW_DB}"' in init  # the container's variable, expanded at run time
    assert resolved["services"]["postgres"]["configs"][0]["target"].startswith("/docker-entrypoint-initdb.d/")


def test_published_ports_stay_on_loopback(raw: dict[str, Any], example: dict[str, str]) -> None:
    required = {k: "x" for k in example if SECRET.search(k)}
    doc = interpolate(raw, required)  # every default: what `docker compose up` does with only secrets set
    published = [(name, p) for name, svc in doc["services"].items() for p in svc.get("ports", [])]
    assert len(published) == 5
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), (name, port)


def test_credentials_come_from_the_env_file(raw: dict[str, Any], example: dict[str, str]) -> None:
    text = (REPO / "docker-compose.yml").read_text()
    used = variables(text)  # ``$${VAR}`` (the container's own variables) excluded
    assert used <= set(example), f"not documented in .env.example: {sorted(used - set(example))}"
    secrets = sorted(k for k in example if SECRET.search(k))
    assert secrets == ["I1LAB_READER_PASSWORD", "POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"]
    for key in secrets:
        assert example[key] == "set-me"
        # required (no default): compose refuses to start without it
        assert re.search(r"\$\{" + key + r":\?", text), key
        assert not re.search(r"\$\{" + key + r":?-", text), f"{key} has a default"
        with pytest.raises(Unset, match=key):
            interpolate(raw, {k: v for k, v in example.items() if k != key})
    # no literal credential anywhere: every password in a URL is a variable
    urls = [u for u in strings(raw) if "postgresql+psycopg://" in u]
    assert len(set(urls)) == 3  # the registry (writer), MLflow's backend, the dashboard (reader)
    for url in urls:
        assert re.search(r"postgresql\+psycopg://(\$\{[^}]*\}|[a-z0-9_]+):\$\{[A-Z0-9_]+:\?[^}]*\}@", url), (
            url
        )
    for name, svc in raw["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRET.search(key):
                assert str(value).startswith("${") and str(value).endswith("}"), (name, key)


def test_the_image_recipe() -> None:
    docker = (REPO / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", docker, re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base.group(1))
    assert '-c constraints.txt -e ".[postgres,dashboard]"' in docker
    assert re.search(r"^USER i1lab$", docker, re.M)
    for folder in ("i1lab", "models", "evals", "dashboards", "experiments"):
        assert f"COPY --chown=i1lab:i1lab {folder} ./{folder}" in docker
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".i1lab", ".env", "artifacts"} <= ignored
