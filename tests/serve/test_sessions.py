"""Sessions over real HTTP: one upload and one inversion, edits at the cost of the edit alone, undo/redo,
every turn's image and mask, progress as server-sent events, LRU eviction."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
from PIL import Image

from .conftest import decode, png_bytes, scene_png
from .test_api import assert_problem, edit

SEPIA = "make it a sepia picture"
STARS = "change the background to a starry night sky"


def open_session(c, image: bytes, **data):
    r = c.post("/v1/sessions", files={"image": ("in.png", image, "image/png")}, data=data)
    assert r.status_code == 201, r.text
    return r.json()


def test_session_inverts_once_then_edits_cost_the_edit_alone(server):
    img = scene_png(41)
    with server.client() as c:
        s = open_session(c, img)
        assert s["prepare"]["nfe"] == 8 and s["prepare"]["seconds"] > 0  # TurboEdit: 4 steps x 2 evaluations
        assert s["current"] == 0 and not s["can_undo"] and not s["can_redo"] and len(s["turns"]) == 1
        assert s["width"] == 128 and s["source_caption"] and s["turns"][0]["caption"] == s["source_caption"]
        sid = s["id"]
        s1 = c.post(f"/v1/sessions/{sid}/edits", data={"instruction": SEPIA}).json()
        t1 = s1["turns"][1]
        assert s1["current"] == 1 and s1["can_undo"] and t1["instruction"] == SEPIA
        assert t1["record"]["nfe_inversion"] == 0 and t1["record"]["nfe_edit"] == 4 and t1["record"]["inversion_reused"]
        # the session's edit is the one-shot edit, bit for bit (the same maths, the inversion computed once)
        one_shot = edit(c, img, {"instruction": SEPIA})
        turn1 = c.get(t1["image_url"])
        assert np.array_equal(decode(turn1.content), decode(one_shot.content))
        assert json.loads(Image.open(io.BytesIO(turn1.content)).text["retouch"]) == t1["record"]
        assert json.loads(turn1.headers["x-retouch-record"]) == t1["record"]
        # a second instruction chains onto the first turn's caption and still edits the uploaded image
        s2 = c.post(f"/v1/sessions/{sid}/edits", data={"instruction": STARS}).json()
        t2 = s2["turns"][2]
        assert t2["record"]["nfe_inversion"] == 0 and "sepia picture" in t2["caption"] and "starry night sky" in t2["caption"]
        assert t2["record"]["source_caption"] == s["source_caption"]
        # turn 0 is the upload itself
        assert np.array_equal(decode(c.get(s["turns"][0]["image_url"]).content), decode(img))


def test_strength_slider_replace_undo_redo(server):
    with server.client() as c:
        sid = open_session(c, scene_png(45))["id"]
        full = c.post(f"/v1/sessions/{sid}/edits", data={"instruction": SEPIA}).json()
        img_full = decode(c.get(full["turns"][1]["image_url"]).content)
        half = c.post(f"/v1/sessions/{sid}/edits", data={"replace": "true", "strength": "0.4"}).json()
        assert half["current"] == 1 and len(half["turns"]) == 2  # re-rendered, not stacked
        t = half["turns"][1]
        assert t["strength"] == 0.4 and t["record"]["strength"] == 0.4 and t["caption"] == full["turns"][1]["caption"]
        assert t["instruction"] == SEPIA and t["record"]["nfe_inversion"] == 0
        img_half = decode(c.get(t["image_url"]).content)
        src = decode(c.get(half["turns"][0]["image_url"]).content).astype(int)
        # strength 0.4 lies between the reconstruction and the full edit
        assert 0 < np.abs(img_half - src).mean() < np.abs(img_full.astype(int) - src).mean()
        c.post(f"/v1/sessions/{sid}/edits", data={"instruction": STARS})
        u = c.post(f"/v1/sessions/{sid}/undo").json()
        assert u["current"] == 1 and u["can_redo"] and len(u["turns"]) == 3
        assert c.post(f"/v1/sessions/{sid}/redo").json()["current"] == 2
        assert_problem(c.post(f"/v1/sessions/{sid}/redo"), 409, None, "nothing to redo")
        c.post(f"/v1/sessions/{sid}/undo")
        c.post(f"/v1/sessions/{sid}/undo")
        assert_problem(c.post(f"/v1/sessions/{sid}/undo"), 409, None, "nothing to undo")
        assert_problem(
            c.post(f"/v1/sessions/{sid}/edits", data={"replace": "true", "strength": "0.5"}), 422, "replace", "nothing to replace"
        )
        # an edit after an undo drops the redo list
        new = c.post(f"/v1/sessions/{sid}/edits", data={"target_prompt": "a sepia picture of a large red solid star on a white background"})
        assert new.status_code == 200 and new.json()["current"] == 1 and len(new.json()["turns"]) == 2 and not new.json()["can_redo"]


def test_session_mask_edit_mask_preview_and_errors(server):
    src = decode(scene_png(43))
    mask = np.zeros((128, 128), np.uint8)
    mask[:, :64] = 255
    with server.client() as c:
        sid = open_session(c, png_bytes(src))["id"]
        r = c.post(f"/v1/sessions/{sid}/edits", data={"instruction": STARS}, files={"mask": ("m.png", png_bytes(mask, "L"), "image/png")})
        assert r.status_code == 200, r.text
        t = r.json()["turns"][1]
        assert t["has_mask"] and t["record"]["mask"] == "user"
        out = decode(c.get(t["image_url"]).content)
        assert np.array_equal(out[:, 64:], src[:, 64:])
        preview = Image.open(io.BytesIO(c.get(f"/v1/sessions/{sid}/turns/1/mask").content))
        assert preview.mode == "L" and np.array_equal(np.asarray(preview) > 127, mask > 127)
        # without a user mask, turbo's default edits the whole image: an all-white preview
        c.post(f"/v1/sessions/{sid}/edits", data={"instruction": SEPIA})
        assert (np.asarray(Image.open(io.BytesIO(c.get(f"/v1/sessions/{sid}/turns/2/mask").content))) == 255).all()
        assert_problem(c.get(f"/v1/sessions/{sid}/turns/0/mask"), 404, "k", "no mask")
        assert_problem(c.get(f"/v1/sessions/{sid}/turns/9/image"), 404, "k")
        bad = png_bytes(np.full((64, 64), 255, np.uint8), "L")
        assert_problem(
            c.post(f"/v1/sessions/{sid}/edits", data={"instruction": SEPIA}, files={"mask": ("m.png", bad)}), 422, "mask", "must match"
        )
        assert_problem(c.post(f"/v1/sessions/{sid}/edits", data={}), 422, "instruction")
        assert_problem(c.post(f"/v1/sessions/{sid}/edits", data={"instruction": SEPIA, "strength": "-1"}), 422, "strength")
        assert_problem(c.post("/v1/sessions", data={}), 422, "image", "required")
        assert_problem(c.post("/v1/sessions", files={"image": ("x.png", b"junk")}), 422, "image")
        assert_problem(c.post("/v1/sessions", files={"image": ("x.png", png_bytes(src))}, data={"method": "oracle"}), 422, "method")
        assert_problem(c.get("/v1/sessions/does-not-exist"), 404, None, "no session")
        assert c.delete(f"/v1/sessions/{sid}").status_code == 204
        assert_problem(c.get(f"/v1/sessions/{sid}"), 404)
        assert_problem(c.post(f"/v1/sessions/{sid}/edits", data={"instruction": SEPIA}), 404)


def test_session_progress_events(server):
    with server.client() as c:
        sid = open_session(c, scene_png(44))["id"]
        events: list[tuple[str, dict]] = []
        ready = threading.Event()

        def listen() -> None:
            with server.client() as lc, lc.stream("GET", f"/v1/sessions/{sid}/events") as st:
                assert st.headers["content-type"].startswith("text/event-stream")
                name = None
                for line in st.iter_lines():
                    ready.set()
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        events.append((name, json.loads(line[6:])))
                        if name == "end":
                            return

        th = threading.Thread(target=listen, daemon=True)
        th.start()
        assert ready.wait(10)
        assert c.post(f"/v1/sessions/{sid}/edits", data={"instruction": SEPIA}).status_code == 200
        c.delete(f"/v1/sessions/{sid}")  # ends the stream
        th.join(10)
    steps = [d["step"] for n, d in events if n == "progress" and d.get("stage") == "edit" and d["state"] == "running"]
    assert steps and steps[-1] == 4 and steps == sorted(steps)
    assert all(d.get("steps") in (0, 4) for n, d in events if n == "progress" and d.get("stage") == "edit")
    assert events[-1] == ("end", {"state": "closed"})


def test_sessions_are_bounded_least_recently_used_first(server):
    svc = server.service
    assert svc.settings.max_sessions == 3
    with server.client() as c:
        for sid in list(svc.sessions):
            c.delete(f"/v1/sessions/{sid}")
        ids = [open_session(c, scene_png(50 + k))["id"] for k in range(3)]
        c.get(f"/v1/sessions/{ids[0]}")  # touched: now the most recently used
        fourth = open_session(c, scene_png(53))["id"]
        assert_problem(c.get(f"/v1/sessions/{ids[1]}"), 404, None, "evicted")  # the least recently used went
        for sid in (ids[0], ids[2], fourth):
            assert c.get(f"/v1/sessions/{sid}").status_code == 200
        # the memory bound: room for one session only
        saved = svc.settings.max_session_bytes
        svc.settings.max_session_bytes = svc.sessions[fourth].nbytes + 1
        try:
            fifth = open_session(c, scene_png(54))["id"]
            assert list(svc.sessions) == [fifth] and c.get(f"/v1/sessions/{fourth}").status_code == 404
        finally:
            svc.settings.max_session_bytes = saved
