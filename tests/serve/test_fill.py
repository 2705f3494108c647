"""The fill tasks over real HTTP: POST /v1/inpaint, /v1/erase, /v1/outpaint and their jobs (POST /v1/jobs with
``task``): the filled PNG with every pixel outside the mask the input's, the outpainted canvas grown by the sides,
the fill record, progress events, and every error naming its field (docs/serve.md)."""

from __future__ import annotations

import base64
import io
import json
import random
import threading
import time

import numpy as np
import pytest
from PIL import Image

from retouch.schema import EraseRequest

from .conftest import decode, png_bytes, scene_png, start_server, stop_server
from .test_api import assert_problem
from .test_jobs import read_events

MODEL = "shapes-inpaint"  # the shipped Shapes inpainting model, served by its folder's name


@pytest.fixture(scope="module")
def fills():
    """A server of the fill tasks alone (no edit model loads); the shipped inpainting model is served by default."""
    r = start_server(methods=["inpaint", "erase", "outpaint"], default_method="erase", max_concurrent=2)
    yield r
    stop_server(r)


@pytest.fixture
def limits(fills):
    """The fill server's settings, restored after the test (limits are read per request)."""
    s = fills.service.settings
    saved = s.model_dump()
    yield s
    for k, v in saved.items():
        setattr(s, k, v)


def square_mask(size=(128, 128), box=(40, 40, 88, 80)) -> np.ndarray:
    m = np.zeros(size, np.uint8)
    t, lf, b, r = box
    m[t:b, lf:r] = 255
    return m


def fill(client, path: str, image: bytes, data: dict | None = None, mask: bytes | None = None, **kw):
    files = {"image": ("in.png", image, "image/png")}
    if mask is not None:
        files["mask"] = ("mask.png", mask, "image/png")
    return client.post(path, files=files, data=data or {}, **kw)


def record_of(resp) -> dict:
    rec = json.loads(resp.headers["x-retouch-record"])
    assert json.loads(Image.open(io.BytesIO(resp.content)).text["retouch"]) == rec  # the PNG carries the same record
    return rec


# -- the routes on the default server -------------------------------------------------------------------------
def test_fill_routes_are_served_beside_edit(server):
    src = decode(scene_png(71))
    mask = square_mask()
    with server.client() as c:
        paths = c.get("/openapi.json").json()["paths"]
        assert {"/v1/edit", "/v1/inpaint", "/v1/erase", "/v1/outpaint"} <= set(paths)
        form = c.get("/openapi.json").json()["components"]["schemas"]
        outpaint_form = next(v for k, v in form.items() if "outpaint" in k)["properties"]
        assert {"image", "left", "right", "top", "bottom", "prompt", "backend", "model", "steps", "seed", "samples", "blend"} == set(
            outpaint_form
        )
        methods = {m["name"]: m for m in c.get("/v1/methods").json()}
        assert methods["erase"]["task"] == "erase" and methods["inpaint"]["task"] == "inpaint" and methods["outpaint"]["task"] == "outpaint"
        # edit models and fill models are apart: the fill list never holds the edit model, and the edit list is unchanged
        edit_models = c.get("/v1/models").json()
        assert {"name": "shapes-turbo", "default": True} in edit_models and all(m["name"] != MODEL for m in edit_models)
        assert c.get("/v1/models", params={"task": "erase"}).json() == [{"name": MODEL, "default": False}]
        assert_problem(c.get("/v1/models", params={"task": "paint"}), 422, "task", "unknown task")
        r = fill(c, "/v1/erase", png_bytes(src), mask=png_bytes(mask, "L"))
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
        out = decode(r.content)
        assert out.shape == src.shape and np.array_equal(out[mask == 0], src[mask == 0])
        # the edit route still refuses a fill method, and says where it goes
        assert_problem(
            c.post("/v1/edit", files={"image": ("a.png", png_bytes(src))}, data={"instruction": "x", "method": "erase"}),
            422,
            "method",
            "POST /v1/erase",
        )


# -- erase / inpaint / outpaint with the classic backends ---------------------------------------------------
def test_erase_each_classic_backend_keeps_every_pixel_outside_the_mask(fills):
    src = decode(scene_png(72))
    mask = square_mask()
    inside = mask > 0
    with fills.client() as c:
        for backend in ("telea", "ns", "biharmonic"):
            r = fill(c, "/v1/erase", png_bytes(src), {"backend": backend}, mask=png_bytes(mask, "L"))
            assert r.status_code == 200, r.text
            out = decode(r.content)
            assert out.shape == src.shape
            assert np.array_equal(out[~inside], src[~inside]), backend  # bit for bit
            assert not np.array_equal(out[inside], src[inside]), backend  # it filled
            rec = record_of(r)
            assert rec["task"] == "erase" and rec["method"] == "erase" and rec["backend"] == backend
            assert rec["model"] is None and rec["prompt"] is None and rec["steps"] is None and rec["seed"] is None
            assert rec["nfe"] == 0 and rec["width"] == 128 and rec["height"] == 128 and rec["crops"] == [[0, 0, 128, 128]]
            assert r.headers["x-retouch-nfe"] == "0" and float(r.headers["x-retouch-seconds"]) == rec["seconds"]


def test_erase_odd_size_json_answer_and_a_transparent_brush_mask(fills):
    src = np.asarray(Image.fromarray(decode(scene_png(73))).resize((150, 90)))
    brush = np.zeros((90, 150, 4), np.uint8)  # a stroke on a transparent layer: every non-zero alpha is to fill
    brush[30:60, 20:70] = (0, 0, 0, 200)
    inside = brush[..., 3] > 0
    with fills.client() as c:
        r = fill(c, "/v1/erase", png_bytes(src), mask=png_bytes(brush, "RGBA"), headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), r.text
    body = r.json()
    assert set(body) == {"record", "image", "media_type"} and body["media_type"] == "image/png"
    out = decode(base64.b64decode(body["image"]))
    assert out.shape == (90, 150, 3)
    assert np.array_equal(out[~inside], src[~inside]) and not np.array_equal(out[inside], src[inside])
    assert body["record"]["width"] == 150 and body["record"]["height"] == 90 and body["record"]["backend"] == "telea"


def test_outpaint_grows_the_canvas_by_the_sides_and_keeps_the_input(fills):
    src = decode(scene_png(74))
    with fills.client() as c:
        r = fill(c, "/v1/outpaint", png_bytes(src), {"left": "16", "right": "8", "top": "4"})
    assert r.status_code == 200, r.text
    out = decode(r.content)
    assert out.shape == (128 + 4, 128 + 16 + 8, 3)
    assert np.array_equal(out[4:132, 16:144], src)  # the input at its new place, bit for bit
    rec = record_of(r)
    assert rec["task"] == "outpaint" and rec["backend"] == "telea" and rec["width"] == 152 and rec["height"] == 132
    assert rec["extend"] == {"left": 16, "right": 8, "top": 4, "bottom": 0} and rec["prompt"] is None


# -- errors: each names its field ---------------------------------------------------------------------------
def test_fill_errors_name_the_field(fills, limits):
    img = scene_png(75)
    mask = png_bytes(square_mask(), "L")
    with fills.client() as c:
        # the mask: missing, of another size (both sizes named), selecting nothing, unreadable
        assert_problem(fill(c, "/v1/erase", img), 422, "mask", "required")
        assert_problem(fill(c, "/v1/inpaint", img, {"prompt": "a red star", "model": MODEL}), 422, "mask", "required")
        small = png_bytes(np.full((64, 48), 255, np.uint8), "L")
        body = assert_problem(fill(c, "/v1/erase", img, mask=small), 422, "mask")
        assert "48x64" in body["detail"] and "128x128" in body["detail"], body
        assert_problem(fill(c, "/v1/erase", img, mask=png_bytes(np.zeros((128, 128), np.uint8), "L")), 422, "mask", "no pixel")
        assert_problem(fill(c, "/v1/erase", img, mask=b"junk"), 422, "mask", "not a readable image")
        assert_problem(fill(c, "/v1/erase", b"junk", mask=mask), 422, "image", "not a readable image")
        # the backend and the model: unknown backend; a model only by a served name, never a path
        assert_problem(fill(c, "/v1/erase", img, {"backend": "photoshop"}, mask=mask), 422, "backend", "unknown fill backend")
        for path in ("models/shapes-inpaint", "../models/shapes-inpaint", "/etc"):
            assert_problem(fill(c, "/v1/erase", img, {"model": path}, mask=mask), 422, "model", "unknown inpainting model")
        assert_problem(fill(c, "/v1/erase", img, {"backend": "diffusion"}, mask=mask), 422, "model", "needs a model")
        assert_problem(fill(c, "/v1/erase", img, {"backend": "telea", "model": MODEL}, mask=mask), 422, "model", "classic")
        assert_problem(fill(c, "/v1/erase", img, {"model": MODEL, "steps": "0"}, mask=mask), 422, "steps")
        assert_problem(fill(c, "/v1/erase", img, {"seed": "-1"}, mask=mask), 422, "seed")
        assert_problem(fill(c, "/v1/erase", img, {"samples": "4"}, mask=mask), 422, "samples", "deterministic")
        assert_problem(fill(c, "/v1/erase", img, {"model": MODEL, "samples": "0"}, mask=mask), 422, "samples")
        assert_problem(fill(c, "/v1/erase", img, {"blend": "4"}, mask=mask), 422, "blend", "takes none")
        assert_problem(fill(c, "/v1/erase", img, {"model": MODEL, "blend": "-1"}, mask=mask), 422, "blend")
        # inpaint: a prompt is required (also with a model), and it needs a diffusion model
        assert_problem(fill(c, "/v1/inpaint", img, {"model": MODEL}, mask=mask), 422, "prompt", "needs a prompt")
        assert_problem(fill(c, "/v1/inpaint", img, {"model": MODEL, "prompt": "   "}, mask=mask), 422, "prompt", "needs a prompt")
        assert_problem(fill(c, "/v1/inpaint", img, {"prompt": "a red star"}, mask=mask), 422, "model", "diffusion inpainting model")
        # outpaint: all sides 0, a negative side, a prompt without a model, a canvas over the limits
        assert_problem(fill(c, "/v1/outpaint", img), 422, "left", "nothing to outpaint")
        assert_problem(fill(c, "/v1/outpaint", img, {"right": "-3"}), 422, "right")
        assert_problem(fill(c, "/v1/outpaint", img, {"top": "x"}), 422, "top")
        assert_problem(fill(c, "/v1/outpaint", img, {"left": "8", "prompt": "more sky"}), 422, "prompt", "diffusion inpainting model")
        assert_problem(fill(c, "/v1/outpaint", img, {"bottom": "4000"}), 422, "bottom", "at most 4096")
        limits.max_pixels = 150 * 150
        assert_problem(fill(c, "/v1/outpaint", img, {"left": "8", "right": "64"}), 422, "right", "max_pixels")
        assert fill(c, "/v1/outpaint", img, {"left": "8", "right": "8"}).status_code == 200  # 144 x 128 fits
        # what the method refuses at run time: a mask without surroundings for a classic fill
        full = png_bytes(np.full((128, 128), 255, np.uint8), "L")
        assert_problem(fill(c, "/v1/erase", img, mask=full), 422, "mask", "fills from the pixels around the mask")


# -- limits -------------------------------------------------------------------------------------------------------
def test_fill_limits_413_429_408(fills, limits):
    img = scene_png(76)
    mask = png_bytes(square_mask(), "L")
    with fills.client() as c:
        limits.max_body_bytes = 20_000
        big = png_bytes(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
        assert_problem(fill(c, "/v1/erase", big, mask=mask), 413, "body", "20000 bytes")
        limits.max_body_bytes = 32 * 1024 * 1024

        # 429: one admitted fill waits for its method (held here), so a second is over the cap of 1
        limits.max_concurrent, limits.retry_after_s = 1, 2
        telea = fills.service.loaded_fill(EraseRequest())
        first: list = []
        with telea.lock:

            def slow() -> None:
                with fills.client() as c2:
                    first.append(fill(c2, "/v1/erase", img, mask=mask))

            t = threading.Thread(target=slow)
            t.start()
            deadline = time.time() + 10
            while fills.service.running == 0 and time.time() < deadline:
                time.sleep(0.01)
            busy = fill(c, "/v1/erase", img, mask=mask)
            assert_problem(busy, 429, None, "at most 1")
            assert busy.headers["retry-after"] == "2"
        t.join(30)
        assert first[0].status_code == 200

        # 408: past the per-request timeout, and the slot is freed
        limits.request_timeout_s = 1e-6
        assert_problem(fill(c, "/v1/outpaint", img, {"left": "64"}), 408, None, "outpaint")
        deadline = time.time() + 10
        while fills.service.running and time.time() < deadline:
            time.sleep(0.02)
        assert fills.service.running == 0


# -- jobs ---------------------------------------------------------------------------------------------------------
def test_erase_job_with_progress_events_results_and_a_failing_item(fills):
    a, b = decode(scene_png(77)), decode(scene_png(78))
    mask = square_mask()
    full = np.full((128, 128), 255, np.uint8)
    edits = [
        {"image": "a.png", "mask": "m.png"},
        {"image": "b.png", "mask": "m.png", "backend": "ns"},
        {"image": "a.png", "mask": "full.png"},  # nothing around the mask to fill from: fails alone
    ]
    files = [
        ("files", ("a.png", png_bytes(a), "image/png")),
        ("files", ("b.png", png_bytes(b), "image/png")),
        ("files", ("m.png", png_bytes(mask, "L"), "image/png")),
        ("files", ("full.png", png_bytes(full, "L"), "image/png")),
    ]
    telea = fills.service.loaded_fill(EraseRequest())
    with fills.client() as c:
        with telea.lock:  # the job waits for the method until the stream below is open, so it sees every step
            r = c.post("/v1/jobs", files=files, data={"task": "erase", "edits": json.dumps(edits)})
            assert r.status_code == 202, r.text
            job = r.json()
            assert job["total"] == 3 and [it["image"] for it in job["items"]] == ["a.png", "b.png", "a.png"]
            events: list = []
            reader = threading.Thread(target=read_events, args=(fills.client(), job["id"], events))
            reader.start()
            deadline = time.time() + 10
            while not events and time.time() < deadline:
                time.sleep(0.02)
        reader.join(60)
        progress = [d["progress"] for n, d in events if n == "progress"]
        assert progress == sorted(progress) and progress[-1] == 1.0
        assert {(0, 1, 1), (1, 1, 1)} <= {(d["item"], d["step"], d["steps"]) for n, d in events if n == "progress" and d["steps"]}
        assert [d["index"] for n, d in events if n == "item"] == [0, 1, 2]
        end = events[-1]
        assert end[0] == "end" and end[1]["state"] == "done" and end[1]["finished"] == 2 and end[1]["failed"] == 1
        first, second, third = end[1]["items"]
        for it, src, backend in ((first, a, "telea"), (second, b, "ns")):
            res = c.get(it["result_url"])
            assert res.status_code == 200 and res.headers["content-type"] == "image/png"
            out = decode(res.content)
            assert np.array_equal(out[mask == 0], src[mask == 0]) and not np.array_equal(out[mask > 0], src[mask > 0])
            assert it["record"]["task"] == "erase" and it["record"]["backend"] == backend and "crops" in it["record"]
            assert json.loads(Image.open(io.BytesIO(res.content)).text["retouch"]) == it["record"]
        assert third["state"] == "failed" and third["error"]["status"] == 422 and third["error"]["field"] == "edits[2]"
        assert c.get(f"/v1/jobs/{job['id']}").json()["items"][0]["record"] == first["record"]  # the JOB keeps fill records


def test_outpaint_job(fills):
    src = decode(scene_png(79))
    with fills.client() as c:
        r = c.post(
            "/v1/jobs",
            files=[("files", ("s.png", png_bytes(src), "image/png"))],
            data={"task": "outpaint", "edits": json.dumps([{"image": "s.png", "bottom": 20}, {"image": "s.png", "left": 5, "top": 7}])},
        )
        assert r.status_code == 202, r.text
        job = read_events(c, r.json()["id"])[-1][1]
        assert job["state"] == "done" and job["finished"] == 2
        one = decode(c.get(job["items"][0]["result_url"]).content)
        two = decode(c.get(job["items"][1]["result_url"]).content)
    assert one.shape == (148, 128, 3) and np.array_equal(one[:128], src)
    assert two.shape == (135, 133, 3) and np.array_equal(two[7:, 5:], src)
    assert job["items"][1]["record"]["extend"] == {"left": 5, "right": 0, "top": 7, "bottom": 0}


def test_fill_job_errors_name_the_field(fills):
    img = scene_png(80)
    mask = png_bytes(square_mask(), "L")
    files = [("files", ("a.png", img, "image/png")), ("files", ("m.png", mask, "image/png"))]
    with fills.client() as c:
        post = lambda data: c.post("/v1/jobs", files=files, data=data)  # noqa: E731
        job = lambda task, *edits, **data: post({"task": task, "edits": json.dumps(list(edits))} | data)  # noqa: E731
        assert_problem(post({"task": "paint", "edits": "[]"}), 422, "task", "unknown task")
        assert_problem(post({"task": "erase"}), 422, "edits", "needs edits")
        assert_problem(post({"task": "erase", "edits": "nope"}), 422, "edits", "not json")
        assert_problem(job("erase", {"image": "a.png", "mask": "m.png"}, instruction="x"), 422, "instruction", "edit jobs")
        assert_problem(job("erase", {"image": "a.png"}), 422, "edits[0].mask", "needs one")
        assert_problem(job("erase", {"image": "a.png", "mask": "x.png"}), 422, "edits[0].mask", "not an uploaded file")
        assert_problem(job("erase", {"image": "/etc/hostname", "mask": "m.png"}), 422, "edits[0].image", "not an uploaded file")
        assert_problem(job("erase", {"image": "a.png", "mask": "m.png", "backend": "x"}), 422, "edits[0].backend", "unknown fill backend")
        assert_problem(job("erase", {"image": "a.png", "mask": "m.png", "prompt": "a cat"}), 422, "edits[0].prompt")  # erase has none
        assert_problem(job("erase", {"image": "a.png", "mask": "m.png", "model": "models/shapes-inpaint"}), 422, "edits[0].model")
        assert_problem(job("erase", {"image": "a.png", "mask": "m.png"}, model="/etc"), 422, "model", "unknown inpainting model")
        assert_problem(job("inpaint", {"image": "a.png", "mask": "m.png", "model": MODEL}), 422, "edits[0].prompt", "needs a prompt")
        assert_problem(job("outpaint", {"image": "a.png"}), 422, "edits[0].left", "nothing to outpaint")
        small = [("files", ("a.png", img, "image/png")), ("files", ("m.png", png_bytes(np.full((32, 32), 255, np.uint8), "L")))]
        r = c.post("/v1/jobs", files=small, data={"task": "erase", "edits": json.dumps([{"image": "a.png", "mask": "m.png"}])})
        body = assert_problem(r, 422, "edits[0].mask")
        assert "32x32" in body["detail"] and "128x128" in body["detail"]


# -- the shipped Shapes inpainting model (1 step) -------------------------------------------------------------
def test_erase_and_inpaint_with_the_shipped_model(fills):
    from retouch.world.fill_suite import sample_case

    case = sample_case("erase", random.Random("serve-fill"))
    src, m = case["source"], case["mask"]
    with fills.client() as c:
        data = {"model": MODEL, "steps": "1", "seed": "3"}
        r = fill(c, "/v1/erase", png_bytes(src), data, mask=png_bytes(m.astype(np.uint8) * 255, "L"))
        assert r.status_code == 200, r.text
        out = decode(r.content)
        assert out.shape == src.shape and np.array_equal(out[~m], src[~m]) and not np.array_equal(out[m], src[m])
        rec = record_of(r)
        assert rec["backend"] == "diffusion" and rec["model"] == MODEL and rec["steps"] == 1 and rec["seed"] == 3 and rec["nfe"] >= 1
        again = fill(c, "/v1/erase", png_bytes(src), data, mask=png_bytes(m.astype(np.uint8) * 255, "L"))
        assert np.array_equal(decode(again.content), out)  # seeded: the same fill
        # samples: that many fills averaged, each one a network evaluation per step
        mean = fill(c, "/v1/erase", png_bytes(src), data | {"samples": "3"}, mask=png_bytes(m.astype(np.uint8) * 255, "L"))
        assert mean.status_code == 200, mean.text
        assert record_of(mean)["nfe"] == 3 * rec["nfe"] and np.array_equal(decode(mean.content)[~m], src[~m])
        r = fill(
            c, "/v1/inpaint", png_bytes(src), data | {"prompt": "a large red solid star"}, mask=png_bytes(m.astype(np.uint8) * 255, "L")
        )
        assert r.status_code == 200, r.text
        ins = decode(r.content)
        assert np.array_equal(ins[~m], src[~m]) and record_of(r)["prompt"] == "a large red solid star"
        assert f"inpaint@{MODEL}" in c.get("/healthz").json()["loaded"]


def test_the_request_models_follow_the_fill_methods():
    """The schema's backend list and limits are the fill methods' own (no web framework imports them there)."""
    from retouch.methods.fill import BACKENDS, CLASSIC_BACKENDS
    from retouch.methods.inpaint import MAX_CANVAS
    from retouch.schema import CLASSIC_FILL_BACKENDS, FILL_BACKENDS, MAX_OUTPAINT_SIDE

    assert FILL_BACKENDS == BACKENDS and CLASSIC_FILL_BACKENDS == CLASSIC_BACKENDS and MAX_OUTPAINT_SIDE == MAX_CANVAS
