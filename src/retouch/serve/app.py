"""``create_app(settings)``: the FastAPI application, its one ``Service`` on ``app.state``, the body-size
limit and the token check; ``serve(settings)`` runs it with uvicorn."""

from __future__ import annotations

import logging
import secrets
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from .problems import Problem, problem_response
from .problems import install as install_problems
from .routes import register_routes
from .service import Service
from .settings import ServeSettings

logger = logging.getLogger(__name__)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 (by Content-Length before it is
    read, or as soon as a streamed body passes the limit)."""

    def __init__(self, app, settings: ServeSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.settings.max_body_bytes
        detail = f"the request body is over the server's limit of {limit} bytes (max_body_bytes)"
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await problem_response(413, detail, "body", scope.get("path"))(scope, receive, send)
        seen = 0
        exceeded = False  # then whatever the app answers (a parse error, say) is replaced by the 413
        answered = False

        class TooLarge(Exception):
            pass

        async def counted_receive():
            nonlocal seen, exceeded
            if exceeded:
                raise TooLarge
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    raise TooLarge
            return message

        async def answer_413() -> None:
            nonlocal answered
            if not answered:
                answered = True
                await problem_response(413, detail, "body", scope.get("path"), {"Connection": "close"})(scope, receive, send)

        async def guarded_send(message):
            if exceeded:
                return await answer_413()
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except TooLarge:
            pass
        if exceeded:
            await answer_413()


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The app for ``settings`` (checked first: e.g. a non-loopback host without a token is refused)."""
    settings = settings or ServeSettings()
    settings.check()
    svc = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc.start()
        try:
            yield
        finally:
            svc.stop()

    # FastAPIOffline: the /docs page from bundled Swagger UI files, no CDN (nothing outside may be reachable)
    app = FastAPIOffline(
        title="retouch",
        summary="Edit images from words: the HTTP API",
        description="Routes, JSON shapes and errors: docs/serve.md. Errors are RFC 9457 problem bodies.",
        version="1",
        lifespan=lifespan,
    )
    app.state.service = svc
    app.state.settings = settings
    install_problems(app)

    async def auth(request: Request) -> None:
        token = settings.token
        if not token:
            return
        given = None
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            given = header[7:].strip()
        elif request.method == "GET":  # <img src> and EventSource cannot set headers (RFC 6750 sec. 2.3)
            given = request.query_params.get("access_token")
        if given is None or not secrets.compare_digest(given.encode(), token.encode()):
            raise Problem(
                401,
                "this server needs a token: send 'Authorization: Bearer <token>'" + (" (the token given is wrong)" if given else ""),
                "Authorization",
                {"WWW-Authenticate": 'Bearer realm="retouch"'},
            )

    register_routes(app, svc, auth)
    web = Path(__file__).resolve().parents[1] / "web"
    if (web / "index.html").is_file():  # the browser editor, last so /v1, /docs and /healthz win
        app.mount("/", StaticFiles(directory=str(web), html=True), name="web")
    app.add_middleware(BodyLimit, settings=settings)
    return app


def serve(settings: ServeSettings) -> None:
    """Run the server in the foreground (``retouch serve``)."""
    import uvicorn

    app = create_app(settings)
    app.state.service.preload()  # a model that cannot load fails here, in words, before the port opens
    print(f"retouch serve: http://{settings.host}:{settings.port}  (API docs: /docs)", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=5)
