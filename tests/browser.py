"""Debian's Chromium under Playwright's sync API: the one browser of a test session.

Playwright's sync API runs its event loop in a greenlet of the main thread and, between
its calls, marks that loop as the thread's running loop (playwright/_impl/_greenlets.py,
wait_for_future). So one Playwright lives per process: a second `sync_playwright()` started
while the first lives finds a running loop and refuses with "It looks like you are using
Playwright Sync API inside the asyncio loop". Every browser test therefore shares the
session fixture `browser` of tests/conftest.py, and those tests run last (its
pytest_collection_modifyitems), so no other test finds Playwright's loop running.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium browser; fails with the command to run when it is missing."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-test-deps.sh (`make test` runs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
