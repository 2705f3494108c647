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


class EditorPage:
    """The editor page as a user drives it (Playwright ``Page`` underneath, as ``.page``): open a file, brush,
    edit, move the strength slider, undo / redo, download; plus reads of what it shows."""

    def __init__(self, page) -> None:
        self.page = page

    def goto(self, url: str) -> None:
        self.page.goto(url.rstrip("/") + "/")
        self.page.wait_for_selector("#method option", state="attached")

    def idle(self) -> None:
        self.page.wait_for_function("!document.body.classList.contains('busy')")

    def turns(self) -> int:
        return self.page.locator("#history li").count()

    def current(self) -> int:
        return int(self.page.get_attribute("#history li.current", "data-index"))

    def open(self, path: str | Path) -> None:
        self.page.set_input_files("#file", str(path))
        self.page.wait_for_selector("#history li[data-index='0'].current")
        self.idle()

    def brush(self, points: list[tuple[float, float]], size: int | None = None, erase: bool = False) -> None:
        """One stroke through ``points`` (fractions of the picture's width and height)."""
        if size is not None:
            self.page.fill("#brush-size", str(size))
        self.page.check("#tool-erase" if erase else "#tool-brush")
        box = self.page.locator("#mask").bounding_box()
        pts = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
        self.page.mouse.move(*pts[0])
        self.page.mouse.down()
        for p in pts[1:]:
            self.page.mouse.move(*p, steps=10)
        self.page.mouse.up()

    def edit(self, instruction: str) -> None:
        n = self.current() + 1  # the new turn follows the current one (an undone tail is dropped)
        self.page.fill("#instruction", instruction)
        self.page.click("#edit-btn")
        self.page.wait_for_selector(f"#history li[data-index='{n}'].current")
        self.idle()

    def set_strength(self, value: float) -> None:
        """Move the slider; the page re-renders the current turn (wait until the history shows the new strength)."""
        self.page.fill("#strength", str(value))
        self.page.wait_for_function(
            "s => (document.querySelector('#history li.current .cost') || {textContent: ''}).textContent.includes('strength ' + s)",
            arg=f"{value:.2f}",
        )
        self.idle()

    def undo(self) -> None:
        k = self.current()
        self.page.click("#undo")
        self.page.wait_for_selector(f"#history li[data-index='{k - 1}'].current")
        self.idle()

    def redo(self) -> None:
        k = self.current()
        self.page.click("#redo")
        self.page.wait_for_selector(f"#history li[data-index='{k + 1}'].current")
        self.idle()

    def download(self, path: str | Path):
        """Save what the Download button gives; returns (HxWx3 uint8 pixels, the PNG's ``retouch`` record or None)."""
        import json

        import numpy as np
        from PIL import Image

        with self.page.expect_download() as d:
            self.page.click("#download")
        d.value.save_as(path)
        with Image.open(path) as im:
            if im.format != "PNG":
                raise ValueError(f"the download is {im.format}, not PNG")
            record = json.loads(im.text["retouch"]) if "retouch" in im.text else None
            return np.asarray(im.convert("RGB")), record

    def mask(self):
        """The brush canvas's coverage (alpha >= 128) as an HxW bool array: what the page sends as the mask."""
        import numpy as np

        w, h, bits = self.page.evaluate(
            """() => {
            const c = document.getElementById('mask');
            const a = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let s = '';
            for (let i = 3; i < a.length; i += 4) s += a[i] >= 128 ? '1' : '0';
            return [c.width, c.height, s];
        }"""
        )
        return np.frombuffer(bits.encode(), np.uint8).reshape(h, w) == ord("1")

    def auto_mask(self):
        """The previewed mask of the current edit (the overlay canvas, its alpha is 0.45 x the server's grey) as HxW bool."""
        import numpy as np

        w, h, bits = self.page.evaluate(
            """() => {
            const c = document.getElementById('auto-mask');
            const a = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let s = '';
            for (let i = 3; i < a.length; i += 4) s += a[i] > 0.45 * 127.5 ? '1' : '0';
            return [c.width, c.height, s];
        }"""
        )
        return np.frombuffer(bits.encode(), np.uint8).reshape(h, w) == ord("1")

    def image(self, selector: str):
        """An <img> of the page as the browser decoded it (HxWx3 uint8, its natural size)."""
        import numpy as np

        w, h, data = self.page.evaluate(
            """(sel) => {
            const img = document.querySelector(sel);
            const c = new OffscreenCanvas(img.naturalWidth, img.naturalHeight);
            const x = c.getContext('2d');
            x.drawImage(img, 0, 0);
            return [c.width, c.height, Array.from(x.getImageData(0, 0, c.width, c.height).data)];
        }""",
            selector,
        )
        return np.asarray(data, np.uint8).reshape(h, w, 4)[..., :3]
