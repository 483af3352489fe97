"""Playwright harness for the hub's browser tests: Debian's chromium, never a download.

    with browser_session() as browser:
        page = new_page(browser)
        login(page, hub_url, "psmltest-s1", password)   # waits for JupyterLab
        shot(page, "student-lab")                        # .cache/screenshots/student-lab.png

Screenshots are test artefacts (``PSML_SCREENSHOTS``, default ``.cache/screenshots/``);
:func:`shot` also copies the ones named in ``DOC_SHOTS`` into ``docs/img/`` when
``PSML_DOC_SHOTS=1`` (how the workshop guide's pictures are refreshed).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# Headless as root, no GPU, nothing fetched from the network (HPC-FACTS).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
SHOTS = Path(os.environ.get("PSML_SCREENSHOTS", ROOT / ".cache" / "screenshots"))
DOC_SHOTS = ROOT / "docs" / "img"
LAB_READY = "#jp-main-dock-panel"  # JupyterLab's main area: the app has rendered


@contextmanager
def browser_session(timeout_ms: int = 180_000):
    """A headless chromium through Playwright, closed on exit."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: PSML_SETUP_TEST=1 tools/setup.sh "
                           "installs Debian's chromium")
    with sync_playwright() as pw:  # Playwright gives the browser a fresh temporary profile
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=CHROMIUM_ARGS)
        browser.psml_timeout = timeout_ms
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, width: int = 1366, height: int = 800):
    """A page in a fresh context (own cookies: one per user)."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    ctx.set_default_timeout(getattr(browser, "psml_timeout", 60_000))
    return ctx.new_page()


def login(page, hub_url: str, user: str, password: str, spawn_timeout_ms: int = 180_000):
    """Log in through the hub's form and wait until the user's JupyterLab has rendered."""
    page.goto(f"{hub_url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_url(f"**/user/{user}/lab**", timeout=spawn_timeout_ms)
    page.wait_for_selector(LAB_READY, timeout=spawn_timeout_ms)
    return page


def shot(page, name: str, doc: bool = False) -> Path:
    """Save a screenshot as a test artefact (and, with ``doc`` and PSML_DOC_SHOTS=1, for
    docs/img/)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    if doc and os.environ.get("PSML_DOC_SHOTS") == "1":
        DOC_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOC_SHOTS / f"hub-{name}.png")
    return path
