"""Contract tests of the one-shot routes over real HTTP: meta routes, POST /v1/edit, POST /v1/generate, and
every documented error and limit (docs/serve.md, "Errors")."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time

import numpy as np
import pytest
from PIL import Image

from .conftest import decode, png_bytes, scene_png

SEPIA = "make it a sepia picture"
TARGET = {"target_prompt": "a sepia picture of a large red solid star on a white background"}  # differs from every scene's caption


def assert_problem(resp, status: int, field: str | None = "__any__", contains: str = "") -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status and body["type"].startswith("urn:retouch:problem:") and body["title"] and body["detail"]
    if field != "__any__":
        assert body["field"] == field, body
    assert contains.lower() in body["detail"].lower(), body
    return body


def edit(client, image: bytes, data: dict, mask: bytes | None = None, **kw):
    files = {"image": ("in.png", image, "image/png")}
    if mask is not None:
        files["mask"] = ("mask.png", mask, "image/png")
    return client.post("/v1/edit", files=files, data=data, **kw)


# -- meta ---------------------------------------------------------------------------------------------------------
def test_healthz_methods_models_docs(server):
    with server.client() as c:
        h = c.get("/healthz").json()
        assert h["status"] == "ok" and "turbo@default" in h["loaded"]
        methods = {m["name"]: m for m in c.get("/v1/methods").json()}
        assert methods["turbo"] == {
            "name": "turbo",
            "task": "edit",
            "strength": True,
            "mask": True,
            "reuses_inversion": True,
            "default": True,
        }
        assert "identity" not in methods and "oracle" not in methods  # reference methods need ground truth
        assert methods["ddim4"]["strength"] is False and methods["ddim4"]["reuses_inversion"] is False
        models = c.get("/v1/models").json()
        assert {"name": "shapes-turbo", "default": True} in models and all(set(m) == {"name", "default"} for m in models)
        docs = c.get("/docs")
        assert docs.status_code == 200 and "cdn" not in docs.text.lower()  # Swagger UI from bundled files, no CDN
        js = re.search(r'src="([^"]+swagger-ui-bundle\.js)"', docs.text).group(1)
        assert c.get(js).status_code == 200
        page = c.get("/")  # the browser editor's static files
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        paths = c.get("/openapi.json").json()["paths"]
        for p in ("/v1/edit", "/v1/generate", "/v1/sessions", "/v1/sessions/{sid}/edits", "/v1/jobs", "/v1/jobs/{job_id}/events"):
            assert p in paths
        assert_problem(c.get("/v1/nothing-here"), 404, None, "no route")


# -- POST /v1/edit --------------------------------------------------------------------------------------------------
def test_edit_answers_png_with_record_in_headers_and_text_chunks(server):
    img = scene_png(11)
    with server.client() as c:
        r = edit(c, img, {"instruction": SEPIA})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    rec = json.loads(r.headers["x-retouch-record"])
    assert rec["method"] == "turbo" and rec["instruction"] == SEPIA
    assert rec["nfe_inversion"] == 8 and rec["nfe_edit"] == 4 and rec["seconds"] > 0
    assert "sepia picture" in rec["target_caption"] and "sepia" not in rec["source_caption"]
    assert r.headers["x-retouch-nfe-edit"] == "4" and float(r.headers["x-retouch-seconds"]) == rec["seconds"]
    assert r.headers["x-retouch-target-caption"].startswith("a sepia picture")
    png = Image.open(io.BytesIO(r.content))
    assert png.size == (128, 128)
    assert json.loads(png.text["retouch"]) == rec and png.text["target_caption"] == rec["target_caption"]
    assert not np.array_equal(decode(r.content), decode(img))  # it edited


def test_edit_json_answer_and_odd_sizes(server):
    src = decode(scene_png(12))
    odd = np.asarray(Image.fromarray(src).resize((150, 90)))  # not square, not a multiple of anything
    with server.client() as c:
        r = edit(
            c,
            png_bytes(odd),
            {"target_prompt": "a sepia picture of a red star on a white background"},
            headers={"Accept": "application/json"},
        )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"record", "image", "media_type"} and body["media_type"] == "image/png"
    out = decode(base64.b64decode(body["image"]))
    assert out.shape == (90, 150, 3)
    assert body["record"]["width"] == 150 and body["record"]["height"] == 90 and body["record"]["instruction"] is None


def test_edit_with_mask_keeps_every_pixel_outside_it(server):
    src = decode(scene_png(13))
    mask = np.zeros((128, 128), np.uint8)
    mask[32:96, 32:96] = 255
    with server.client() as c:
        r = edit(
            c, png_bytes(src), {"instruction": "change the background to a starry night sky", "strength": "1.2"}, mask=png_bytes(mask, "L")
        )
    assert r.status_code == 200, r.text
    out = decode(r.content)
    outside = mask == 0
    assert np.array_equal(out[outside], src[outside])
    assert not np.array_equal(out[~outside], src[~outside])
    rec = json.loads(r.headers["x-retouch-record"])
    assert rec["mask"] == "user" and rec["strength"] == 1.2


def test_generate(server):
    with server.client() as c:
        r = c.post("/v1/generate", json={"prompt": "a red star on a white background", "seed": 5})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        rec = json.loads(r.headers["x-retouch-record"])
        assert rec["steps"] == 4 and rec["nfe"] == 4 and rec["seed"] == 5
        assert json.loads(Image.open(io.BytesIO(r.content)).text["retouch"]) == rec
        again = c.post(
            "/v1/generate", json={"prompt": "a red star on a white background", "seed": 5}, headers={"Accept": "application/json"}
        )
        assert np.array_equal(decode(base64.b64decode(again.json()["image"])), decode(r.content))  # seeded: the same image
        assert_problem(c.post("/v1/generate", json={"prompt": "   "}), 422, None, "empty")
        assert_problem(c.post("/v1/generate", json={"prompt": "x", "steps": 0}), 422, "steps")
        assert_problem(c.post("/v1/generate", json={"prompt": "x", "model": "/etc"}), 422, "model", "unknown model")
        assert_problem(c.post("/v1/generate", json={"prompt": "x", "path": "/tmp/x.png"}), 422, "path")


# -- errors: each field named -------------------------------------------------------------------------------------
def test_edit_input_errors_name_the_field(server):
    img = scene_png(14)
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 3] = 128
    with server.client() as c:
        assert_problem(c.post("/v1/edit", data={"instruction": SEPIA}), 422, "image", "required")
        assert_problem(edit(c, b"not an image", {"instruction": SEPIA}), 422, "image", "not a readable image")
        assert "BytesIO" not in edit(c, b"not an image", {"instruction": SEPIA}).json()["detail"]
        assert_problem(edit(c, png_bytes(rgba, "RGBA"), {"instruction": SEPIA}), 422, "image", "transparent")
        assert_problem(edit(c, png_bytes(np.zeros((8, 8, 3), np.uint8)), {"instruction": SEPIA}), 422, "image", "sides must lie")
        assert_problem(edit(c, img, {}), 422, "instruction", "give an instruction or a target_prompt")
        assert_problem(edit(c, img, {"instruction": "  "}), 422, "instruction")
        assert_problem(edit(c, img, {"instruction": SEPIA, "target_prompt": "a cat"}), 422, "target_prompt", "not both")
        assert_problem(edit(c, img, {"instruction": SEPIA, "strength": "2"}), 422, "strength")
        assert_problem(edit(c, img, {"instruction": SEPIA, "strength": "strong"}), 422, "strength")
        assert_problem(edit(c, img, {"instruction": SEPIA, "method": "ddim4", "strength": "0.5"}), 422, "strength", "no edit strength")
        assert_problem(edit(c, img, {"instruction": SEPIA, "method": "nope"}), 422, "method", "unknown method")
        assert_problem(edit(c, img, {"instruction": SEPIA, "method": "identity"}), 422, "method", "unknown method")
        assert_problem(edit(c, img, {"instruction": SEPIA, "model": "../models/shapes-turbo"}), 422, "model", "unknown model")
        # masks: size, mode, empty
        assert_problem(
            edit(c, img, {"instruction": SEPIA}, mask=png_bytes(np.full((64, 64), 255, np.uint8), "L")), 422, "mask", "must match"
        )
        assert_problem(
            edit(c, img, {"instruction": SEPIA}, mask=png_bytes(np.zeros((128, 128, 3), np.uint8))), 422, "mask", "single-channel"
        )
        assert_problem(edit(c, img, {"instruction": SEPIA}, mask=png_bytes(np.zeros((128, 128), np.uint8), "L")), 422, "mask", "no pixel")
        assert_problem(edit(c, img, {"instruction": SEPIA}, mask=b"junk"), 422, "mask", "not a readable image")
        # what the method refuses comes back as a 422 too (the rewriter cannot use this instruction)
        assert_problem(edit(c, img, {"instruction": "qwxz blorp"}), 422, "instruction")


# -- limits ------------------------------------------------------------------------------------------------------
@pytest.fixture
def settings(server):
    """The running server's settings, restored after the test (limits are read per request)."""
    s = server.service.settings
    saved = s.model_dump()
    yield s
    for k, v in saved.items():
        setattr(s, k, v)


def test_max_pixels(server, settings):
    settings.max_pixels = 100 * 100
    with server.client() as c:
        assert_problem(edit(c, scene_png(15), {"instruction": SEPIA}), 422, "image", "at most 10000")


def test_max_body_size_by_length_and_by_stream(server, settings):
    settings.max_body_bytes = 20_000
    big = png_bytes(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))  # ~49 kB of noise
    with server.client() as c:
        assert_problem(edit(c, big, {"instruction": SEPIA}), 413, "body", "20000 bytes")

        def chunks():  # a valid multipart body without Content-Length: the limit is counted as it streams in
            yield b'--zzz\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
            for _ in range(0, 60_000, 4096):
                yield b"x" * 4096
            yield b"\r\n--zzz--\r\n"

        r = c.post("/v1/jobs", content=chunks(), headers={"content-type": "multipart/form-data; boundary=zzz"})
        assert "content-length" not in r.request.headers
        assert_problem(r, 413, "body")


def test_concurrency_cap_answers_429_with_retry_after(server, settings):
    settings.max_concurrent = 1
    settings.retry_after_s = 3
    imgs = [scene_png(20 + k) for k in range(4)]
    results: list = [None] * 4
    barrier = threading.Barrier(4)

    def go(k: int) -> None:
        with server.client() as c:
            barrier.wait()
            results[k] = edit(c, imgs[k], TARGET)

    threads = [threading.Thread(target=go, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert 200 in codes and 429 in codes and all(code in (200, 429) for code in codes), [r.text[:200] for r in results]
    busy = next(r for r in results if r.status_code == 429)
    assert busy.headers["retry-after"] == "3"
    assert_problem(busy, 429, None, "at most 1")


def test_request_timeout_answers_408_and_frees_the_slot(server, settings):
    settings.request_timeout_s = 0.05
    with server.client() as c:
        assert_problem(edit(c, scene_png(30), TARGET), 408, None, "0.05 s")
        deadline = time.time() + 10
        while c.get("/healthz").json()["running"] and time.time() < deadline:  # the edit stops at its next step
            time.sleep(0.05)
        assert c.get("/healthz").json()["running"] == 0
        settings.request_timeout_s = 60
        assert edit(c, scene_png(30), TARGET).status_code == 200
