"""Fuzz targets for the HTTP service's request parsers (src/retouch/serve): the multipart form an edit
arrives in (python-multipart through Starlette's ``Request.form``), then the fields as the routes read
them (``edit_spec``, the pydantic ``EditSpec``) and the file parts through the image and mask loaders;
and the JSON bodies (``GenerateRequest``, ``EditSpec``).  Allowed: the documented errors, which the
routes answer with a 4xx -- ``Problem``, Starlette's ``HTTPException`` (a malformed body: 400),
pydantic's ``ValidationError`` and the loaders' ``ValueError`` / ``OSError``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request

from retouch.edit import load_image, load_mask
from retouch.schema import EditSpec, GenerateRequest
from retouch.serve.problems import Problem
from retouch.serve.routes import edit_spec

BOUNDARY = b"retouchfuzz"
ALLOWED = (Problem, HTTPException, ValueError, OSError)


def _request(body: bytes, content_type: bytes) -> Request:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/edit",
        "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        "query_string": b"",
        "app": None,  # inside an app Starlette answers a malformed multipart body with HTTPException(400)
    }
    return Request(scope, receive)


async def _form(data: bytes) -> None:
    req = _request(data, b"multipart/form-data; boundary=" + BOUNDARY)
    async with req.form(max_files=4, max_fields=32) as form:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        files = {k: v for k, v in form.items() if not isinstance(v, str)}
        known = {k: fields.get(k) for k in ("instruction", "target_prompt", "source_prompt", "method")}
        strength = fields.get("strength")
        spec = edit_spec(**known, strength=float(strength) if strength not in (None, "") else None)
        assert spec.instruction is not None or spec.target_prompt is not None
        image = None
        if "image" in files:
            image = load_image(await files["image"].read(), name="the image file")
        if "mask" in files and image is not None:
            load_mask(await files["mask"].read(), image.shape[:2], name="the mask file")


def serve_form(data: bytes) -> None:
    """A multipart/form-data body (boundary ``retouchfuzz``) -> the edit route's parsing of it."""
    asyncio.run(_form(data))


def serve_json(data: bytes) -> None:
    """A JSON body -> ``GenerateRequest`` and ``EditSpec`` (pydantic, as FastAPI validates them)."""
    for model in (GenerateRequest, EditSpec):
        try:
            model.model_validate_json(data)
        except ValueError:  # pydantic's ValidationError
            pass


TARGETS: dict[str, Callable[[bytes], None]] = {"serve-form": serve_form, "serve-json": serve_json}
