"""The server's settings: one pydantic model, checked before anything starts."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

MiB = 1024 * 1024


class ServeSettings(BaseModel):
    """Everything ``create_app`` needs; ``retouch serve`` fills it from its flags.

    Limits (each answered with a 4xx problem body, docs/serve.md "Errors"):
    ``max_pixels`` per uploaded image, ``max_body_bytes`` per request body, ``max_concurrent``
    model requests at once (more: 429 with ``Retry-After: retry_after_s``), ``request_timeout_s``
    per model request (408), ``max_sessions`` / ``max_session_bytes`` (least recently used sessions
    are evicted past either), ``max_jobs`` stored jobs (finished ones are dropped oldest first) of at
    most ``max_job_items`` edits each.  ``max_pixels`` also bounds an outpainted canvas.

    ``fill_models``: the diffusion inpainting folders the fill tasks (inpaint, erase, outpaint) may use, named by
    their folder names (``GET /v1/models?task=erase``); default: the shipped ``models/shapes-inpaint``.  They are
    apart from ``model``: a fill never runs the served edit model.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    model: str | None = None  # a pipeline folder served as the default model; None: the shipped Shapes models
    fill_models: list[str] | None = None  # inpainting folders for the fill tasks; None: the shipped models/shapes-inpaint
    token: str | None = None  # when set, every /v1 route needs "Authorization: Bearer <token>"
    default_method: str = "turbo"
    methods: list[str] | None = None  # methods served (default: every registered non-reference method)
    method_options: dict[str, dict] = Field(default_factory=dict)  # per-method settings, e.g. {"turbo": {"device": "cuda"}}
    preload: list[str] = Field(default_factory=list)  # methods loaded at start-up instead of on first use
    max_pixels: int = Field(default=2048 * 2048, ge=1)
    max_body_bytes: int = Field(default=32 * MiB, ge=1024)
    max_concurrent: int = Field(default=4, ge=1)
    retry_after_s: int = Field(default=1, ge=0)
    request_timeout_s: float = Field(default=120.0, gt=0)
    max_sessions: int = Field(default=32, ge=1)
    max_session_bytes: int = Field(default=512 * MiB, ge=1)
    max_jobs: int = Field(default=16, ge=1)
    max_job_items: int = Field(default=256, ge=1)
    max_loaded_methods: int = Field(default=4, ge=1)

    def check(self) -> None:
        """Refuse settings the server must not start with (a ValueError that says what to do)."""
        if self.token is not None and not self.token.strip():
            raise ValueError("the token is empty: put a secret of at least 16 characters in the --token-file")
        if self.token is not None and len(self.token.strip()) < 16:
            raise ValueError(
                "the token is shorter than 16 characters: use a longer secret "
                "(`python -c 'import secrets; print(secrets.token_urlsafe())'`)"
            )
        if not is_loopback(self.host) and not self.token:
            raise ValueError(
                f"--host {self.host} is not a loopback address: anyone who can reach it could use the server, "
                "so it needs a token (--token-file FILE with a secret; clients send 'Authorization: Bearer <secret>')"
            )
        if self.model is not None and not Path(self.model).is_dir():
            raise ValueError(f"--model {self.model}: no such model folder")
        names: dict[str, str] = {}
        for folder in self.fill_models or []:
            from ..methods.fill import check_inpaint_folder

            try:
                check_inpaint_folder(folder)  # from its config files: no weight loads here
            except (OSError, ValueError) as e:
                raise ValueError(f"fill model {folder}: {e}") from e
            name = Path(folder).resolve().name
            if name in names:
                raise ValueError(f"fill models {names[name]} and {folder} have the same name {name!r}: clients name them by it")
            names[name] = folder

    def served_fill_models(self) -> list[Path]:
        """The fill tasks' model folders: ``fill_models``, or the shipped Shapes inpainting model where it is."""
        if self.fill_models is not None:
            return [Path(p) for p in self.fill_models]
        from ..models.backbone import MODELS_DIR

        shipped = MODELS_DIR / "shapes-inpaint"
        return [shipped] if (shipped / "model_index.json").is_file() else []


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def read_token_file(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"token file {p} not found")
    return p.read_text().strip()
