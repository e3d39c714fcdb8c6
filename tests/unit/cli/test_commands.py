"""The offline commands through the real command line: messages and exit codes an operator sees.

Exit codes (:mod:`pipeline.cli.common`): 0 success, 1 I/O, 2 usage. Nothing here needs a broker or
a database: the commands that do fail on their settings before connecting anywhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli.common import EXIT_IO, EXIT_USAGE
from pipeline.cli.main import main


@pytest.fixture
def events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "events.jsonl"
    assert main(["sample", str(path), "--contacts", "12", "--seed", "3"]) == 0
    assert f"for 12 contacts to {path}" in capsys.readouterr().err
    return path


def test_replay_writes_files_and_a_summary(events: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, summary = tmp_path / "transitions.jsonl", tmp_path / "summary.json"
    assert main(["replay", str(events), "--out", str(out), "--until", "2030-01-01T00:00:00Z",
                 "--summary-json", str(summary)]) == 0
    stats = json.loads(summary.read_text())
    assert stats["read"] > 0 and out.read_text().count("\n") > 0
    assert "events/s" in capsys.readouterr().err


def test_replay_io_and_usage_errors(events: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "/nonexistent/events.jsonl"]) == EXIT_IO
    assert "leadflow: /nonexistent/events.jsonl: No such file or directory" in capsys.readouterr().err
    assert main(["replay", str(events), "--out", "-", "--alerts", "-"]) == EXIT_USAGE
    assert "at most one output may be '-' (stdout)" in capsys.readouterr().err
    assert main(["replay", str(events), "--model", "no-such-model"]) == EXIT_USAGE
    with pytest.raises(SystemExit) as exited:
        main(["replay", str(events), "--until", "tomorrow"])
    assert exited.value.code == EXIT_USAGE
    assert "not an RFC 3339 timestamp with offset: 'tomorrow'" in capsys.readouterr().err


def test_model_validate_and_diagram(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "validate", "b2b"]) == 0
    assert capsys.readouterr().out.startswith("b2b: valid model b2b@1: 5 stages")
    assert main(["model", "diagram"]) == 0
    assert capsys.readouterr().out.startswith("stateDiagram")
    assert main(["model", "validate", str(tmp_path / "missing.toml")]) == EXIT_USAGE
    assert "cannot be read" in capsys.readouterr().err


def test_sample_to_an_unwritable_path_is_an_io_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", "/nonexistent/dir/x.jsonl", "--contacts", "1"]) == EXIT_IO
    assert "leadflow: /nonexistent/dir/x.jsonl:" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["topics"], ["worker"], ["sweep", "--until", "2030-01-01T00:00:00Z"],
                                  ["collector"], ["produce", "-"], ["tail", "alerts"]])
def test_a_bad_setting_is_a_usage_error_naming_the_variable(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEADFLOW_PARTITIONS", "many")
    assert main(argv) == EXIT_USAGE
    assert "leadflow: LEADFLOW_PARTITIONS" in capsys.readouterr().err


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("replay", "model", "sample", "worker", "produce", "tail", "sink", "topics", "sweep", "demo",
                    "db", "contact", "funnel", "alerts", "collector", "webhooks"):
        assert f"    {command} " in out or f"    {command}\n" in out, command


def test_python_dash_m_runs_the_command_line() -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "model", "validate", "default"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "default: valid model default@" in done.stdout, done.stderr
