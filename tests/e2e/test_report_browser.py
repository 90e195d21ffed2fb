"""The synthetic experiment's report rendered by a real headless Chromium.

Checks what a unit test cannot: that a browser decodes every embedded PNG (the page's load
script sets the title to `report-ok:<images decoded>`), and that the page paints something.
Needs Debian's `chromium` package (`apt-get install -y chromium`); skipped without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from ray_ml.report import build_report
from tests._report_fixture import make_experiment

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
# No network, no GPU, no profile state: the page must render from the file alone.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> Path:
    found = CHROMIUM if CHROMIUM.exists() else None
    if found is None and shutil.which("chromium"):
        found = Path(str(shutil.which("chromium")))
    if found is None:
        pytest.skip(
            f"Chromium not found at {CHROMIUM} or on PATH; install it with "
            "`apt-get install -y chromium` to run the browser check"
        )
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    storage = tmp_path_factory.mktemp("storage")
    expected = make_experiment(storage, "exp")
    return build_report(storage, "exp"), sum(expected["plots"].values())


def _run(chromium: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(chromium), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_image_decodes(chromium: Path, report: tuple[Path, int], tmp_path: Path) -> None:
    index, images = report
    done = _run(chromium, tmp_path / "profile", "--dump-dom", index.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    title = re.search(r"<title>([^<]*)</title>", done.stdout)
    assert title is not None, done.stdout[:500]
    assert title.group(1) == f"report-ok:{images}", (title.group(1), done.stderr[-2000:])


def test_screenshot_is_not_blank(chromium: Path, report: tuple[Path, int], tmp_path: Path) -> None:
    index, _ = report
    shot = tmp_path / "shot.png"
    done = _run(
        chromium,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1280,2400",
        "--hide-scrollbars",
        index.as_uri(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000
    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        colours = im.convert("RGB").getcolors(maxcolors=1 << 16)
        # None: more than 65536 colours, certainly not flat. Otherwise many distinct colours.
        assert colours is None or len(colours) > 50
        extrema = im.convert("L").getextrema()
        assert extrema[1] - extrema[0] > 100  # dark text on a light page
