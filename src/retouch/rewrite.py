"""Instruction -> target caption: one interface, several backends (TurboEdit edits by changing a
detailed caption, so an instruction must first become the caption of the wanted image).

- ``rules`` (default): the world's grammar read exactly (``world.instructions.rewrite_caption``).
- ``openai``: any OpenAI-compatible chat endpoint (base URL + model name), asked with a few
  examples to rewrite the caption; the answer must still read as a detailed caption.

A backend that cannot map an instruction raises ``ValueError`` naming it: never a silent no-op.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You rewrite image captions. Given the detailed caption of an image and an editing instruction, "
    "answer with the caption of the edited image only: same wording and order, with exactly the changes "
    "the instruction asks for."
)
EXAMPLES = (
    (
        "a flat illustration of one object on a grassy field: a small red solid star with a moon emblem, upright, at the top left.",
        "make the star blue",
        "a flat illustration of one object on a grassy field: a small blue solid star with a moon emblem, upright, at the top left.",
    ),
)


class Rewriter:
    """``rewrite(caption, instruction) -> target caption``."""

    name = "base"

    def rewrite(self, caption: str, instruction: str) -> str:
        raise NotImplementedError


REWRITERS: dict[str, type[Rewriter]] = {}


def register_rewriter(cls: type[Rewriter]) -> type[Rewriter]:
    REWRITERS[cls.name] = cls
    return cls


def get_rewriter(name: str = "rules", **kwargs) -> Rewriter:
    if name not in REWRITERS:
        raise ValueError(f"unknown rewriter {name!r}; known: {', '.join(sorted(REWRITERS))}")
    return REWRITERS[name](**kwargs)


def _check_inputs(caption: str, instruction: str) -> None:
    if not caption or not caption.strip():
        raise ValueError("the source caption is empty")
    if not instruction or not instruction.strip():
        raise ValueError("the instruction is empty")


@register_rewriter
class RuleRewriter(Rewriter):
    """The world's grammar, read exactly; errors for anything outside it."""

    name = "rules"

    def rewrite(self, caption: str, instruction: str) -> str:
        from .world.instructions import rewrite_caption

        _check_inputs(caption, instruction)
        return rewrite_caption(caption, instruction)


@register_rewriter
@dataclass
class OpenAIRewriter(Rewriter):
    """Any OpenAI-compatible ``/chat/completions`` endpoint (``base_url`` ends before ``/chat``)."""

    base_url: str = "http://localhost:8000/v1"
    model: str = "default"
    api_key: str | None = None
    timeout: float = 60.0
    name = "openai"

    def rewrite(self, caption: str, instruction: str) -> str:
        _check_inputs(caption, instruction)
        messages = [{"role": "system", "content": SYSTEM_PROMPT}]
        for src, ins, tgt in EXAMPLES:
            messages += [{"role": "user", "content": f"Caption: {src}\nInstruction: {ins}"}, {"role": "assistant", "content": tgt}]
        messages.append({"role": "user", "content": f"Caption: {caption}\nInstruction: {instruction}"})
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0}).encode()
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})
        req = urllib.request.Request(self.base_url.rstrip("/") + "/chat/completions", data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                reply = json.loads(r.read())
            text = reply["choices"][0]["message"]["content"].strip()
        except (urllib.error.URLError, TimeoutError) as e:
            raise RuntimeError(f"rewriter endpoint {self.base_url} unreachable: {e}") from e
        except (KeyError, IndexError, TypeError, json.JSONDecodeError) as e:
            raise RuntimeError(f"rewriter endpoint {self.base_url} gave no chat completion ({e})") from e
        return _validated(caption, instruction, text)


def _validated(caption: str, instruction: str, text: str) -> str:
    """The model's answer, if it is a caption of the same kind that differs from the source."""
    from .world.instructions import parse_detailed_caption

    text = text.removeprefix("Caption:").strip().strip('"')
    if not text or text == caption.strip():
        raise ValueError(f"the rewriter could not map {instruction!r} to a change of the caption")
    try:
        parse_detailed_caption(caption)
    except ValueError:
        return text  # not a world caption: nothing to check it against
    try:
        parse_detailed_caption(text)
    except ValueError as e:
        raise ValueError(f"the rewriter's answer is not a detailed caption ({e}): {text[:80]!r}") from e
    return text
