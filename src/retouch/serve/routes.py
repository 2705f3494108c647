"""Every route of the API, registered in one place (``register_routes``); docs/serve.md is the contract.

Task routes: one per entry of ``TASKS`` that a served method does (``Method.task``).  A task is one ``TaskSpec``
here; its methods set ``task`` and register as usual.  The fill tasks (inpaint, erase, outpaint) name their
request model (``retouch.schema``), whose fields are the route's form fields and the JSON keys of their job
edits (``POST /v1/jobs`` with ``task``).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from ..edit import Editor, encode_png
from ..schema import (
    MAX_STRENGTH,
    EditRecord,
    EditSpec,
    EraseRequest,
    FillRecord,
    FillRequest,
    GenerateRecord,
    GenerateRequest,
    InpaintRequest,
    OutpaintRequest,
)
from .jobs import FINISHED, Job, JobItem
from .problems import Problem, field_of
from .service import ServerSession, Service, step_callback

logger = logging.getLogger(__name__)

PNG = "image/png"


@dataclass(frozen=True)
class TaskSpec:
    name: str  # Method.task
    path: str  # under /v1
    summary: str
    mask_required: bool = False
    request: type[FillRequest] | None = None  # a fill task's request model: its fields are the route's form fields


TASKS: dict[str, TaskSpec] = {
    "edit": TaskSpec("edit", "/edit", "Edit an image from an instruction or a target caption"),
    "inpaint": TaskSpec("inpaint", "/inpaint", "Draw what a prompt describes inside a mask", True, InpaintRequest),
    "erase": TaskSpec("erase", "/erase", "Fill a mask with what its surroundings imply", True, EraseRequest),
    "outpaint": TaskSpec("outpaint", "/outpaint", "Extend the canvas by pixels per side and fill them", False, OutpaintRequest),
}


# -- response models (the JSON shapes of docs/serve.md) -------------------------------------------------------
class ImageAnswer(BaseModel):
    record: dict
    image: str  # base64 PNG
    media_type: str = PNG


class ProblemOut(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    instance: str | None = None


PROBLEMS = {
    code: {"model": ProblemOut, "content": {"application/problem+json": {}}, "description": text}
    for code, text in (
        (401, "a token is set and the request has none or a wrong one"),
        (404, "unknown session, job, turn or item"),
        (408, "past the per-request timeout"),
        (409, "not possible in this state"),
        (413, "the body is over the size limit"),
        (422, "a field is missing or wrong (`field` names it)"),
        (429, "over the concurrency cap (see Retry-After)"),
    )
}


class Health(BaseModel):
    status: str
    version: str
    loaded: list[str]
    sessions: int
    jobs: int
    running: int


class MethodInfo(BaseModel):
    name: str
    task: str
    strength: bool
    mask: bool
    reuses_inversion: bool
    default: bool


class ModelInfo(BaseModel):
    name: str
    default: bool


class TurnOut(BaseModel):
    index: int
    instruction: str | None
    caption: str | None
    strength: float | None
    has_mask: bool
    record: EditRecord | None
    image_url: str


class PrepareCost(BaseModel):
    nfe: int
    seconds: float


class SessionOut(BaseModel):
    id: str
    method: str
    model: str | None
    width: int
    height: int
    source_caption: str | None
    prepare: PrepareCost
    current: int
    can_undo: bool
    can_redo: bool
    turns: list[TurnOut]


class JobItemOut(BaseModel):
    index: int
    image: str | None
    state: str
    error: dict | None
    record: FillRecord | EditRecord | None = Field(union_mode="left_to_right")  # a fill record has a task; an edit's has none
    result_url: str | None


class JobOut(BaseModel):
    id: str
    state: str
    total: int
    finished: int
    failed: int
    progress: float
    items: list[JobItemOut]


# -- helpers ----------------------------------------------------------------------------------------------------
def service(request: Request) -> Service:
    return request.app.state.service


Svc = Annotated[Service, Depends(service)]


def session_of(sid: str, request: Request) -> ServerSession:
    """The session, looked up before a stream starts (so an unknown id is a 404, not a broken stream)."""
    return service(request).session(sid)


def job_of(job_id: str, request: Request) -> Job:
    return service(request).jobs.get(job_id)


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def record_headers(record: BaseModel) -> dict[str, str]:
    d = record.model_dump()
    h = {"X-Retouch-Record": json.dumps(d, ensure_ascii=True)}
    for key, name in (("nfe_inversion", "Nfe-Inversion"), ("nfe_edit", "Nfe-Edit"), ("nfe", "Nfe"), ("seconds", "Seconds")):
        if key in d:
            h[f"X-Retouch-{name}"] = str(d[key])
    for key, name in (("source_caption", "Source-Caption"), ("target_caption", "Target-Caption")):
        if d.get(key):
            h[f"X-Retouch-{name}"] = quote(d[key], safe=" ,;:'()!*-._~")
    return h


def image_answer(request: Request, image: np.ndarray | None, record: BaseModel | None, png: bytes | None = None) -> Response:
    png = png if png is not None else encode_png(image, record)
    headers = record_headers(record) if record is not None else {}
    if wants_json(request):
        body = {"record": record.model_dump() if record else None, "image": base64.b64encode(png).decode(), "media_type": PNG}
        return JSONResponse(body, headers=headers)
    return Response(png, media_type=PNG, headers=headers)


def edit_spec(**kw: Any) -> EditSpec:
    try:
        return EditSpec(**kw)
    except ValidationError as e:
        err = e.errors()[0]
        both = all((kw.get(k) or "").strip() for k in ("instruction", "target_prompt"))
        field = field_of(err.get("loc", ())) or ("target_prompt" if both else "instruction")
        raise Problem(422, str(err.get("msg", "invalid")).removeprefix("Value error, "), field) from e


def fill_request(cls: type[FillRequest], where: str | None = None, **kw: Any) -> FillRequest:
    """``cls(**kw)``, or a 422 naming the field at fault (``where``: a job's ``edits[k]``, prefixed to it)."""
    try:
        return cls(**kw)
    except ValidationError as e:
        err = e.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        field = getattr(cause, "field", None) or field_of(err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if where is not None:
            msg, field = f"{where}{'.' + field if field else ''}: {msg}", f"{where}.{field}" if field else where
        elif field and err.get("type") != "value_error":  # pydantic's own words do not name the field
            msg = f"{field}: {msg}"
        raise Problem(422, msg, field) from e


async def fill_job_items(svc: Service, task: TaskSpec, edits: str | None, uploads: dict[str, bytes], model: str | None) -> list[JobItem]:
    """The items of a fill job: ``edits`` is a JSON list of ``task.request`` objects naming uploads by file name
    (``model``: their default inpainting model); each is checked, and its image and mask read, before the job runs."""
    if edits is None:
        keys = "image, mask, " if task.mask_required else "image, left, right, top, bottom, "
        raise Problem(422, f"a {task.name} job needs edits: a JSON list of {{{keys}...}} objects, one per fill", "edits")
    try:
        raw = json.loads(edits)
    except json.JSONDecodeError as e:
        raise Problem(422, f"edits is not JSON ({e})", "edits") from e
    if not isinstance(raw, list) or not raw:
        raise Problem(422, "edits must be a non-empty JSON list of objects", "edits")
    if len(raw) > svc.settings.max_job_items:
        raise Problem(422, f"{len(raw)} edits; a job takes at most {svc.settings.max_job_items} (max_job_items)", "edits")
    name = svc.check_method(None, task.name, "task")
    items = []
    for i, obj in enumerate(raw):
        where = f"edits[{i}]"
        if not isinstance(obj, dict):
            raise Problem(422, f"{where} is not an object", where)
        spec = fill_request(task.request, where, **({"model": model} if model else {}) | obj)
        svc.check_fill_model(spec.model, f"{where}.model")
        if spec.image is None or spec.image not in uploads:
            raise Problem(
                422, f"{where}.image names {spec.image!r}, which is not an uploaded file ({', '.join(uploads)})", f"{where}.image"
            )
        img = await run_in_threadpool(svc.read_image, uploads[spec.image], f"{where}.image")
        m = None
        if task.mask_required:
            if spec.mask is None or spec.mask not in uploads:
                said = "names no mask" if spec.mask is None else f"names mask {spec.mask!r}, which is not an uploaded file"
                raise Problem(422, f"{where} {said}: {task.name} needs one (white = the pixels to fill)", f"{where}.mask")
            m = await run_in_threadpool(svc.read_fill_mask, uploads[spec.mask], img.shape[:2], f"{where}.mask", f"{where}.image")
        if isinstance(spec, OutpaintRequest):
            svc.check_canvas(img.shape, spec, f"{where}.")
        items.append(JobItem(i, spec, name, img, m))
    return items


def session_json(ss: ServerSession) -> dict:
    s = ss.session
    img = s.turns[0].image
    return {
        "id": ss.id,
        "method": ss.method,
        "model": ss.model,
        "width": img.shape[1],
        "height": img.shape[0],
        "source_caption": s.turns[0].caption,
        "prepare": {"nfe": s.prepared.nfe, "seconds": round(s.prepare_seconds, 4)},
        "current": s.current,
        "can_undo": s.can_undo,
        "can_redo": s.can_redo,
        "turns": [
            {
                "index": t.index,
                "instruction": t.instruction,
                "caption": t.caption,
                "strength": t.strength,
                "has_mask": t.mask is not None,
                "record": t.record.model_dump() if t.record else None,
                "image_url": f"/v1/sessions/{ss.id}/turns/{t.index}/image",
            }
            for t in s.turns
        ],
    }


async def read_upload(upload: UploadFile | None) -> bytes | None:
    if upload is None:
        return None
    return await upload.read()


# -- the routes -----------------------------------------------------------------------------------------------
def register_routes(app: FastAPI, svc: Service, auth) -> None:
    """All routes: /healthz, and /v1 (behind ``auth`` when a token is set)."""

    @app.get("/healthz", response_model=Health, tags=["meta"])
    def healthz() -> dict:
        from importlib.metadata import version

        return {
            "status": "ok",
            "version": version("retouch"),
            "loaded": svc.loaded_names(),
            "sessions": len(svc.sessions),
            "jobs": len(svc.jobs.jobs),
            "running": svc.running,
        }

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(auth)], responses=PROBLEMS)

    @v1.get("/methods", response_model=list[MethodInfo], tags=["meta"])
    def methods(svc: Svc) -> list[dict]:
        return svc.method_info()

    @v1.get("/models", response_model=list[ModelInfo], tags=["meta"])
    def models(
        svc: Svc, task: Annotated[str, Query(description="edit (the default), or a fill task: its inpainting models")] = "edit"
    ) -> list[dict]:
        if task not in TASKS:
            raise Problem(422, f"unknown task {task!r}; known: {', '.join(TASKS)}", "task")
        return svc.model_info(task)

    for task in TASKS.values():
        if any(svc_task == task.name for svc_task in (type_task(m) for m in svc.methods)):
            (_register_task if task.request is None else _register_fill_task)(v1, task)

    @v1.post(
        "/generate",
        tags=["generate"],
        responses={200: {"content": {PNG: {}, "application/json": {"schema": ImageAnswer.model_json_schema()}}}},
        response_class=Response,
    )
    async def generate_image(body: GenerateRequest, request: Request, svc: Svc) -> Response:
        """Text to image with a served model (PNG, or JSON with a base64 PNG for `Accept: application/json`)."""
        model = svc.check_model(body.model)

        def work(cancel) -> tuple[np.ndarray, GenerateRecord]:
            from ..generate import generate

            loaded = svc.loaded(svc.settings.default_method, model)  # its backbone: the served generator
            bb = loaded.method.backbone
            t0 = time.perf_counter()
            cb = step_callback(cancel, None)
            with loaded.lock:
                (img,) = generate(bb, [body.prompt], steps=body.steps, seed=body.seed, callback=lambda i, n, _x: cb(i, n))
            steps = body.steps or bb.default_steps
            nfe = steps * (2 if bb.default_guidance != 1.0 else 1)
            rec = GenerateRecord(
                prompt=body.prompt,
                model=model,
                seed=body.seed,
                steps=steps,
                nfe=nfe,
                seconds=round(time.perf_counter() - t0, 4),
                width=img.shape[1],
                height=img.shape[0],
            )
            return img, rec

        img, rec = await svc.run(work, "generation", "prompt")
        return image_answer(request, img, rec)

    # -- sessions ------------------------------------------------------------------------------------------
    @v1.post("/sessions", status_code=201, response_model=SessionOut, tags=["sessions"])
    async def open_session(
        svc: Svc,
        image: Annotated[UploadFile, File(description="the image to edit (PNG, JPEG, WebP; RGB, no transparency)")],
        source_prompt: Annotated[str | None, Form(description="its caption (default: the captioner's)")] = None,
        method: Annotated[str | None, Form()] = None,
        model: Annotated[str | None, Form()] = None,
    ) -> JSONResponse:
        """Upload an image once: it is captioned and inverted here, once, for every edit of the session."""
        name = svc.check_method(method, "edit")
        model_name = svc.check_model(model)
        img = await run_in_threadpool(svc.read_image, await read_upload(image))  # decoding is off the event loop
        ss = await svc.run(
            lambda cancel: svc.open_session(img, source_prompt, name, model_name, cancel), "session's preparation", "source_prompt"
        )
        return JSONResponse(session_json(ss), status_code=201)

    @v1.get("/sessions/{sid}", response_model=SessionOut, tags=["sessions"])
    def get_session(sid: str, svc: Svc) -> dict:
        return session_json(svc.session(sid))

    @v1.delete("/sessions/{sid}", status_code=204, tags=["sessions"])
    def delete_session(sid: str, svc: Svc) -> Response:
        svc.close_session(sid)
        return Response(status_code=204)

    @v1.post("/sessions/{sid}/edits", response_model=SessionOut, tags=["sessions"])
    async def session_edit(
        sid: str,
        svc: Svc,
        instruction: Annotated[str | None, Form()] = None,
        target_prompt: Annotated[str | None, Form()] = None,
        strength: Annotated[float | None, Form(ge=0.0, le=MAX_STRENGTH)] = None,
        mask: Annotated[UploadFile | None, File(description="single-channel, the image's size, white = edit")] = None,
        replace: Annotated[bool, Form(description="re-render the current turn instead of adding one")] = False,
    ) -> dict:
        """An edit of the session's image from its cached inversion (the cost of the edit alone)."""
        ss = svc.session(sid)
        svc.check_strength(ss.method, strength)
        if not replace:
            edit_spec(instruction=instruction, target_prompt=target_prompt)
        elif instruction and instruction.strip() and target_prompt and target_prompt.strip():
            raise Problem(422, "give an instruction or a target_prompt, not both", "target_prompt")
        elif ss.session.current == 0:
            raise Problem(422, "nothing to replace: the session is at its uploaded image (replace=false adds a turn)", "replace")
        size = ss.session.turns[0].image.shape[:2]
        mask_data = await read_upload(mask)
        m = await run_in_threadpool(svc.read_mask, mask_data, size) if mask_data is not None and (mask_data or mask.filename) else None
        await svc.run(
            lambda cancel: svc.session_edit(
                ss, cancel, mask=m, instruction=instruction, target_prompt=target_prompt, strength=strength, replace=replace
            ),
            "edit",
            "instruction" if instruction else "target_prompt",
        )
        return session_json(ss)

    @v1.post("/sessions/{sid}/undo", response_model=SessionOut, tags=["sessions"])
    def undo(sid: str, svc: Svc) -> dict:
        ss = svc.session(sid)
        with ss.lock:
            try:
                ss.session.undo()
            except LookupError as e:
                raise Problem(409, str(e)) from e
        return session_json(ss)

    @v1.post("/sessions/{sid}/redo", response_model=SessionOut, tags=["sessions"])
    def redo(sid: str, svc: Svc) -> dict:
        ss = svc.session(sid)
        with ss.lock:
            try:
                ss.session.redo()
            except LookupError as e:
                raise Problem(409, str(e)) from e
        return session_json(ss)

    @v1.get("/sessions/{sid}/turns/{k}/image", response_class=Response, responses={200: {"content": {PNG: {}}}}, tags=["sessions"])
    def turn_image(sid: str, k: int, request: Request, svc: Svc) -> Response:
        ss = svc.session(sid)
        turns = ss.session.turns
        if not 0 <= k < len(turns):
            raise Problem(404, f"session {sid} has turns 0..{len(turns) - 1}, not {k}", "k")
        t = turns[k]
        return image_answer(request, t.image, t.record)

    @v1.get("/sessions/{sid}/turns/{k}/mask", response_class=Response, responses={200: {"content": {PNG: {}}}}, tags=["sessions"])
    def turn_mask(sid: str, k: int, svc: Svc) -> Response:
        """The mask turn ``k``'s edit applied, as a grey PNG (255 = fully edited): the user's mask, or the method's
        automatic one (all white for turbo's default ``mask=none``)."""
        ss = svc.session(sid)
        turns = ss.session.turns
        if not 0 <= k < len(turns):
            raise Problem(404, f"session {sid} has turns 0..{len(turns) - 1}, not {k}", "k")
        t = turns[k]
        if t.applied_mask is None:
            raise Problem(404, "turn 0 is the uploaded image: it has no mask" if k == 0 else f"method {ss.method!r} reports no mask", "k")
        return Response(encode_png(t.applied_mask), media_type=PNG)

    @v1.get("/sessions/{sid}/events", response_class=EventSourceResponse, tags=["sessions"])
    async def session_events(ss: Annotated[ServerSession, Depends(session_of)]) -> AsyncIterable[ServerSentEvent]:
        """Progress of this session's edits as server-sent events (`progress`; `end` when the session closes)."""
        last = -1
        while True:
            for version, state in ss.tracker.since(last):
                last = version
                yield ServerSentEvent(event="progress", data=state)
            if ss.closed:
                yield ServerSentEvent(event="end", data={"state": "closed"})
                return
            await asyncio.sleep(0.05)

    # -- jobs ------------------------------------------------------------------------------------------------
    @v1.post("/jobs", status_code=202, response_model=JobOut, tags=["jobs"])
    async def submit_job(
        svc: Svc,
        files: Annotated[list[UploadFile], File(description="the images (and masks) the edits name by file name")],
        edits: Annotated[str | None, Form(description="JSON list of edits: {image, mask, instruction | target_prompt, ...}")] = None,
        instruction: Annotated[str | None, Form(description="without edits: this instruction for every file")] = None,
        target_prompt: Annotated[str | None, Form()] = None,
        method: Annotated[str | None, Form()] = None,
        strength: Annotated[float | None, Form(ge=0.0, le=MAX_STRENGTH)] = None,
        model: Annotated[str | None, Form(description="edit: a served model; a fill task: the items' default inpainting model")] = None,
        task: Annotated[str | None, Form(description="edit (default), inpaint, erase or outpaint: what every edit does")] = None,
    ) -> JSONResponse:
        """A batch of edits, run in the background; poll `GET /v1/jobs/{id}` or stream `/events`."""
        s = svc.settings
        task_name = (task or "").strip() or "edit"
        if task_name not in TASKS:
            raise Problem(422, f"unknown task {task_name!r}; known: {', '.join(TASKS)}", "task")
        model_name = svc.check_model(model) if task_name == "edit" else svc.check_fill_model(model)
        uploads: dict[str, bytes] = {}
        for k, f in enumerate(files):
            name = f.filename or f"file{k}"
            if name in uploads:
                raise Problem(422, f"two files are named {name!r}: edits name files by their file name", f"files[{k}]")
            uploads[name] = await f.read()
        if task_name != "edit":
            given = {"instruction": instruction, "target_prompt": target_prompt, "method": method, "strength": strength}
            for key, value in given.items():
                if value is not None and str(value).strip():
                    raise Problem(422, f"{key} belongs to edit jobs; a {task_name} job's edits say what each fill does", key)
            items = await fill_job_items(svc, TASKS[task_name], edits, uploads, model_name)
            job = svc.jobs.submit(items, None)
            return JSONResponse(job.to_json(), status_code=202)
        if edits is not None:
            try:
                raw = json.loads(edits)
            except json.JSONDecodeError as e:
                raise Problem(422, f"edits is not JSON ({e})", "edits") from e
            if not isinstance(raw, list) or not raw:
                raise Problem(422, "edits must be a non-empty JSON list of objects", "edits")
            if instruction or target_prompt:
                raise Problem(422, "give edits, or one instruction / target_prompt for every file, not both", "edits")
            specs = []
            for i, obj in enumerate(raw):
                if not isinstance(obj, dict):
                    raise Problem(422, f"edits[{i}] is not an object", f"edits[{i}]")
                try:
                    specs.append(EditSpec(**obj))
                except ValidationError as e:
                    err = e.errors()[0]
                    sub = field_of(err.get("loc", ()))
                    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
                    raise Problem(422, f"edits[{i}]{'.' + sub if sub else ''}: {msg}", f"edits[{i}]" + (f".{sub}" if sub else "")) from e
        else:
            base = edit_spec(instruction=instruction, target_prompt=target_prompt, method=method, strength=strength)
            specs = [base.model_copy(update={"image": name}) for name in uploads]
        if len(specs) > s.max_job_items:
            raise Problem(422, f"{len(specs)} edits; a job takes at most {s.max_job_items} (max_job_items)", "edits")
        items = []
        for i, spec in enumerate(specs):
            where = f"edits[{i}]" if edits is not None else f"files[{i}]"
            if spec.image is None or spec.image not in uploads:
                raise Problem(
                    422, f"{where}.image names {spec.image!r}, which is not an uploaded file ({', '.join(uploads)})", f"{where}.image"
                )
            name = svc.check_method(spec.method, "edit", f"{where}.method")
            svc.check_strength(name, spec.strength)
            img = await run_in_threadpool(svc.read_image, uploads[spec.image], f"{where}.image")
            m = None
            if spec.mask is not None:
                if spec.mask not in uploads:
                    raise Problem(422, f"{where}.mask names {spec.mask!r}, which is not an uploaded file", f"{where}.mask")
                m = await run_in_threadpool(svc.read_mask, uploads[spec.mask], img.shape[:2], f"{where}.mask")
            items.append(JobItem(i, spec, name, img, m))
        job = svc.jobs.submit(items, model_name)
        return JSONResponse(job.to_json(), status_code=202)

    @v1.get("/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
    def get_job(job_id: str, svc: Svc) -> dict:
        return svc.jobs.get(job_id).to_json()

    @v1.delete("/jobs/{job_id}", status_code=204, tags=["jobs"])
    def delete_job(job_id: str, svc: Svc) -> Response:
        svc.jobs.delete(job_id)
        return Response(status_code=204)

    @v1.get("/jobs/{job_id}/results/{k}", response_class=Response, responses={200: {"content": {PNG: {}}}}, tags=["jobs"])
    def job_result(job_id: str, k: int, request: Request, svc: Svc) -> Response:
        job = svc.jobs.get(job_id)
        if not 0 <= k < len(job.items):
            raise Problem(404, f"job {job_id} has items 0..{len(job.items) - 1}, not {k}", "k")
        it = job.items[k]
        if it.state != "done":
            raise Problem(409, f"item {k} is {it.state}" + (f": {it.error['detail']}" if it.error else ""), "k")
        return image_answer(request, None, it.record, png=it.png)

    @v1.get("/jobs/{job_id}/events", response_class=EventSourceResponse, tags=["jobs"])
    async def job_events(job: Annotated[Job, Depends(job_of)]) -> AsyncIterable[ServerSentEvent]:
        """Server-sent events: `progress` as steps finish, `item` per finished item, `end` with the job."""
        last = -1
        sent: set[int] = set()
        while True:
            for version, state in job.tracker.since(last):
                last = version
                yield ServerSentEvent(event="progress", data=job.progress_event(state))
            for it in job.items:
                if it.state in FINISHED and it.index not in sent:
                    sent.add(it.index)
                    yield ServerSentEvent(event="item", data=it.to_json(job.id))
            if job.state in FINISHED:
                yield ServerSentEvent(event="end", data=job.to_json())
                return
            await asyncio.sleep(0.05)

    app.include_router(v1)


def type_task(method: str) -> str:
    from ..methods import METHODS

    return METHODS[method].task


def _register_task(router: APIRouter, task: TaskSpec) -> None:
    """``POST /v1/<task>``: the multipart fields of docs/serve.md, answered with a PNG (or JSON)."""

    async def run_task(
        request: Request,
        svc: Svc,
        image: Annotated[UploadFile, File(description="the image (PNG, JPEG, WebP; RGB, no transparency)")],
        instruction: Annotated[str | None, Form(description='what to change, e.g. "make the circle blue"')] = None,
        target_prompt: Annotated[str | None, Form(description="the target caption itself, instead of an instruction")] = None,
        source_prompt: Annotated[str | None, Form(description="the source caption (default: the captioner's)")] = None,
        method: Annotated[str | None, Form(description="see GET /v1/methods")] = None,
        strength: Annotated[float | None, Form(ge=0.0, le=MAX_STRENGTH, description="turbo: 0 (reconstruction) to 1.5")] = None,
        mask: Annotated[UploadFile | None, File(description="single-channel, the image's size, white = edit")] = None,
        model: Annotated[str | None, Form(description="see GET /v1/models")] = None,
    ) -> Response:
        spec = edit_spec(
            instruction=instruction, target_prompt=target_prompt, source_prompt=source_prompt, method=method, strength=strength
        )
        name = svc.check_method(spec.method, task.name)
        svc.check_strength(name, spec.strength)
        model_name = svc.check_model(model)
        img = await run_in_threadpool(svc.read_image, await read_upload(image))  # decoding is off the event loop
        mask_data = await read_upload(mask)
        m = (
            await run_in_threadpool(svc.read_mask, mask_data, img.shape[:2])
            if mask_data is not None and (mask_data or mask.filename)
            else None
        )
        if task.mask_required and m is None:
            raise Problem(422, f"{task.name} needs a mask (white = the region to {task.name})", "mask")

        def work(cancel) -> tuple[np.ndarray, EditRecord]:
            loaded = svc.loaded(name, model_name)
            t0 = time.perf_counter()
            with loaded.lock:
                (turn,) = Editor(loaded.method).edit(
                    img,
                    spec.instruction,
                    target_prompt=spec.target_prompt,
                    source_prompt=spec.source_prompt,
                    mask=m,
                    strength=spec.strength,
                    callback=step_callback(cancel, None),
                )
            rec = EditRecord.from_result(
                turn.result, method=name, seconds=time.perf_counter() - t0, instruction=spec.instruction, model=model_name
            )
            return turn.image, rec

        out, rec = await svc.run(work, task.name, "instruction" if spec.instruction else "target_prompt")
        return image_answer(request, out, rec)

    run_task.__name__ = f"task_{task.name}"
    run_task.__doc__ = (
        f"{task.summary}. Answers image/png (the record in X-Retouch-* headers and the PNG's text chunks), "
        "or JSON with the image base64-encoded for `Accept: application/json`."
    )
    router.add_api_route(
        task.path,
        run_task,
        methods=["POST"],
        tags=[task.name],
        summary=task.summary,
        response_class=Response,
        responses={200: {"content": {PNG: {}, "application/json": {"schema": ImageAnswer.model_json_schema()}}}},
    )


_CONSTRAINTS = {"Ge": "ge", "Le": "le", "Gt": "gt", "Lt": "lt", "MinLen": "min_length", "MaxLen": "max_length"}


def _form_parameters(model: type[FillRequest]) -> list[inspect.Parameter]:
    """The request model's fields (but ``image`` / ``mask``, which come as files) as multipart form parameters."""
    params = []
    for name, f in model.model_fields.items():
        if name in ("image", "mask"):
            continue
        limits = {
            _CONSTRAINTS[type(m).__name__]: getattr(m, _CONSTRAINTS[type(m).__name__])
            for m in f.metadata
            if type(m).__name__ in _CONSTRAINTS
        }
        form = Form(description=f.description, **limits)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=Annotated[f.annotation, form]))
    return params


def _register_fill_task(router: APIRouter, task: TaskSpec) -> None:
    """``POST /v1/<task>`` of a fill task: ``image`` (and ``mask``) as files, the fields of ``task.request`` as form
    fields; answered with the filled PNG (or JSON), its ``FillRecord`` in headers and text chunks."""
    request_model = task.request
    assert request_model is not None

    async def run_fill(request: Request, svc: Service, image: UploadFile, mask: UploadFile | None = None, **fields: Any) -> Response:
        req = fill_request(request_model, **fields)
        svc.check_method(None, task.name)
        svc.check_fill_model(req.model)
        img = await run_in_threadpool(svc.read_image, await read_upload(image))  # decoding is off the event loop
        m = await run_in_threadpool(svc.read_fill_mask, await read_upload(mask), img.shape[:2]) if task.mask_required else None
        if isinstance(req, OutpaintRequest):
            svc.check_canvas(img.shape, req)
        out, rec = await svc.run(
            lambda cancel: svc.fill(req, img, m, step_callback(cancel, None)), task.name, "mask" if task.mask_required else None
        )
        return image_answer(request, out, rec)

    files = [
        inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
        inspect.Parameter("svc", inspect.Parameter.KEYWORD_ONLY, annotation=Svc),
        inspect.Parameter(
            "image",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[UploadFile, File(description="the image (PNG, JPEG, WebP; RGB, no transparency)")],
        ),
    ]
    if task.mask_required:
        files.append(
            inspect.Parameter(
                "mask",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[UploadFile, File(description="the image's size, any mode: white (or non-zero alpha) = fill")],
            )
        )
    run_fill.__signature__ = inspect.Signature(files + _form_parameters(request_model), return_annotation=Response)  # type: ignore[attr-defined]
    run_fill.__name__ = f"task_{task.name}"
    run_fill.__doc__ = (
        f"{task.summary}. Answers image/png (the fill record in X-Retouch-* headers and the PNG's text chunks), "
        "or JSON with the image base64-encoded for `Accept: application/json`. Every pixel outside the mask is the input's."
    )
    router.add_api_route(
        task.path,
        run_fill,
        methods=["POST"],
        tags=[task.name],
        summary=task.summary,
        response_class=Response,
        responses={200: {"content": {PNG: {}, "application/json": {"schema": ImageAnswer.model_json_schema()}}}},
    )
