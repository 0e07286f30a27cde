"""Headless Chromium for browser tests: the system's Debian ``chromium`` driven by Playwright, in one place.

Playwright's own browser download is not used (it needs a network we do not have); ``make tools`` installs
Debian's package instead. Without either, ``launch_chromium`` skips the calling test.
"""

from __future__ import annotations

import contextlib
import time
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


def wait_until(page, expression: str, arg=None, timeout: float = 30_000, poll_ms: float = 100) -> None:
    """``page.wait_for_function`` that works under the playground's Content-Security-Policy: Playwright's poller
    builds its predicate with ``new Function`` inside the page, which a CSP without ``'unsafe-eval'`` refuses;
    ``page.evaluate`` goes through the DevTools protocol, which the page's CSP does not govern."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression, arg):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression!r} still false after {timeout:g} ms")
        page.wait_for_timeout(poll_ms)
