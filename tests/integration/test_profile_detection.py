"""Every command recognises the embedded broker on its own; the explicit setting still wins."""

from __future__ import annotations

import argparse

import pytest

from pipeline.cli.common import settings_from_args
from pipeline.kafka.detect import cluster_id
from pipeline.streaming.embedded_broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def _args(bootstrap: str, profile: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(kafka=bootstrap, broker_profile=profile)


def test_the_embedded_broker_is_recognised_and_an_explicit_profile_wins(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LEADFLOW_BROKER_PROFILE", raising=False)
    with EmbeddedBroker() as broker:
        assert cluster_id(broker.bootstrap) == "tansu_cluster"
        assert settings_from_args(_args(broker.bootstrap)).profile == "tansu"
        assert "LEADFLOW_BROKER_PROFILE" in capsys.readouterr().err  # says which setting chooses
        assert settings_from_args(_args(broker.bootstrap, "kafka")).profile == "kafka"
        monkeypatch.setenv("LEADFLOW_BROKER_PROFILE", "kafka")
        assert settings_from_args(_args(broker.bootstrap)).profile == "kafka"
    monkeypatch.delenv("LEADFLOW_BROKER_PROFILE")
    assert settings_from_args(_args(broker.bootstrap)).profile == "kafka"  # nobody answers: production default
