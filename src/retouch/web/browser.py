"""Drive the page in a real browser: a `retouch serve` subprocess on a free loopback port and Debian's chromium
through Playwright.  Shared by the end-to-end test (tests/web/) and the user guide's screenshots
(benchmarks/web_screens.py); nothing at run time imports it.

Playwright's own browser download cannot run here, so the system chromium is launched by path.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

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


class BrowserUnavailable(RuntimeError):
    """Playwright or chromium is not installed (the message says which and how to install it)."""


def chromium_path() -> str | None:
    for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if p and Path(p).is_file():
            return p
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(log: Path, *args: str, timeout: float = 90.0) -> Iterator[str]:
    """`retouch serve --port FREE ARGS...` in a subprocess (output to ``log``); yields its base URL once /healthz answers."""
    port = free_port()
    exe = Path(sys.executable).with_name("retouch")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "retouch.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [*cmd, "serve", "--host", "127.0.0.1", "--port", str(port), *args], stdout=fh, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}"
    try:
        t_end = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"retouch serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > t_end:
                    raise RuntimeError(
                        f"retouch serve did not answer /healthz within {timeout:.0f} s:\n{log.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def chromium():
    """A headless chromium (Playwright ``Browser``); ``BrowserUnavailable`` when the package or the browser is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise BrowserUnavailable("the playwright package is not installed (pip install -e '.[dev]')") from e
    exe = chromium_path()
    if exe is None:
        raise BrowserUnavailable("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
