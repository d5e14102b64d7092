"""Headless Chromium for the dashboard tests: Debian's build, driven by Playwright, never downloaded."""

import os
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = os.environ.get("NURTURE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Launch Chromium, or fail with the command that installs it (the dashboard tests never skip)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"the dashboard tests need Chromium at {CHROMIUM}, which is missing; install Debian's package "
            "with `apt-get update && apt-get install -y chromium` (run `make test` as root to install it "
            "automatically), or set NURTURE_TEST_CHROMIUM to another Chromium executable"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()
