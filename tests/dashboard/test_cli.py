"""``i1lab dashboard`` and ``i1lab mlflow-ui``: their command lines and what they start."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from i1lab.cli.dashboard import bind_address, mlflow_ui_command
from i1lab.cli.main import app
from i1lab.errors import I1labError


def test_the_commands_are_listed_with_loopback_defaults() -> None:
    runner = CliRunner()
    listing = runner.invoke(app, ["--help"])
    assert "dashboard" in listing.output and "mlflow-ui" in listing.output
    for command, port in (("dashboard", "8050"), ("mlflow-ui", "5000")):
        res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        assert "--port" in res.output and port in res.output and "127.0.0.1" in res.output


def test_bind_addresses() -> None:
    assert bind_address("127.0.0.1", 8050) == "127.0.0.1:8050"
    assert bind_address("::1", 8050) == "[::1]:8050"
    with pytest.raises(I1labError, match="--port"):
        bind_address("127.0.0.1", 70000)


def test_mlflow_ui_serves_the_configured_store(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cmd = mlflow_ui_command("127.0.0.1", 5123)
    assert cmd[:4] == [sys.executable, "-m", "mlflow", "server"]
    args = dict(zip(cmd[4::2], cmd[5::2], strict=True))
    assert args == {
        "--backend-store-uri": f"sqlite:///{home.resolve() / 'mlflow.db'}",
        "--artifacts-destination": (home.resolve() / "mlartifacts").as_uri(),
        "--host": "127.0.0.1",
        "--port": "5123",
        "--workers": "1",
    }
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql+psycopg://u:p@db/mlflow")
    assert mlflow_ui_command("127.0.0.1", 5000)[5] == "postgresql+psycopg://u:p@db/mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    with pytest.raises(I1labError, match="served there already"):
        mlflow_ui_command("127.0.0.1", 5000)
    res = CliRunner().invoke(app, ["mlflow-ui"])
    assert res.exit_code != 0 and isinstance(res.exception, I1labError)
