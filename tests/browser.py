"""Render a local HTML file in a real headless Chromium and report what rendered.

The report (`python -m bench.report`) is one self-contained report.html: tables and <img> tags whose
src are base64 data:image/png URIs. Parsing its HTML cannot tell whether a browser actually decodes
those images or hits a script error, so its tests open it in Debian's chromium-headless-shell, driven
by Playwright (never `playwright install`, which downloads browsers from the internet). The browser
is installed with apt when missing; where it cannot be, tests skip, or fail under
BENCH_REQUIRE_CLUSTERS=1 (CI) so that CI never skips them silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.clusters import skip_or_fail

PACKAGE = "chromium-headless-shell"
# The ELF binary itself: /usr/bin/chromium-headless-shell is a `sh` wrapper around it.
CANDIDATES = ("/usr/lib/chromium/chromium-headless-shell", "/usr/bin/chromium-headless-shell")
# As root Chromium's sandbox cannot start ("Chromium sandboxing failed!"). Playwright adds this flag
# by default too (chromium_sandbox=False); it is spelled out so that the launch never depends on that.
LAUNCH_ARGS = ["--no-sandbox"]
TIMEOUT_MS = 30_000


def _find() -> str | None:
    return next((path for path in CANDIDATES if os.access(path, os.X_OK)), None)


def chromium_executable() -> str:
    """The headless shell's path, installing the Debian package when missing (as root, with apt)."""
    if path := _find():
        return path
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        skip_or_fail(f"{PACKAGE} is not installed, and installing it needs apt-get as root")
    log = Path(tempfile.mkdtemp(prefix="apt-chromium-")) / "apt.log"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Lock timeout: two xdist workers may both get here; the second waits for the first's dpkg.
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
    install = [*apt, "install", "-y", "--no-install-recommends", PACKAGE]
    with log.open("w") as out:
        # A fresh machine's package lists may be missing or stale: on failure, update and retry once.
        for command in (install, [*apt, "update"], install):
            try:
                subprocess.run(
                    command,
                    check=False,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    timeout=900,
                )
            except subprocess.TimeoutExpired:
                break
            if path := _find():
                return path
    skip_or_fail(f"could not install {PACKAGE} with apt-get (log: {log}): {log.read_text()[-1000:]}")


@dataclass
class Rendered:
    console_errors: list[str] = field(default_factory=list)  # console.error() and uncaught errors
    failed_requests: list[str] = field(default_factory=list)  # failed loads and any network attempt
    images: list[tuple[str, int, int]] = field(default_factory=list)  # (alt or src[:40], naturalW, naturalH)
    tables: int = 0
    table_rows: int = 0
    title: str = ""
    text: str = ""


def render(html: Path, screenshot: Path | None = None) -> Rendered:
    """Open `html` (file://), wait for its load event and every image, and report what rendered.

    Requests to anything but file: and data: URLs are aborted and listed in failed_requests: the
    report must be self-contained, and a test must not reach the network.
    """
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -e '.[dev]')")
    result = Rendered()

    def route(route):
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            result.failed_requests.append(f"network attempt: {url}")
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=LAUNCH_ARGS, timeout=TIMEOUT_MS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(TIMEOUT_MS)
            page.route("**/*", route)
            page.on("console", lambda m: m.type == "error" and result.console_errors.append(m.text))
            page.on("pageerror", lambda e: result.console_errors.append(f"uncaught: {e}"))
            page.on("requestfailed", lambda r: result.failed_requests.append(f"failed: {r.url[:80]} ({r.failure})"))
            page.goto(Path(html).resolve().as_uri(), wait_until="load")
            page.wait_for_function("Array.from(document.images).every(i => i.complete)")
            result.images = [
                tuple(i)
                for i in page.eval_on_selector_all(
                    "img",
                    "imgs => imgs.map(i => [i.alt || (i.getAttribute('src') || '').slice(0, 40),"
                    " i.naturalWidth, i.naturalHeight])",
                )
            ]
            result.tables = page.locator("table").count()
            result.table_rows = page.locator("tr").count()
            result.title = page.title()
            result.text = page.evaluate("document.body ? document.body.innerText : ''")
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return result
