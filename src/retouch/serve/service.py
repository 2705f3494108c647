"""The server's state, all of it on one ``Service`` object that ``create_app`` puts on ``app.state``:
loaded methods (one lock each: a method instance runs one edit at a time), the admission counter
behind the concurrency cap, sessions (LRU-bounded) and jobs.  No maths here: every edit goes
through ``retouch.methods`` / ``retouch.session`` as the CLI's do.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from ..edit import load_image, load_mask
from ..methods import METHODS, EditRequest, Method, Progress, get_method, list_methods, takes_strength
from ..schema import FILL_REQUESTS, FILL_TASKS, FillRecord, FillRequest, OutpaintRequest
from ..session import EditSession
from .problems import Problem
from .settings import ServeSettings

logger = logging.getLogger(__name__)


def _tidy(message: str) -> str:
    """An error message without the in-memory file object Pillow names (``<_io.BytesIO object at 0x...>``)."""
    return re.sub(r"\s*<_io\.\w+ object at 0x[0-9a-f]+>", "", message)


class Cancelled(Exception):
    """Raised from a progress callback to stop a method at its next step (timeout, job cancelled)."""


class Tracker:
    """Progress of something running, read by server-sent event streams; bumped from method callbacks."""

    def __init__(self, **state: Any) -> None:
        from collections import deque

        self._lock = threading.Lock()
        self.version = 0
        self.state: dict[str, Any] = dict(state)
        # every update, so that a stream polling now and then still sends each step (bounded: a slow reader
        # loses the oldest, never blocks the method)
        self._history: deque[tuple[int, dict[str, Any]]] = deque(maxlen=1024)

    def update(self, **kw: Any) -> None:
        with self._lock:
            self.state.update(kw)
            self.version += 1
            self._history.append((self.version, dict(self.state)))

    def snapshot(self) -> tuple[int, dict[str, Any]]:
        with self._lock:
            return self.version, dict(self.state)

    def since(self, version: int) -> list[tuple[int, dict[str, Any]]]:
        """The updates after ``version``, oldest first."""
        with self._lock:
            return [(v, dict(s)) for v, s in self._history if v > version]


def step_callback(cancel: threading.Event | None, tracker: Tracker | None, **extra: Any) -> Progress:
    """A method ``callback(i, n)`` that reports to ``tracker`` and stops the method once ``cancel`` is set."""

    def cb(i: int, n: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        if tracker is not None:
            tracker.update(step=i, steps=n, **extra)

    return cb


@dataclass
class Loaded:
    method: Method
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class ServerSession:
    id: str
    session: EditSession
    method: str
    model: str | None
    loaded: Loaded  # the method instance it was prepared with (and its lock), kept even if the pool drops it
    lock: threading.Lock = field(default_factory=threading.Lock)
    tracker: Tracker = field(default_factory=lambda: Tracker(state="idle"))
    nbytes: int = 0
    closed: bool = False


class Service:
    """All the state of one server process."""

    def __init__(self, settings: ServeSettings) -> None:
        from ..models.backbone import DEFAULT_MODEL, TEACHER_MODEL

        self.settings = settings
        if settings.model:
            self.models: dict[str, Path] = {Path(settings.model).resolve().name: Path(settings.model)}
            self.default_model: str | None = next(iter(self.models))
        else:
            self.models = {p.name: p for p in (DEFAULT_MODEL, TEACHER_MODEL) if p.is_dir()}
            self.default_model = None  # each method's own shipped default
        served = settings.methods if settings.methods is not None else [m for m in list_methods() if not METHODS[m].reference]
        for m in served:
            if m not in METHODS:
                raise ValueError(f"unknown method {m!r} in the server's settings; known: {', '.join(list_methods())}")
            if METHODS[m].reference:
                raise ValueError(f"method {m!r} is a reference method (it needs ground truth): it cannot be served")
        self.methods = served
        if settings.default_method in METHODS and METHODS[settings.default_method].reference:
            raise ValueError(f"method {settings.default_method!r} is a reference method (it needs ground truth): it cannot be served")
        if settings.default_method not in self.methods:
            raise ValueError(f"the default method {settings.default_method!r} is not served ({', '.join(self.methods)})")
        # the fill tasks' diffusion models, by name (a client names one, never a path); never the edit models above
        self.fill_models: dict[str, Path] = {Path(p).resolve().name: Path(p) for p in settings.served_fill_models()}
        # (method, model) for edit methods; (task, model, backend, steps) for the fill tasks
        self._loaded: OrderedDict[tuple, Loaded] = OrderedDict()
        self._load_lock = threading.Lock()
        self._busy = 0
        self._busy_lock = threading.Lock()
        self.sessions: OrderedDict[str, ServerSession] = OrderedDict()
        self._sessions_lock = threading.Lock()
        self.evicted_sessions = 0
        from .jobs import JobStore

        self.jobs = JobStore(self)

    # -- names the client may use ---------------------------------------------------------------------
    def check_method(self, name: str | None, task: str, field_name: str = "method") -> str:
        name = (name or "").strip() or self.default_method_for(task)
        if name not in self.methods:
            served = [m for m in self.methods if METHODS[m].task == task]
            raise Problem(422, f"unknown method {name!r} for {task}; served: {', '.join(served)} (GET /v1/methods)", field_name)
        if METHODS[name].task != task:
            other = METHODS[name].task
            raise Problem(
                422, f"method {name!r} does {other}, not {task}" + (f" (POST /v1/{other})" if other in FILL_TASKS else ""), field_name
            )
        return name

    def default_method_for(self, task: str) -> str:
        if METHODS[self.settings.default_method].task == task:
            return self.settings.default_method
        for m in self.methods:
            if METHODS[m].task == task:
                return m
        raise Problem(422, f"no served method does {task}", "method")

    def check_model(self, name: str | None, field_name: str = "model") -> str | None:
        name = (name or "").strip() or None
        if name is None:
            return self.default_model
        if name not in self.models:
            raise Problem(422, f"unknown model {name!r}; served: {', '.join(self.models)} (GET /v1/models)", field_name)
        return name

    def check_fill_model(self, name: str | None, field_name: str = "model") -> str | None:
        """A fill model's name (``GET /v1/models?task=...``), or None (the classic backends).  Only the folders the
        server was started with are served: a client names one, and never a path."""
        name = (name or "").strip() or None
        if name is not None and name not in self.fill_models:
            served = ", ".join(self.fill_models) or "none"
            raise Problem(422, f"unknown inpainting model {name!r}; served: {served} (GET /v1/models?task=inpaint)", field_name)
        return name

    def check_canvas(self, shape: tuple[int, ...], req: OutpaintRequest, prefix: str = "") -> None:
        """An outpainted canvas within retouch's side limit and the server's ``max_pixels`` (else a 422 naming the
        largest side asked for: ``prefix`` + ``left`` / ...)."""
        from ..methods.inpaint import MAX_CANVAS

        h, w = shape[0] + req.top + req.bottom, shape[1] + req.left + req.right
        limit = self.settings.max_pixels
        if max(h, w) > MAX_CANVAS or h * w > limit:
            side = max(req.sides, key=lambda k: req.sides[k])
            raise Problem(
                422,
                f"the outpainted canvas would be {w}x{h} = {w * h} pixels; the server makes at most {limit} (max_pixels), "
                f"with sides of at most {MAX_CANVAS}",
                prefix + side,
            )

    def check_strength(self, method: str, strength: float | None) -> None:
        if strength is not None and not takes_strength(METHODS[method]):
            with_strength = [m for m in self.methods if takes_strength(METHODS[m])]
            raise Problem(422, f"method {method!r} has no edit strength (methods with one: {', '.join(with_strength)})", "strength")

    def method_info(self) -> list[dict]:
        return [
            {
                "name": m,
                "task": METHODS[m].task,
                "strength": takes_strength(METHODS[m]),
                "mask": True,  # every method takes a user mask (EditRequest.mask)
                "reuses_inversion": METHODS[m].reuses_inversion,
                "default": m == self.settings.default_method,
            }
            for m in self.methods
        ]

    def model_info(self, task: str = "edit") -> list[dict]:
        if task in FILL_TASKS:  # no default: without a model a fill runs the classic backend (telea)
            return [{"name": n, "default": False} for n in self.fill_models]
        default = self.default_model or next(iter(self.models), None)
        return [{"name": n, "default": n == default} for n in self.models]

    # -- inputs ------------------------------------------------------------------------------------------
    def read_image(self, data: bytes, field_name: str = "image") -> np.ndarray:
        if not data:
            raise Problem(422, f"the {field_name} file is empty", field_name)
        try:
            return load_image(data, max_pixels=self.settings.max_pixels, name=f"the {field_name} file")
        except ValueError as e:
            raise Problem(422, _tidy(str(e)), field_name) from e

    def read_fill_mask(self, data: bytes, size: tuple[int, int], field_name: str = "mask", image_name: str = "image") -> np.ndarray:
        """A fill mask as ``retouch inpaint / erase`` read it (any mode: white, or non-zero alpha, = fill)."""
        from ..fill import load_fill_mask

        if not data:
            raise Problem(422, f"the {field_name} file is empty", field_name)
        try:
            return load_fill_mask(data, size, name=f"the {field_name} file", image_name=f"the {image_name} file")
        except ValueError as e:
            raise Problem(422, _tidy(str(e)), field_name) from e

    def read_mask(self, data: bytes, size: tuple[int, int], field_name: str = "mask") -> np.ndarray:
        if not data:
            raise Problem(422, f"the {field_name} file is empty", field_name)
        try:
            return load_mask(data, size, name=f"the {field_name} file")
        except ValueError as e:
            raise Problem(422, _tidy(str(e)), field_name) from e

    # -- methods, loaded once each ------------------------------------------------------------------------
    def loaded(self, method: str, model: str | None) -> Loaded:
        options = dict(self.settings.method_options.get(method, {}))
        if model is not None:
            options["model"] = str(self.models[model])
        return self._pooled((method, model), method, options, model or "default")

    def loaded_fill(self, req: FillRequest) -> Loaded:
        """The fill method of ``req.task`` with its backend, model and steps (the seed is set per fill, see ``fill``)."""
        backend = req.backend_name
        steps = req.steps if backend == "diffusion" else None  # the classic backends take no steps
        options = dict(self.settings.method_options.get(req.task, {})) | {"backend": backend}
        if req.model is not None:
            options["model"] = str(self.fill_models[req.model])
        if steps is not None:
            options["steps"] = steps
        samples = req.samples if backend == "diffusion" else None
        if samples is not None:
            options["samples"] = samples
        blend = req.blend if backend == "diffusion" else None
        if blend is not None:
            options["blend"] = blend
        return self._pooled((req.task, req.model, backend, steps, samples, blend), req.task, options, req.model or backend)

    def _pooled(self, key: tuple, method: str, options: dict, label: str) -> Loaded:
        """The loaded method under ``key``, constructed once (at most ``max_loaded_methods`` are kept)."""
        with self._load_lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            t0 = time.perf_counter()
            try:
                item = Loaded(get_method(method, **options))
            except (ValueError, OSError) as e:
                raise Problem(422, f"method {method!r} cannot load model {label!r}: {e}", "model") from e
            logger.info("loaded %s (model %s) in %.1f s", method, label, time.perf_counter() - t0)
            self._loaded[key] = item
            while len(self._loaded) > self.settings.max_loaded_methods:
                self._loaded.popitem(last=False)  # a session or job that holds it keeps its own reference
            return item

    def fill(
        self, req: FillRequest, image: np.ndarray, mask: np.ndarray | None, callback: Progress | None = None
    ) -> tuple[np.ndarray, FillRecord]:
        """One inpaint / erase / outpaint, through the registered fill method as ``retouch inpaint / erase / outpaint``
        run it: ``edit`` with the mask, or ``outpaint`` with the pixel counts.  Pixels outside the mask are the input's."""
        item = self.loaded_fill(req)
        t0 = time.perf_counter()
        with item.lock:
            method = item.method
            method.settings.seed = req.seed  # the request's noise (the instance is shared; its lock makes this one fill's)
            if req.task == "outpaint":
                res = method.outpaint(image, prompt=req.prompt, callback=callback, **req.sides)
            else:
                res = method.edit(EditRequest(image=image, target_prompt=getattr(req, "prompt", None), mask=mask), callback=callback)
        rec = FillRecord.from_result(
            res,
            method=method.name,
            seconds=time.perf_counter() - t0,
            model=req.model,
            steps=getattr(method.backend, "steps", None),
            seed=req.seed,
        )
        return res.image, rec

    def loaded_names(self) -> list[str]:
        with self._load_lock:
            return [f"{k[0]}@{k[1] or (k[2] if len(k) > 2 else 'default')}" for k in self._loaded]

    # -- admission, timeout, cancellation ------------------------------------------------------------------
    @property
    def running(self) -> int:
        return self._busy

    async def run(self, work: Callable[[threading.Event], Any], what: str = "request", value_field: str | None = None) -> Any:
        """``work(cancel)`` in a worker thread, within the concurrency cap (else 429) and the per-request
        timeout (else 408; ``cancel`` is set, and a ``step_callback`` stops the method at its next step).
        The slot stays taken until the work has really stopped, so the cap counts the work that runs."""
        s = self.settings
        with self._busy_lock:
            if self._busy >= s.max_concurrent:
                raise Problem(
                    429,
                    f"the server runs at most {s.max_concurrent} model requests at once (max_concurrent); retry in {s.retry_after_s} s",
                    None,
                    {"Retry-After": str(s.retry_after_s)},
                )
            self._busy += 1
        cancel = threading.Event()
        slot = {"started": False, "freed": False}  # under _busy_lock: the slot is freed once, by whoever is last

        def free() -> None:
            if not slot["freed"]:
                slot["freed"] = True
                self._busy -= 1

        def guarded() -> Any:
            with self._busy_lock:
                if cancel.is_set():
                    free()
                    raise Cancelled("cancelled before it started")
                slot["started"] = True
            try:
                return work(cancel)
            finally:
                with self._busy_lock:
                    free()

        try:
            with anyio.fail_after(s.request_timeout_s):
                return await anyio.to_thread.run_sync(guarded, abandon_on_cancel=True)
        except TimeoutError:
            cancel.set()
            raise Problem(
                408, f"the {what} took longer than the server's {s.request_timeout_s:g} s limit (request_timeout_s); it was stopped", None
            ) from None
        except Cancelled:
            raise Problem(408, f"the {what} was stopped", None) from None
        except Problem:
            raise
        except LookupError as e:
            raise Problem(409, str(e)) from e
        except ValueError as e:  # what a method or rewriter refused in the request (the detail says what)
            raise Problem(422, str(e), value_field) from e
        finally:
            cancel.set()  # still running (timed out, the client gone): it stops at its next step
            with self._busy_lock:
                if not slot["started"]:  # cancelled before a worker thread took it (anyio then never runs it)
                    free()

    # -- sessions ------------------------------------------------------------------------------------------
    def open_session(
        self, image: np.ndarray, source_prompt: str | None, method: str, model: str | None, cancel: threading.Event
    ) -> ServerSession:
        item = self.loaded(method, model)
        sid = uuid.uuid4().hex
        tracker = Tracker(state="running", stage="prepare", step=0, steps=0)
        with item.lock:
            sess = EditSession(item.method, image, source_prompt, callback=step_callback(cancel, tracker, stage="prepare"), model=model)
        tracker.update(state="idle")
        ss = ServerSession(sid, sess, method, model, item, tracker=tracker, nbytes=sess.nbytes())
        with self._sessions_lock:
            self.sessions[sid] = ss
            self._evict_sessions(keep=sid)
        return ss

    def session(self, sid: str) -> ServerSession:
        with self._sessions_lock:
            ss = self.sessions.get(sid)
            if ss is None:
                raise Problem(
                    404, f"no session {sid!r}: it never existed, was deleted, or was evicted (the server keeps the most recently used ones)"
                )
            self.sessions.move_to_end(sid)
            return ss

    def close_session(self, sid: str) -> None:
        with self._sessions_lock:
            ss = self.sessions.pop(sid, None)
        if ss is None:
            raise Problem(404, f"no session {sid!r}")
        ss.closed = True
        ss.tracker.update(state="closed")

    def session_edit(self, ss: ServerSession, cancel: threading.Event, mask: np.ndarray | None = None, **kw: Any) -> None:
        item = ss.loaded
        with ss.lock:
            ss.tracker.update(state="running", stage="edit", step=0, steps=0)
            try:
                with item.lock:
                    ss.session.edit(mask=mask, callback=step_callback(cancel, ss.tracker, stage="edit"), **kw)
            finally:
                ss.tracker.update(state="idle")
            ss.nbytes = ss.session.nbytes()
        with self._sessions_lock:
            self._evict_sessions(keep=ss.id)

    def session_bytes(self) -> int:
        return sum(s.nbytes for s in self.sessions.values())

    def _evict_sessions(self, keep: str) -> None:
        """Drop least recently used sessions past ``max_sessions`` or ``max_session_bytes`` (never ``keep``)."""
        s = self.settings
        while len(self.sessions) > 1 and (len(self.sessions) > s.max_sessions or self.session_bytes() > s.max_session_bytes):
            sid = next(iter(self.sessions))
            if sid == keep:
                self.sessions.move_to_end(sid)
                sid = next(iter(self.sessions))
            old = self.sessions.pop(sid)
            old.closed = True
            old.tracker.update(state="closed")
            self.evicted_sessions += 1
            logger.info("evicted session %s (%d bytes)", sid, old.nbytes)

    def preload(self) -> None:
        """Load ``settings.preload`` now (a ValueError that says why if one cannot load)."""
        for m in self.settings.preload:
            try:
                task = METHODS[m].task if m in METHODS else "edit"
                name = self.check_method(m, task, "preload")
                if task in FILL_TASKS:  # its default, the classic backend (a request's model loads on its first use)
                    self.loaded_fill(FILL_REQUESTS[task].model_construct())  # unchecked: inpaint without a prompt
                    continue
                self.loaded(name, self.default_model)
            except Problem as e:
                raise ValueError(f"cannot preload {m!r}: {e.detail}") from e

    def start(self) -> None:
        self.preload()  # already loaded ones are kept
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.stop()
