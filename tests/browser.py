"""Headless Chromium for the dashboard's tests: the system's (Debian's) browser, driven by playwright.

Playwright never downloads a browser here (no CDN). Without a chromium the browser tests skip,
except under CI (``CI`` set), where scripts/test-tools.sh installs one, so a missing one is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
POLL_TIMEOUT_MS = 15_000  # the page polls every 2.5 s


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (scripts/test-tools.sh installs chromium)")
    pytest.skip(reason)


def chromium_path() -> str:
    path = os.environ.get("POP_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if path is None:
        _missing("no chromium on PATH (apt-get install chromium, or set POP_CHROMIUM)")
    assert path is not None
    return path


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium browser, closed at the end of the block."""
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("POP_TEST_ARTIFACTS", ".pop/test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
