"""``leadflow collector``: configuration errors are usage errors (exit 2) naming the variable."""

from __future__ import annotations

import pytest

from pipeline.cli.main import main


def test_bad_configuration_exits_2_before_listening(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEADFLOW_COLLECTOR_WRITE_KEYS", "crm:abcdefghijk")
    assert main(["collector", "--port", "1"]) == 2
    assert "LEADFLOW_COLLECTOR_WRITE_KEYS: unknown source 'crm'" in capsys.readouterr().err


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["collector", "--help"])
    out = capsys.readouterr().out
    assert "--port" in out and "--bind" in out and "--kafka" in out
