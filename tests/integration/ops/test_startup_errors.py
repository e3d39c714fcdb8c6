"""Start-up and configuration errors of the long-running commands, as an operator meets them.

Real ``leadflow`` processes: a port that is taken, a bad variable, an invalid model file give one
line naming the setting or file and exit code 2, never a traceback; a worker, a sink and a webhook
deliverer whose broker is not there keep retrying with one clear line per attempt while
``/readyz`` names the broker, and carry on once it appears.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from pipeline.devtools.demo import die_with_parent, free_port, stop_process, wait_ready
from pipeline.streaming.embedded_broker import EmbeddedBroker

pytestmark = pytest.mark.integration

WEBHOOKS_TOML = """
[[subscriptions]]
name = "crm"
url = "http://127.0.0.1:9/hook"
secret = "0123456789abcdef0123456789abcdef"
[subscriptions.filter]
became_hot = true
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("leadflow: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_port_in_use_is_one_line_naming_the_setting(tmp_path: Path, taken_port: int) -> None:
    (tmp_path / "hooks.toml").write_text(WEBHOOKS_TOML)
    nowhere = f"127.0.0.1:{free_port()}"  # no broker: the port check comes first
    env = _env(LEADFLOW_BROKER_PROFILE="kafka", LEADFLOW_DATA_DIR=str(tmp_path / "data"),
               LEADFLOW_COLLECTOR_WRITE_KEYS="website:pk_test_12345678")
    cases = {
        "LEADFLOW_WEB_PORT": ["worker", "--kafka", nowhere, "--web-port", str(taken_port)],
        "LEADFLOW_WEB_PORT ": ["sink", "--kafka", nowhere, "--web-port", str(taken_port),
                               "--db", f"sqlite:///{tmp_path / 'h.db'}"],
        "LEADFLOW_COLLECTOR_PORT": ["collector", "--kafka", nowhere, "--port", str(taken_port)],
        "LEADFLOW_WEBHOOKS_WEB_PORT": ["webhooks", "--kafka", nowhere, "--config", "hooks.toml",
                                       "--web-port", str(taken_port)],
    }
    for setting, args in cases.items():
        line = _one_line(_run(args, env, tmp_path))
        assert f"port {taken_port} on 127.0.0.1 is already in use" in line, line
        assert setting.strip() in line, line


@pytest.mark.parametrize("command", ["worker", "sink", "collector", "webhooks"])
def test_bad_values_and_an_invalid_model_are_one_line(tmp_path: Path, command: str) -> None:
    (tmp_path / "hooks.toml").write_text(WEBHOOKS_TOML)
    (tmp_path / "broken.toml").write_text("[stages\n")
    base = {"LEADFLOW_BROKER_PROFILE": "kafka", "LEADFLOW_KAFKA": f"127.0.0.1:{free_port()}",
            "LEADFLOW_COLLECTOR_WRITE_KEYS": "website:pk_test_12345678", "LEADFLOW_WEBHOOKS": "hooks.toml"}
    line = _one_line(_run([command], _env(**base, LEADFLOW_PARTITIONS="eight"), tmp_path))
    assert "LEADFLOW_PARTITIONS='eight' is not an integer" in line
    line = _one_line(_run([command], _env(**base, LEADFLOW_WEB_PORT="70000", LEADFLOW_COLLECTOR_PORT="70000",
                                          LEADFLOW_WEBHOOKS_WEB_PORT="70000"), tmp_path))
    assert "70000 is not a port number" in line
    if command in ("worker", "webhooks"):  # the commands that load a model
        line = _one_line(_run([command], _env(**base, LEADFLOW_MODEL="broken.toml"), tmp_path))
        assert line.startswith("leadflow: broken.toml:"), line


def _readyz(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_long_running_commands_wait_for_a_broker_that_is_not_there_yet(tmp_path: Path) -> None:
    """The worker, the sink and the webhook deliverer start while no broker listens on their
    bootstrap port: each retries with one line per attempt, ``/readyz`` answers 503 naming the
    broker; then a broker starts on that port and the worker becomes ready."""
    broker_port = free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    (tmp_path / "hooks.toml").write_text(WEBHOOKS_TOML)
    assert _run(["db", "upgrade", "--db", f"sqlite:///{tmp_path / 'h.db'}"], _env(), tmp_path).returncode == 0
    ports = {name: free_port() for name in ("worker", "sink", "webhooks")}
    env = _env(LEADFLOW_KAFKA=bootstrap, LEADFLOW_BROKER_PROFILE="tansu", LEADFLOW_APP_ID=f"wait{os.getpid()}",
               LEADFLOW_PARTITIONS="2", LEADFLOW_DATA_DIR=str(tmp_path / "data"), LEADFLOW_STORE="memory")
    commands = {
        "worker": ["worker", "--web-port", str(ports["worker"])],
        "sink": ["sink", "--web-port", str(ports["sink"]), "--db", f"sqlite:///{tmp_path / 'h.db'}"],
        "webhooks": ["webhooks", "--config", "hooks.toml", "--web-port", str(ports["webhooks"])],
    }
    logs = {name: tmp_path / f"{name}.log" for name in commands}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, args in commands.items():
            with open(logs[name], "wb") as log:
                processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "pipeline.cli", *args], env=env, cwd=tmp_path, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
                )
        for name in commands:
            def answered(name: str = name) -> bool:
                try:
                    status, body = _readyz(ports[name])
                except OSError:
                    return False
                return status == 503 and any(bootstrap in str(p) for p in body["problems"])  # type: ignore[attr-defined]

            _wait_for(answered, 30, f"{name} /readyz naming the broker")
        _wait_for(lambda: all("retrying in" in logs[n].read_text() for n in commands), 30, "retry lines")
        for name, log in logs.items():
            text = log.read_text()
            assert "Traceback" not in text, text
            assert processes[name].poll() is None, text
        assert f"leadflow: broker {bootstrap} unreachable" in logs["worker"].read_text()
        assert "(LEADFLOW_KAFKA or --kafka)" in logs["sink"].read_text()

        with EmbeddedBroker(log_dir=tmp_path / "broker", port=broker_port):
            wait_ready(ports["worker"], processes["worker"], timeout=90)
            status, body = _readyz(ports["worker"])
            assert status == 200, body
            for process in processes.values():  # before the broker goes away
                stop_process(process)
    finally:
        for process in processes.values():
            stop_process(process)
    assert "Traceback" not in logs["worker"].read_text()
