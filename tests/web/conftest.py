"""A real `retouch serve` on a free loopback port, and Debian's chromium driven by Playwright
(``retouch.web.browser``).  Screenshots go to ``runs/test-artifacts/web/<test>/`` (git-ignored) and the test's tmp dir."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from retouch.web.browser import BrowserUnavailable, chromium, running_server

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "runs" / "test-artifacts" / "web"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a `retouch serve` subprocess (the shipped Shapes models; turbo loaded at start-up)."""
    with running_server(tmp_path_factory.mktemp("serve") / "serve.log", "--preload") as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """Headless chromium; skipped (with the reason) only where the playwright package or chromium is missing."""
    try:
        with chromium() as b:
            yield b
    except BrowserUnavailable as e:  # raised only before the browser starts
        pytest.skip(str(e))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    out = ARTIFACTS / request.node.name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def page(browser, artifacts: Path, request: pytest.FixtureRequest):
    """A fresh page (1280 x 900, downloads on); its console and page errors are kept, and on a failure the page's
    screenshot and console go to the artefacts folder."""
    pg = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg.console_lines = []
    pg.page_errors = []
    pg.on("console", lambda m: pg.console_lines.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: pg.page_errors.append(str(e)))
    yield pg
    if request.node.stash.get(FAILED, False):
        pg.screenshot(path=artifacts / "failure.png", full_page=True)
        (artifacts / "failure-console.txt").write_text("\n".join(pg.console_lines + pg.page_errors))
    pg.close()


@pytest.fixture
def shots(tmp_path: Path, artifacts: Path):
    """shots(page, "name"): a full-page screenshot into the tmp dir and runs/test-artifacts/web/<test>/."""

    def take(page, name: str) -> Path:
        p = tmp_path / f"{name}.png"
        page.screenshot(path=p, full_page=True)
        shutil.copy(p, artifacts / p.name)
        return p

    return take
