"""The HTTP API (FastAPI): ``create_app(settings)`` builds it, ``retouch serve`` runs it (docs/serve.md).

Routes live in ``routes.py``, the state of one server on the ``Service`` of ``service.py`` (on
``app.state``, never in module globals), requests and records in ``retouch.schema`` (shared with
the Python API).
"""

from __future__ import annotations

from .app import create_app, serve
from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "serve"]
