"""Jobs: a batch of edits on uploaded images, run one edit at a time by one worker thread of the
service, with progress from the methods' callbacks (``Tracker``), results kept as PNG bytes."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..edit import Editor, encode_png
from ..schema import EditRecord, EditSpec, FillRecord, FillRequest
from .problems import Problem, problem_body
from .service import Cancelled, Tracker, step_callback

logger = logging.getLogger(__name__)

FINISHED = ("done", "failed", "cancelled")


@dataclass
class JobItem:
    index: int
    spec: EditSpec | FillRequest  # a FillRequest: an item of an inpaint / erase / outpaint job
    method: str
    image: np.ndarray | None
    mask: np.ndarray | None = None
    state: str = "queued"  # queued | running | done | failed | cancelled
    error: dict | None = None
    record: EditRecord | FillRecord | None = None
    png: bytes | None = None

    def to_json(self, job_id: str) -> dict[str, Any]:
        return {
            "index": self.index,
            "image": self.spec.image,
            "state": self.state,
            "error": self.error,
            "record": self.record.model_dump() if self.record else None,
            "result_url": f"/v1/jobs/{job_id}/results/{self.index}" if self.state == "done" else None,
        }


@dataclass
class Job:
    id: str
    items: list[JobItem]
    model: str | None
    state: str = "queued"  # queued | running | done | failed | cancelled
    created: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event)
    tracker: Tracker = field(default_factory=Tracker)

    @property
    def finished(self) -> int:
        return sum(it.state == "done" for it in self.items)

    @property
    def failed(self) -> int:
        return sum(it.state == "failed" for it in self.items)

    def progress(self, st: dict[str, Any] | None = None) -> float:
        """Share done: finished items, plus the running item's steps (of tracker state ``st``; the current one by default)."""
        if st is None:
            _, st = self.tracker.snapshot()
            done = sum(it.state in FINISHED for it in self.items)
            running = self.state == "running"
        else:  # a past update: items run in order, so those up to its ``done_item`` were finished then
            done = st.get("done_item", -1) + 1
            running = st.get("item", -1) >= done
        partial = st.get("step", 0) / st["steps"] if st.get("steps") and running else 0.0
        return min(1.0, (done + partial) / len(self.items))

    def progress_event(self, st: dict[str, Any] | None = None) -> dict[str, Any]:
        """A ``progress`` event of tracker state ``st`` (the current one by default)."""
        cur = st is None
        if cur:
            _, st = self.tracker.snapshot()
        return {
            "state": self.state,
            "finished": self.finished,
            "failed": self.failed,
            "total": len(self.items),
            "progress": round(self.progress(None if cur else st), 4),
            "item": st.get("item"),
            "step": st.get("step", 0),
            "steps": st.get("steps", 0),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "total": len(self.items),
            "finished": self.finished,
            "failed": self.failed,
            "progress": round(self.progress(), 4),
            "items": [it.to_json(self.id) for it in self.items],
        }


class JobStore:
    """Jobs by id (at most ``max_jobs``; finished ones are dropped oldest first) and the worker that runs them."""

    def __init__(self, service) -> None:
        self.service = service
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def submit(self, items: list[JobItem], model: str | None) -> Job:
        s = self.service.settings
        with self._lock:
            while len(self.jobs) >= s.max_jobs:
                old = next((j for j in self.jobs.values() if j.state in FINISHED), None)
                if old is None:
                    raise Problem(
                        429,
                        f"{s.max_jobs} jobs are queued or running (max_jobs); retry when one has finished",
                        None,
                        {"Retry-After": str(max(1, s.retry_after_s))},
                    )
                del self.jobs[old.id]
            job = Job(uuid.uuid4().hex, items, model)
            self.jobs[job.id] = job
        self._queue.put(job.id)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise Problem(
                404, f"no job {job_id!r}: it never existed, was deleted, or was dropped (finished jobs are kept while there is room)"
            )
        return job

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        job.cancel.set()
        with self._lock:
            self.jobs.pop(job_id, None)
        if job.state not in FINISHED:
            job.state = "cancelled"
            job.tracker.update(state="cancelled")

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="retouch-jobs", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            for job in list(self.jobs.values()):
                job.cancel.set()
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    # -- the worker ------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._lock:
                job = self.jobs.get(job_id)
            if job is None or job.cancel.is_set():
                continue
            try:
                self._run(job)
            except Exception:  # the worker must outlive any job
                logger.exception("job %s failed", job.id)
                job.state = "failed"
                job.tracker.update(state="failed")

    def _run(self, job: Job) -> None:
        job.state = "running"
        job.tracker.update(state="running")
        for it in job.items:
            if job.cancel.is_set():
                break
            it.state = "running"
            job.tracker.update(item=it.index, step=0, steps=0)
            t0 = time.perf_counter()
            callback = step_callback(job.cancel, job.tracker, item=it.index)
            try:
                if isinstance(it.spec, FillRequest):
                    out, it.record = self.service.fill(it.spec, it.image, it.mask, callback)
                else:
                    loaded = self.service.loaded(it.method, job.model)
                    with loaded.lock:
                        (turn,) = Editor(loaded.method).edit(
                            it.image,
                            it.spec.instruction,
                            target_prompt=it.spec.target_prompt,
                            source_prompt=it.spec.source_prompt,
                            mask=it.mask,
                            strength=it.spec.strength,
                            callback=callback,
                        )
                    out = turn.image
                    it.record = EditRecord.from_result(
                        turn.result, method=it.method, seconds=time.perf_counter() - t0, instruction=it.spec.instruction, model=job.model
                    )
                it.png = encode_png(out, it.record)
                it.state = "done"
            except Cancelled:
                it.state = "cancelled"
                break
            except Problem as e:
                it.state, it.error = "failed", problem_body(e.status, e.detail, f"edits[{it.index}]")
            except (ValueError, OSError, RuntimeError) as e:
                it.state, it.error = "failed", problem_body(422, str(e), f"edits[{it.index}]")
            it.image = it.mask = None  # the inputs are no longer needed
            job.tracker.update(done_item=it.index)
        if job.cancel.is_set():
            job.state = "cancelled"
            for it in job.items:
                if it.state == "queued":
                    it.state = "cancelled"
        else:
            job.state = "done" if any(it.state == "done" for it in job.items) else "failed"
        job.tracker.update(state=job.state)
