"""Browser fixtures: Debian's Chromium driven by Playwright, an emulator, and a frontend origin.

Chromium is found at `$CHROMIUM_PATH`, else /usr/bin/chromium (`.ci/run` installs Debian's
package when it is missing; Playwright's own browser download is never used). Without it the
browser tests are skipped, unless `REQUIRE_TEST_SERVICES=1`, where that is a failure.

Reusable pieces: `browser` (one Chromium per module), `page` (a fresh context per test, console
errors collected), `screenshot` (PNG artefacts under var/screenshots/), and `link_frame.LinkFrame`
to drive the emulator's Link in whatever page opened it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from plaid_bridge.emulator import EmulatorConfig, EmulatorServer
from plaid_bridge.serving import BackgroundServer
from tests.browser.host_page import LinkHost, host_app
from tests.contract.plaid_spec import MISSING_SPEC, PlaidSpec, spec_location
from tests.emulator.plaid_http import PlaidHTTP

REQUIRED = os.environ.get("REQUIRE_TEST_SERVICES") == "1"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
VIEWPORT: ViewportSize = {"width": 1024, "height": 768}
TIMEOUT_MS = 15_000
_NETWORK_LOG = "Failed to load resource:"

expect.set_options(timeout=TIMEOUT_MS)

Screenshot = Callable[[str], Path]


def chromium_executable() -> str:
    """The Chromium to drive: `$CHROMIUM_PATH`, else Debian's."""
    return os.environ.get("CHROMIUM_PATH") or DEFAULT_CHROMIUM


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    path = chromium_executable()
    if not os.access(path, os.X_OK):
        message = f"no Chromium at {path}: install Debian's `chromium` package or set CHROMIUM_PATH"
        if REQUIRED:
            pytest.fail(f"REQUIRE_TEST_SERVICES=1 but {message}")
        pytest.skip(message)
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless Chromium, one per test module."""
    launched = playwright.chromium.launch(executable_path=chromium_executable(), headless=True)
    yield launched
    launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh browser context; a test fails if its scripts throw or log an error."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(f"page error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        # Chromium logs every 4xx/5xx answer as a console error; answers are asserted by tests.
        if message.type == "error" and not message.text.startswith(_NETWORK_LOG):
            errors.append(f"console.error: {message.text} ({message.location.get('url')})")

    opened.on("console", on_console)
    yield opened
    context.close()
    assert not errors, "\n".join(errors)


@pytest.fixture
def screenshot(page: Page, request: pytest.FixtureRequest) -> Screenshot:
    """`screenshot("name")` saves the page as var/screenshots/<test>/<n>-<name>.png."""
    folder = SCREENSHOTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    taken: list[Path] = []

    def take(name: str) -> Path:
        path = folder / f"{len(taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path))
        taken.append(path)
        return path

    return take


@pytest.fixture(scope="module")
def link_emulator() -> Iterator[EmulatorServer]:
    """An emulator with small histories: Link does not need many transactions."""
    with EmulatorServer(EmulatorConfig(seed=11, transactions=30)) as server:
        yield server


@pytest.fixture
def plaid(link_emulator: EmulatorServer) -> Iterator[PlaidHTTP]:
    client = PlaidHTTP(link_emulator.url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def host_server(link_emulator: EmulatorServer) -> Iterator[BackgroundServer]:
    """A frontend on its own origin (another port on loopback) that loads the emulator's script."""
    with BackgroundServer() as server:
        server.serve(host_app(link_emulator.url), name="link-host")
        yield server


@pytest.fixture
def host(page: Page, host_server: BackgroundServer) -> LinkHost:
    return LinkHost(page, host_server.url)


@pytest.fixture(scope="session")
def plaid_spec() -> PlaidSpec:
    path = spec_location()
    if not path.is_file():
        pytest.skip(f"{MISSING_SPEC} (looked at {path})")
    return PlaidSpec.load(path)
