"""Jobs over real HTTP: a batch of edits, progress from the methods' callbacks as server-sent events, results."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
from PIL import Image

from .conftest import decode, png_bytes, scene_png
from .test_api import assert_problem

SEPIA = "make it a sepia picture"


def read_events(client, job_id: str, events: list | None = None) -> list[tuple[str, dict]]:
    events = [] if events is None else events
    name = None
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as st:
        assert st.status_code == 200 and st.headers["content-type"].startswith("text/event-stream")
        for line in st.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events


def test_job_runs_with_progress_events_and_results(server):
    a, b = scene_png(46), scene_png(48)  # neither is sepia already
    turbo = server.service.loaded("turbo", None)
    with server.client() as c:
        with turbo.lock:  # the job waits for the model until the stream below is open, so it sees every step
            r = c.post(
                "/v1/jobs", files=[("files", ("a.png", a, "image/png")), ("files", ("b.png", b, "image/png"))], data={"instruction": SEPIA}
            )
            assert r.status_code == 202, r.text
            job = r.json()
            assert job["total"] == 2 and [it["image"] for it in job["items"]] == ["a.png", "b.png"]
            assert job["state"] in ("queued", "running") and job["finished"] == 0
            events: list = []
            reader = threading.Thread(target=read_events, args=(server.client(), job["id"], events))
            reader.start()
            deadline = time.time() + 10
            while not events and time.time() < deadline:
                time.sleep(0.02)
        reader.join(60)
        progress = [d["progress"] for n, d in events if n == "progress"]
        assert progress == sorted(progress) and progress[0] == 0.0 and progress[-1] == 1.0
        steps = {(d["item"], d["step"]) for n, d in events if n == "progress" and d["steps"]}
        assert {(0, 1), (0, 2), (0, 3), (0, 4), (1, 4)} <= steps  # per-step progress, from the method's callback
        items = [d for n, d in events if n == "item"]
        assert [it["index"] for it in items] == [0, 1] and all(it["state"] == "done" for it in items)
        assert events[-1][0] == "end" and events[-1][1]["state"] == "done" and events[-1][1]["finished"] == 2
        final = c.get(f"/v1/jobs/{job['id']}").json()
        assert final["state"] == "done" and final["progress"] == 1.0 and final["failed"] == 0
        for it, src in zip(final["items"], (a, b), strict=True):
            res = c.get(it["result_url"])
            assert res.status_code == 200 and res.headers["content-type"] == "image/png"
            assert json.loads(Image.open(io.BytesIO(res.content)).text["retouch"]) == it["record"]
            assert it["record"]["nfe_edit"] == 4 and "sepia picture" in it["record"]["target_caption"]
            assert decode(res.content).shape == decode(src).shape
        assert_problem(c.get(f"/v1/jobs/{job['id']}/results/5"), 404, "k")
        assert c.delete(f"/v1/jobs/{job['id']}").status_code == 204
        assert_problem(c.get(f"/v1/jobs/{job['id']}"), 404, None, "no job")


def test_job_edits_list_with_masks_methods_and_a_failing_item(server):
    src = decode(scene_png(63))
    mask = np.zeros((128, 128), np.uint8)
    mask[64:] = 255
    edits = [
        {"image": "s.png", "mask": "m.png", "instruction": "change the background to a starry night sky", "strength": 0.8},
        {"image": "s.png", "target_prompt": "a sepia picture of a large red solid star on a white background", "method": "ddim4"},
        {"image": "s.png", "instruction": "make it a qwxz blorp"},  # the rewriter cannot do this one
    ]
    files = [("files", ("s.png", png_bytes(src), "image/png")), ("files", ("m.png", png_bytes(mask, "L"), "image/png"))]
    with server.client() as c:
        r = c.post("/v1/jobs", files=files, data={"edits": json.dumps(edits)})
        assert r.status_code == 202, r.text
        jid = r.json()["id"]
        events = read_events(c, jid)
        job = events[-1][1]
        assert job["state"] == "done" and job["finished"] == 2 and job["failed"] == 1
        first, second, third = job["items"]
        out = decode(c.get(first["result_url"]).content)
        assert np.array_equal(out[:64], src[:64]) and first["record"]["mask"] == "user" and first["record"]["strength"] == 0.8
        assert second["record"]["method"] == "ddim4" and second["record"]["nfe_inversion"] == 4
        assert third["state"] == "failed" and third["error"]["status"] == 422 and third["error"]["field"] == "edits[2]"
        assert third["result_url"] is None
        assert_problem(c.get(f"/v1/jobs/{jid}/results/2"), 409, "k", "failed")


def test_job_request_errors_name_the_field(server):
    img = scene_png(64)
    one = [("files", ("a.png", img, "image/png"))]
    with server.client() as c:
        post = lambda files, data: c.post("/v1/jobs", files=files, data=data)  # noqa: E731
        assert_problem(c.post("/v1/jobs", data={"instruction": SEPIA}), 422, "files", "required")
        assert_problem(post(one, {}), 422, "instruction")
        assert_problem(post(one, {"edits": "not json"}), 422, "edits", "not json")
        assert_problem(post(one, {"edits": "[]"}), 422, "edits", "non-empty")
        assert_problem(post(one, {"edits": json.dumps([{"image": "a.png"}])}), 422, "edits[0]", "give an instruction")
        assert_problem(
            post(one, {"edits": json.dumps([{"image": "a.png", "instruction": SEPIA, "strength": 3}])}), 422, "edits[0].strength"
        )
        assert_problem(
            post(one, {"edits": json.dumps([{"image": "a.png", "instruction": SEPIA, "output": "/tmp/x"}])}), 422, "edits[0].output"
        )
        # names are labels of the upload, never paths the server reads
        assert_problem(
            post(one, {"edits": json.dumps([{"image": "/etc/hostname", "instruction": SEPIA}])}), 422, "edits[0].image", "not an uploaded"
        )
        assert_problem(post(one, {"edits": json.dumps([{"image": "a.png", "mask": "m.png", "instruction": SEPIA}])}), 422, "edits[0].mask")
        assert_problem(post(one, {"edits": json.dumps([{"image": "a.png", "instruction": SEPIA, "method": "x"}])}), 422, "edits[0].method")
        assert_problem(post([("files", ("a.png", b"junk", "image/png"))], {"instruction": SEPIA}), 422, "files[0].image", "not a readable")
        two = one + [("files", ("a.png", img, "image/png"))]
        assert_problem(post(two, {"instruction": SEPIA}), 422, "files[1]", "two files")
        assert_problem(c.get("/v1/jobs/nope"), 404)
        assert_problem(c.get("/v1/jobs/nope/events"), 404)


def test_job_limits_and_cancel(server):
    s = server.service.settings
    saved = (s.max_job_items, s.max_jobs)
    img = scene_png(65)
    files = [("files", (f"{k}.png", img, "image/png")) for k in range(3)]
    try:
        with server.client() as c:
            s.max_job_items = 2
            assert_problem(c.post("/v1/jobs", files=files, data={"instruction": SEPIA}), 422, "edits", "at most 2")
            s.max_job_items, s.max_jobs = 10, 1
            for jid in list(server.service.jobs.jobs):
                c.delete(f"/v1/jobs/{jid}")
            first = c.post("/v1/jobs", files=files, data={"instruction": SEPIA}).json()
            busy = c.post("/v1/jobs", files=files, data={"instruction": SEPIA})
            assert_problem(busy, 429, None, "jobs are queued or running")
            assert busy.headers["retry-after"]
            assert c.delete(f"/v1/jobs/{first['id']}").status_code == 204  # cancels it at its next step
            job = server.service.jobs.jobs.get(first["id"])
            assert job is None
            deadline = time.time() + 10
            while server.service.jobs._queue.qsize() and time.time() < deadline:
                time.sleep(0.05)
            again = c.post("/v1/jobs", files=files[:1], data={"instruction": SEPIA})
            assert again.status_code == 202
            assert read_events(c, again.json()["id"])[-1][1]["state"] == "done"
    finally:
        s.max_job_items, s.max_jobs = saved
