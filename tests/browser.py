"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright, for page tests.

Playwright's own browser download is never used: the page opens in ``/usr/bin/chromium``
(``make test`` installs it with apt when missing). Used by tests/test_leaderboard.py; run as a
script it writes a screenshot of a page (how docs/leaderboard.png is made):

    python tests/browser.py leaderboard.html docs/leaderboard.png
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def open_page(path: str | Path, width: int = 1280, height: int = 900) -> Iterator[tuple]:
    """Yield ``(page, messages)``: the file loaded in Chromium, and the console messages and
    page errors seen so far as ``(type, text)`` (a list that keeps filling)."""
    from playwright.sync_api import sync_playwright

    messages: list[tuple[str, str]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: messages.append((m.type, m.text)))
            page.on("pageerror", lambda e: messages.append(("pageerror", str(e))))
            page.on("requestfailed", lambda r: messages.append(("requestfailed", r.url[:200])))
            page.goto(Path(path).resolve().as_uri())
            page.wait_for_load_state("load")
            yield page, messages
        finally:
            browser.close()


def screenshot(page_path: str | Path, png: str | Path, full_page: bool = False) -> None:
    """Write a PNG of the page (the first screenful unless ``full_page``)."""
    with open_page(page_path) as (page, _):
        page.screenshot(path=str(png), full_page=full_page)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/browser.py PAGE.html OUT.png")
    screenshot(sys.argv[1], sys.argv[2])
    print(f"wrote {sys.argv[2]}")
