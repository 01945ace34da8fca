"""The HTML cost report renders in a real browser: headless Chromium (Debian's ``chromium`` package).

The page is rendered twice, once to a PNG screenshot and once to its DOM after layout, and both are checked:
the bars drawn in Python survive into the DOM, and the chart colours reach the pixels.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from gateway.api.v1 import cost_reports_pb2 as pb
from gateway.cli.report_render import report_html

CHROMIUM = Path("/usr/bin/chromium")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WINDOW = (1280, 2000)
DAYS = [f"2025-03-{day:02d}" for day in range(1, 15)]
PROVIDERS = {
    # provider: (cost per request, all-cloud per request, all-local per request)
    "faster-whisper": (Decimal("0.0004"), Decimal("0.006"), Decimal("0.0004")),
    "openai": (Decimal("0.006"), Decimal("0.006"), Decimal("0.0004")),
    "deepgram": (Decimal("0.0043"), Decimal("0.0043"), Decimal("0.0004")),
}


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = "headless Chromium is missing: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def two_weeks_of_traffic() -> pb.CostReport:
    """Every provider every day, except deepgram on weekends (2025-03-01 is a Saturday)."""
    rows: list[pb.CostReportRow] = []
    for n, day in enumerate(DAYS):
        for provider, (price, cloud, local) in PROVIDERS.items():
            if provider == "deepgram" and n % 7 in (0, 1):
                continue
            requests = 40 + 13 * n + 7 * len(provider)
            hits = requests // 5
            served = requests - hits
            rows.append(
                pb.CostReportRow(
                    day=day,
                    provider=provider,
                    requests=requests,
                    attempts=served,
                    cache_hits=hits,
                    cost_usd=str(price * served),
                    saved_usd=str(price * hits),
                    counterfactual_cloud_usd=str(cloud * served),
                    counterfactual_local_usd=str(local * served),
                )
            )
    return pb.CostReport(
        since=DAYS[0],
        until=DAYS[-1],
        group_by=[pb.GROUP_BY_DAY, pb.GROUP_BY_PROVIDER],
        rows=rows,
        price_book_version="2025-03-01",
    )


def run_chromium(chromium: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(chromium),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Screenshots in sRGB, so the fills drawn are the pixel values read back.
        "--force-color-profile=srgb",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))


def test_report_renders_in_headless_chromium(chromium: Path, tmp_path: Path, capsys):
    report = two_weeks_of_traffic()
    page = tmp_path / "report.html"
    page.write_text(report_html(report), encoding="utf-8")
    source = page.read_text(encoding="utf-8")
    drawn = {name: source.count(f'class="{name}"') for name in ("cost-bar", "saved-bar", "compare-bar")}
    assert drawn == {"cost-bar": len(report.rows), "saved-bar": len(DAYS), "compare-bar": 3}

    screenshot = tmp_path / "report.png"
    shot = run_chromium(chromium, tmp_path / "profile-shot", f"--screenshot={screenshot}", page.as_uri())
    assert shot.returncode == 0, shot.stderr[-2000:]
    dump = run_chromium(chromium, tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert dump.returncode == 0, dump.stderr[-2000:]
    with capsys.disabled():
        print(f"\nreport screenshot: {screenshot}")

    dom = dump.stdout
    assert "<svg" in dom and "</tfoot>" in dom
    for name, count in drawn.items():
        assert len(re.findall(rf'<rect class="{name}"', dom)) == count, name
    assert dom.count('role="img"') == 3

    data = screenshot.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 20_000
    with Image.open(screenshot) as image:
        assert image.size == WINDOW
        colours = image.convert("RGB").getcolors(maxcolors=WINDOW[0] * WINDOW[1])
    pixels = Counter({colour: count for count, colour in colours})
    assert len(pixels) > 100  # text, anti-aliasing and fills: not a blank page
    background, count = pixels.most_common(1)[0]
    assert background == (255, 255, 255)
    assert count < 0.95 * WINDOW[0] * WINDOW[1]
    fills = set(re.findall(r'<rect class="(?:cost|saved|compare)-bar"[^>]* fill="(#[0-9a-f]{6})"', source))
    assert len(fills) >= 4  # three providers, plus the savings and comparison colours
    for fill in fills:
        # A bar is solid: its colour covers many pixels exactly.
        assert pixels[hex_rgb(fill)] > 200, fill
