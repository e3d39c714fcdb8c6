"""The HTML funnel report rendered by headless Chromium: one chart per group, one bar per stage."""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from pipeline.state_machine import builtin_model
from pipeline.storage import open_history_store, upgrade_database
from pipeline.storage.reports.html import render_html

from .conftest import fixture_history

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, text=True, timeout=60, check=True,
    )


def _distinct_colours(png: bytes) -> int:
    """Distinct RGB colours in a PNG (8-bit RGB or RGBA, non-interlaced: what Chromium writes)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        data = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type = struct.unpack(">IIBB", data[:10])
            assert depth == 8 and colour_type in (2, 6)
            channels = 3 if colour_type == 2 else 4
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw, stride, colours = zlib.decompress(idat), width * channels, set()
    previous = bytearray(stride)
    for y in range(height):
        filter_type, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up, up_left = previous[x], previous[x - channels] if x >= channels else 0
            if filter_type == 1:
                line[x] = (line[x] + left) & 255
            elif filter_type == 2:
                line[x] = (line[x] + up) & 255
            elif filter_type == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif filter_type == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 255
        colours.update(bytes(line[i : i + 3]) for i in range(0, stride, channels * 7))  # sample every 7th pixel
        previous = line
    return len(colours)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt-get install chromium)")
def test_the_report_renders_a_funnel_chart_per_group(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    upgrade_database(url)
    with open_history_store(url) as store:
        store.write_batch(*fixture_history())
        report = store.funnel(builtin_model(), by="utm_source")
    page = tmp_path / "funnel.html"
    page.write_text(render_html(report), encoding="utf-8")

    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    charts = re.findall(r'<svg class="funnel".*?</svg>', dom, flags=re.S)
    assert len(charts) == 1 + len(report.groups)  # the total first, then each group
    for chart in charts:
        assert re.findall(r'<rect class="bar" data-stage="([^"]+)"', chart) == list(builtin_model().stages)
    assert 'data-stage="lead" data-reached="4"' in charts[0]

    shot = tmp_path / "funnel.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,900", "--hide-scrollbars", page.as_uri())
    assert shot.stat().st_size > 5000
    assert _distinct_colours(shot.read_bytes()) > 8  # not blank: text, bars in several blues
