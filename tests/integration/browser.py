"""Headless Chromium for browser tests: the system's Debian ``chromium`` driven by Playwright, in one place.

Playwright's own browser download is not used (it needs a network we do not have); ``make tools`` installs
Debian's package instead. Without either, ``launch_chromium`` skips the calling test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; `make tools` installs it
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


@contextlib.contextmanager
def launch_chromium(*extra_args: str) -> Iterator[object]:
    """A Playwright ``Browser`` on the system Chromium (with ``extra_args``, e.g. a fake camera); skips the test
    when Chromium or Playwright is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -r requirements-dev.txt)")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (make tools, or apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            browser.close()
