"""The verification recipe for sales tools in docs/webhooks.md works against the real signer."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.webhooks.signature import sign

RECIPE_PAGE = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"
SECRET = "whsec_0123456789abcdef"
BODY = b'{"alert_id":"9a7c1e52-4b3d-5e6f-a1b2-c3d4e5f60718","type":"became_hot"}'


@pytest.fixture(scope="module")
def verify_leadflow() -> Callable[[str, bytes, str | None], bool]:
    blocks = re.findall(r"```python\n(.*?)```", RECIPE_PAGE.read_text(encoding="utf-8"), flags=re.S)
    (recipe,) = [block for block in blocks if "def verify_leadflow" in block]
    namespace: dict[str, Any] = {}
    exec(compile(recipe, "docs/webhooks.md recipe", "exec"), namespace)
    function: Callable[[str, bytes, str | None], bool] = namespace["verify_leadflow"]
    return function


def test_the_recipe_accepts_a_fresh_signature(verify_leadflow: Callable[[str, bytes, str | None], bool]) -> None:
    assert verify_leadflow(SECRET, BODY, sign(SECRET, BODY))
    assert verify_leadflow(SECRET, BODY, sign(["whsec_another_secret_0000", SECRET], BODY))


def test_the_recipe_rejects_tampering_and_replays(verify_leadflow: Callable[[str, bytes, str | None], bool]) -> None:
    header = sign(SECRET, BODY)
    assert not verify_leadflow(SECRET, BODY.replace(b"hot", b"HOT"), header)
    assert not verify_leadflow("whsec_not_the_right_one", BODY, header)
    assert not verify_leadflow(SECRET, BODY, sign(SECRET, BODY, int(time.time()) - 301))
    for broken in (None, "", "t=abc,v1=00", "v1=00", f"t={int(time.time())}", f"t={int(time.time())},v1=é"):
        assert not verify_leadflow(SECRET, BODY, broken)
