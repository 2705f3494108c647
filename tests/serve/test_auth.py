"""The token: required on /v1 when set, refused start-up on a non-loopback host without one (the CLI too)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from retouch.serve import ServeSettings, create_app

from .conftest import start_server, stop_server
from .test_api import assert_problem

TOKEN = "s3cret-token-for-the-tests-0123"


@pytest.fixture(scope="module")
def guarded():
    r = start_server(token=TOKEN)  # no model is loaded: the token is checked before anything runs
    yield r
    stop_server(r)


def test_token_is_required_on_v1(guarded):
    with guarded.client() as c:
        r = c.get("/v1/methods")
        assert_problem(r, 401, "Authorization", "needs a token")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert_problem(c.get("/v1/methods", headers={"Authorization": "Bearer wrong"}), 401, "Authorization", "wrong")
        assert_problem(c.post("/v1/edit", files={"image": ("a.png", b"x")}, data={"instruction": "x"}), 401)
        assert c.get("/v1/methods", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get(f"/v1/models?access_token={TOKEN}").status_code == 200  # GET only: for <img src> and EventSource
        assert_problem(c.post(f"/v1/sessions?access_token={TOKEN}", files={"image": ("a.png", b"x")}), 401)
        assert c.get("/healthz").status_code == 200  # open: says nothing about anyone's images


def test_non_loopback_needs_a_token():
    with pytest.raises(ValueError, match="not a loopback address"):
        create_app(ServeSettings(host="0.0.0.0"))
    with pytest.raises(ValueError, match="shorter than 16"):
        create_app(ServeSettings(host="0.0.0.0", token="short"))
    ServeSettings(host="0.0.0.0", token=TOKEN).check()
    ServeSettings(host="::1").check()
    ServeSettings(host="localhost").check()


def test_cli_refuses_to_start_without_a_token(tmp_path, capsys):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "retouch.cli", "serve", "--host", "0.0.0.0", "--port", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)  # the real command, in its own process
    assert r.returncode == 2 and "needs a token" in r.stderr and "Traceback" not in r.stderr
    from retouch.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--token-file", str(tmp_path / "missing")]) == 2
    assert "token file" in capsys.readouterr().err
    (tmp_path / "empty").write_text("\n")
    assert main(["serve", "--host", "0.0.0.0", "--token-file", str(tmp_path / "empty")]) == 2
    assert "token is empty" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path / "no-model")]) == 2
    assert "no such model folder" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--preload", "--port", "0"]) == 2  # fails before the port opens
    assert "cannot preload 'turbo'" in capsys.readouterr().err
    assert main(["serve", "--method", "oracle"]) == 2
    assert "reference method" in capsys.readouterr().err


def test_cli_serves_on_loopback_with_a_token(tmp_path):
    """`retouch serve` itself (uvicorn in its own process): up, token enforced, no model loaded until asked."""
    import time

    import httpx

    from .conftest import free_port

    (tmp_path / "token").write_text(TOKEN + "\n")
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "retouch.cli", "serve", "--port", str(port), "--token-file", str(tmp_path / "token")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.time() + 120
        while True:
            try:
                health = httpx.get(f"{url}/healthz", timeout=2)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.time() < deadline, "retouch serve did not start"
                time.sleep(0.2)
        assert health.json()["status"] == "ok" and health.json()["loaded"] == []
        assert httpx.get(f"{url}/v1/methods").status_code == 401
        assert httpx.get(f"{url}/v1/methods", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
