"""The ``openai`` rewriter against a real OpenAI-compatible chat server on loopback.

The server is FastAPI under uvicorn in a thread, bound to 127.0.0.1 on a free port. It answers from the
hand-written instruction fixture: the target caption for a row that expects an edit, an OpenAI-style
``refusal`` for a row that expects one, and misbehaves on purpose for a few marker instructions (slow,
HTTP 500, not JSON, no choices, chatter instead of a caption, a cut-off answer), so that the request
format, timeouts, bad answers and refusals all go over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from retouch.rewrite import EXAMPLES, SYSTEM_PROMPT, get_rewriter

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "instructions_handwritten.jsonl"
ROWS = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
ANSWERS = {(r["source_caption"], r["instruction"]): r for r in ROWS}


def _completion(content: str | None, finish: str = "stop", refusal: str | None = None) -> dict:
    message = {"role": "assistant", "content": content} | ({"refusal": refusal} if refusal else {})
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "fixture-chat",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }


def make_app(seen: list) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        seen.append({"headers": dict(request.headers), "body": body})
        last = body["messages"][-1]["content"]
        caption, instruction = (part.split(": ", 1)[1] for part in last.split("\n", 1))
        if instruction == "__slow__":
            await asyncio.sleep(3)
        if instruction == "__500__":
            return JSONResponse({"error": {"message": "the model is overloaded"}}, status_code=500)
        if instruction == "__garbage__":
            return PlainTextResponse("<html>not json</html>")
        if instruction == "__nochoices__":
            return {"object": "chat.completion"}
        if instruction == "__chatter__":
            return _completion("Sure! I made the star a lovely shade of blue.")
        if instruction == "__same__":
            return _completion(caption)
        if instruction == "__cut__":
            return _completion(caption[:40], finish="length")
        row = ANSWERS.get((caption, instruction))
        if row is None:
            return JSONResponse({"error": {"message": "no such fixture row"}}, status_code=404)
        if row["expect"] == "refuse":
            return _completion(None, refusal="I can't tell which object you mean.")
        return _completion(row["target_caption"])

    return app


@pytest.fixture(scope="module")
def server():
    seen: list = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(make_app(seen), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the loopback chat server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1", seen
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_request_format_over_http(server):
    url, seen = server
    row = next(r for r in ROWS if r["expect"] == "edit")
    rw = get_rewriter("openai", base_url=url, model="fixture-chat", api_key="sk-local")
    assert rw.rewrite(row["source_caption"], row["instruction"]) == row["target_caption"]
    req = seen[-1]
    assert req["headers"]["content-type"] == "application/json" and req["headers"]["authorization"] == "Bearer sk-local"
    body = req["body"]
    assert body["model"] == "fixture-chat" and body["temperature"] == 0
    msgs = body["messages"]
    assert msgs[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert [m["role"] for m in msgs[1:]] == ["user", "assistant"] * len(EXAMPLES) + ["user"]
    assert msgs[-1]["content"] == f"Caption: {row['source_caption']}\nInstruction: {row['instruction']}"
    # without a key no Authorization header is sent
    get_rewriter("openai", base_url=url + "/", model="m").rewrite(row["source_caption"], row["instruction"])
    assert "authorization" not in seen[-1]["headers"]


def test_fixture_rows_round_trip_and_refusals_are_clear_errors(server):
    url, _ = server
    rw = get_rewriter("openai", base_url=url, model="fixture-chat")
    edits = [r for r in ROWS if r["expect"] == "edit"][::25]
    for r in edits:
        assert rw.rewrite(r["source_caption"], r["instruction"]) == r["target_caption"]
    refusals = [r for r in ROWS if r["expect"] == "refuse"][:3]
    for r in refusals:
        with pytest.raises(ValueError, match="refused .*I can't tell which object you mean"):
            rw.rewrite(r["source_caption"], r["instruction"])


@pytest.mark.parametrize(
    ("instruction", "error", "match"),
    [
        ("__500__", RuntimeError, "answered HTTP 500: .*overloaded"),
        ("__garbage__", RuntimeError, "gave no chat completion"),
        ("__nochoices__", RuntimeError, "gave no chat completion"),
        ("__chatter__", ValueError, "not a detailed caption"),
        ("__same__", ValueError, "could not map"),
        ("__cut__", ValueError, "cut off"),
        ("not in the fixture", RuntimeError, "answered HTTP 404"),
    ],
)
def test_bad_answers_are_named(server, instruction, error, match):
    url, _ = server
    caption = ROWS[0]["source_caption"]
    with pytest.raises(error, match=match):
        get_rewriter("openai", base_url=url, model="m").rewrite(caption, instruction)


def test_timeout_and_unreachable(server):
    url, _ = server
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="timed out after 0.5 s"):
        get_rewriter("openai", base_url=url, timeout=0.5).rewrite(ROWS[0]["source_caption"], "__slow__")
    assert time.monotonic() - t0 < 2.5
    # a port nothing listens on
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free = s.getsockname()[1]
    s.close()
    with pytest.raises(RuntimeError, match="unreachable"):
        get_rewriter("openai", base_url=f"http://127.0.0.1:{free}/v1", timeout=2).rewrite(ROWS[0]["source_caption"], "make it blue")


def test_reader_is_the_default_and_points_outside_captions_elsewhere():
    rw = get_rewriter()
    assert rw.name == "reader"
    with pytest.raises(ValueError, match="Shapes-world captions only.*--rewriter openai.*--target-prompt"):
        rw.rewrite("a photo of a golden retriever on a beach", "make the dog black")
