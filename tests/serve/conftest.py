"""A real server: uvicorn on a free loopback port in a thread of the test process, spoken to over HTTP
with httpx (not FastAPI's in-process client)."""

from __future__ import annotations

import io
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    url: str
    app: object
    server: object
    thread: threading.Thread

    @property
    def service(self):
        return self.app.state.service

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)


def start_server(**settings) -> Running:
    import uvicorn

    from retouch.serve import ServeSettings, create_app

    port = free_port()
    app = create_app(ServeSettings(port=port, **settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 600  # loading turbo takes seconds; minutes on a crowded machine
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return Running(f"http://127.0.0.1:{port}", app, server, thread)


def stop_server(r: Running) -> None:
    r.server.should_exit = True
    r.thread.join(timeout=15)


@pytest.fixture(scope="package")
def server() -> Iterator[Running]:
    """The default settings with turbo (the shipped Shapes models) loaded at start-up."""
    r = start_server(preload=["turbo"], max_concurrent=2, max_sessions=3)
    yield r
    stop_server(r)


def scene_png(seed: int = 3, size: int = 128) -> bytes:
    from retouch.world import random_scene, render_pil

    buf = io.BytesIO()
    render_pil(random_scene(random.Random(seed)), size).save(buf, format="PNG")
    return buf.getvalue()


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    """PNG bytes of a uint8 array (HxW: mode L, HxWx3: RGB, HxWx4: RGBA); ``mode`` checks what Pillow made of it."""
    img = Image.fromarray(arr)
    assert mode is None or img.mode == mode, (img.mode, mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
