"""``i1lab dashboard`` and ``i1lab mlflow-ui``: the two web UIs, served from this machine.

* ``i1lab dashboard`` serves the read-only dashboard (``dashboards/``, a Dash app) with gunicorn: one
  worker process (the page cache lives in it) with a few threads.
* ``i1lab mlflow-ui`` runs ``mlflow server`` on the configured MLflow store (``$MLFLOW_TRACKING_URI`` or
  ``$I1LAB_HOME/mlflow.db``), artifacts under ``$I1LAB_HOME/mlartifacts``.

Both bind 127.0.0.1 unless told otherwise: nothing is exposed beyond this machine by default.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from i1lab import paths
from i1lab.errors import I1labError

REPO = Path(__file__).resolve().parents[2]


def bind_address(host: str, port: int) -> str:
    """``host:port`` as servers take it (IPv6 literals in brackets)."""
    if not 0 < port < 65536:
        raise I1labError(f"--port must be between 1 and 65535 (got {port})")
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def import_dashboards() -> Any:
    """The ``dashboards`` package: installed, or beside ``i1lab/`` in a source checkout."""
    try:
        import dashboards.app as app_module
    except ModuleNotFoundError as exc:
        if exc.name not in ("dashboards", "dashboards.app") or not (REPO / "dashboards").is_dir():
            if exc.name in ("dash", "plotly", "flask"):
                raise I1labError(
                    f"the dashboard needs {exc.name}: install i1lab with its dashboard extra "
                    "(pip install -e '.[dashboard]')"
                ) from None
            raise
        sys.path.insert(0, str(REPO))
        import dashboards.app as app_module
    return app_module


def warm_up(server: Any, source: Any, limit: int = 8, budget_s: float = 30.0) -> int:
    """Build the study list and the pages of up to ``limit`` studies once, through the app as a browser
    calls it, before serving: a person's first visit then finds the modules imported, the registry
    read and the pages cached, instead of paying for all of it. Stops after ``budget_s`` seconds;
    returns the number of pages built."""
    import time
    import urllib.parse

    began = time.monotonic()
    client = server.test_client()
    for path in ("/", "/_dash-layout", "/_dash-dependencies"):
        client.get(path)
    names = [s.name for s in source.studies()][:limit]
    built = 0
    for path in ["/", *(f"/study/{urllib.parse.quote(n)}" for n in names)]:
        if time.monotonic() - began > budget_s:
            break
        body = {
            "output": "page.children",
            "outputs": {"id": "page", "property": "children"},
            "inputs": [{"id": "url", "property": "pathname", "value": path}],
            "changedPropIds": ["url.pathname"],
            "state": [],
        }
        if client.post("/_dash-update-component", json=body).status_code == 200:
            built += 1
    return built


def serve_dashboard(host: str = "127.0.0.1", port: int = 8050, threads: int = 8) -> None:
    """Serve the dashboard until interrupted."""
    address = bind_address(host, port)
    app_module = import_dashboards()
    from gunicorn.app.base import BaseApplication

    from dashboards.data import Source
    from i1lab.plan.recorded_cost import estimate_hours
    from i1lab.registry.readonly import sqlite_path

    url = paths.database_url()
    db = sqlite_path(url)
    where = str(db) if db is not None else url.split("@")[-1]
    if db is not None and not db.is_file():
        print(
            f"i1lab dashboard: no registry at {db} yet; pages will show it once a study runs", file=sys.stderr
        )
    if db is None or db.is_file():
        source = Source.open(url, estimate=estimate_hours)
        server = app_module.create_app(source).server
        warmed = warm_up(server, source)
        source.registry.engine.dispose()  # no connection crosses gunicorn's fork into the worker
        print(f"i1lab dashboard: {warmed} pages prepared", file=sys.stderr, flush=True)
    else:
        server = app_module.create_app(lambda: Source.open(url, estimate=estimate_hours)).server

    class Dashboard(BaseApplication):
        def load_config(self) -> None:
            for key, value in {
                "bind": [address],
                "workers": 1,
                "worker_class": "gthread",
                "threads": threads,
                "timeout": 120,
                "graceful_timeout": 5,
                "accesslog": None,
                "errorlog": "-",
                "loglevel": "warning",
                "proc_name": "i1lab-dashboard",
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return server

    print(f"i1lab dashboard on http://{address} (registry {where}, read-only)", file=sys.stderr, flush=True)
    Dashboard().run()


def mlflow_ui_command(host: str, port: int, tracking_uri: str | None = None) -> list[str]:
    """The ``mlflow server`` command line for the configured store."""
    uri = tracking_uri or paths.mlflow_uri()
    if uri.startswith(("http://", "https://")):
        raise I1labError(f"MLFLOW_TRACKING_URI is the tracking server {uri}: its UI is served there already")
    bind_address(host, port)
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--artifacts-destination",
        paths.mlflow_artifacts().as_uri(),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def serve_mlflow_ui(host: str = "127.0.0.1", port: int = 5000) -> None:
    """Replace this process with the MLflow UI server."""
    cmd = mlflow_ui_command(host, port)
    uri = paths.mlflow_uri()
    db = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if db is not None and not db.is_file():
        print(f"i1lab mlflow-ui: no MLflow store at {db} yet (i1lab sync mlflow fills it)", file=sys.stderr)
    paths.mlflow_artifacts().mkdir(parents=True, exist_ok=True)
    print(f"MLflow UI on http://{bind_address(host, port)} (store {uri})", file=sys.stderr, flush=True)
    os.execv(cmd[0], cmd)


def dashboard(
    port: Annotated[int, typer.Option(help="port to serve on")] = 8050,
    host: Annotated[
        str, typer.Option(help="interface to bind (127.0.0.1: this machine only; 0.0.0.0: every one)")
    ] = "127.0.0.1",
) -> None:
    """Serve the web dashboard over the registry (read-only): studies, ablation tables, curves, samples."""
    serve_dashboard(host, port)


def mlflow_ui(
    port: Annotated[int, typer.Option(help="port to serve on")] = 5000,
    host: Annotated[str, typer.Option(help="interface to bind (127.0.0.1: this machine only)")] = "127.0.0.1",
) -> None:
    """Serve the MLflow UI on the configured MLflow store (compare a study's runs)."""
    serve_mlflow_ui(host, port)
