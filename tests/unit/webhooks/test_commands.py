"""``leadflow webhooks --check`` through the real command line: what an operator sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli.main import main

SECRET = "whsec_0123456789abcdef"


def test_check_lists_the_subscriptions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hooks.toml"
    path.write_text(f"""
[[subscriptions]]
name = "crm"
url = "https://crm.example.com/h"
secret = "{SECRET}"
filter = {{ became_hot = true, stages_out_of = ["customer"] }}
""")
    assert main(["webhooks", "--check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "crm: POST https://crm.example.com/h (became_hot alerts; stage out of customer)" in out
    assert f"{path}: 1 valid subscriptions" in out
    assert SECRET not in out


def test_an_invalid_file_exits_2_naming_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hooks.json"
    path.write_text('{"subscriptions": [{"name": "crm", "url": "https://x.example.com", "secret": "short",'
                    ' "filter": {"stages_into": ["vip"]}}]}')
    assert main(["webhooks", "--check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: 2 problems" in err
    assert "subscriptions[0] (crm).secret: too short" in err
    assert "subscriptions[0] (crm).filter.stages_into[0]: 'vip' is not a stage of the model" in err


def test_the_b2b_model_has_other_stage_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hooks.toml"
    path.write_text(f'[[subscriptions]]\nname = "crm"\nurl = "https://x.example.com"\nsecret = "{SECRET}"\n'
                    'filter = { stages_into = ["customer"] }\n')
    assert main(["webhooks", "--check", "--config", str(path), "--model", "b2b"]) == 0
    path.write_text(path.read_text().replace('"customer"', '"member"'))
    assert main(["webhooks", "--check", "--config", str(path), "--model", "b2b"]) == 2
    assert "'member' is not a stage of the model" in capsys.readouterr().err


def test_no_file_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("LEADFLOW_WEBHOOKS", raising=False)
    assert main(["webhooks", "--check"]) == 2
    assert "give --config FILE or set LEADFLOW_WEBHOOKS" in capsys.readouterr().err
