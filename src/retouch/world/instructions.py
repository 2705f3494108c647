"""Instructions back to changes: the rule-based reading of the world's editing grammar.

``parse_instruction(scene, text)`` inverts ``edits.change_instruction``: it matches each clause
against the phrasing templates (``edits.TEMPLATES``), resolves the referring expression against
the source scene and returns the ``Change`` list, so that applying it gives the target scene.  A
multi-change instruction ("..., ... and ...") is split where every part parses.  Anything it cannot
map raises ``ValueError`` naming the clause, never a silent no-op.  This is the default rewriter
backend of the editing methods on the Shapes world (caption + instruction -> target caption).
"""

from __future__ import annotations

import logging
import re
from functools import cache

from .captions import BACKGROUND_PHRASE, STYLE_PHRASE
from .edits import PATTERN_NOUN, TEMPLATES, Change
from .scene import COLORS, EMBLEMS, PATTERNS, POSES, POSITIONS, SHAPES, SIZES, Scene, WorldObject

logger = logging.getLogger(__name__)


def _alt(words) -> str:
    return "(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")"


_REF = f"(?P<ref>(?:{_alt(COLORS)} )?{_alt(SHAPES)}(?: at the {_alt(POSITIONS)})?)"
_NEW = {
    "shape": f"(?P<new>{_alt(SHAPES)})",
    "emblem": f"(?P<new>{_alt(EMBLEMS)})",
    "pose": f"(?P<new>{_alt(POSES)})",
    "color": f"(?P<new>{_alt(COLORS)})",
    "pattern": f"(?P<new>{_alt(PATTERNS)})",
    "background": f"(?P<new>{_alt(BACKGROUND_PHRASE.values())})",
    "style": f"(?P<new>{_alt(STYLE_PHRASE.values())})",
}
_OBJ = (
    f"a (?P<size>{_alt(SIZES)}) (?P<color>{_alt(COLORS)}) (?P<pattern>{_alt(PATTERNS)}) (?P<shape>{_alt(SHAPES)}) "
    f"with an? (?P<emblem>{_alt(EMBLEMS)}) emblem, (?P<pose>{_alt(POSES)}),?"
)


@cache
def _patterns() -> list[tuple[str, re.Pattern]]:
    out = []
    for kind, templates in TEMPLATES.items():
        for t in templates:
            rx = re.escape(t)
            # describe_new_object's trailing comma is dropped before " at" / " in" (edits.change_instruction)
            rx = rx.replace(r"\{obj\}\ at", "{obj} at").replace(r"\{obj\}\ in", "{obj} in")
            rx = rx.replace(r"\{ref\}", _REF).replace(r"\{old\}", f"(?P<old>{_alt(EMBLEMS)})")
            rx = rx.replace(r"\{a_new\}", "an? " + _NEW.get(kind, "")).replace(r"\{new\}", _NEW.get(kind, ""))
            rx = rx.replace(r"\{noun\}", f"(?P<noun>{_alt(PATTERN_NOUN.values())})")
            rx = rx.replace(r"\{obj\}", _OBJ).replace(r"\{pos\}", f"(?P<pos>{_alt(POSITIONS)})")
            rx = rx.replace("{obj} at", _OBJ + " at").replace("{obj} in", _OBJ + " in")
            out.append((kind, re.compile(rx + "$")))
    return out


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".!")


def resolve_reference(scene: Scene, ref: str) -> int:
    """The slot of the object that ``ref`` ("star", "red star", "star at the top left") names in ``scene``."""
    m = re.fullmatch(f"(?:(?P<color>{_alt(COLORS)}) )?(?P<shape>{_alt(SHAPES)})(?: at the (?P<pos>{_alt(POSITIONS)}))?", ref)
    if not m:
        raise ValueError(f"cannot read the object reference {ref!r}")
    hits = [
        o.slot
        for o in scene.objects
        if o.shape == m["shape"] and (m["color"] is None or o.color == m["color"]) and (m["pos"] is None or o.position == m["pos"])
    ]
    if not hits:
        raise ValueError(f"the image has no {ref}")
    if len(hits) > 1:
        raise ValueError(f"{ref!r} is ambiguous: the image has {len(hits)} of them; say which (e.g. '{m['shape']} at the top left')")
    return hits[0]


def _clause(scene: Scene, text: str) -> Change | None:
    for kind, rx in _patterns():
        m = rx.match(text)
        if not m:
            continue
        g = m.groupdict()
        if kind == "background":
            return Change("background", None, next(k for k, v in BACKGROUND_PHRASE.items() if v == g["new"]))
        if kind == "style":
            return Change("style", None, next(k for k, v in STYLE_PHRASE.items() if v == g["new"]))
        if kind == "add":
            slot = POSITIONS.index(g["pos"])
            obj = WorldObject(g["shape"], g["color"], g["size"], g["pattern"], g["pose"], g["emblem"], slot)
            return Change("add", None, obj)
        slot = resolve_reference(scene, g["ref"])
        if kind == "delete":
            return Change("delete", slot)
        new = g.get("new")
        if kind == "pattern" and new is None:
            new = next(k for k, v in PATTERN_NOUN.items() if v == g["noun"])
        return Change(kind, slot, new)
    return None


def parse_instruction(scene: Scene, instruction: str) -> list[Change]:
    """The changes ``instruction`` asks of ``scene`` (see the module docstring); ValueError if none."""
    text = _normalise(instruction)
    if not text:
        raise ValueError("the instruction is empty")
    changes = _split(scene, text)
    if changes is None:
        raise ValueError(f"cannot map the instruction {instruction!r} to a change of this scene (rule-based rewriter)")
    return changes


def _split(scene: Scene, text: str) -> list[Change] | None:
    """Parse ``text`` as one clause, or as a clause, a separator (", " / " and ") and the rest."""
    try:
        whole = _clause(scene, text)
    except ValueError:
        whole = None
    if whole is not None:
        return [whole]
    for m in re.finditer(r", | and ", text):
        head, rest = text[: m.start()], text[m.end() :]
        try:
            first = _clause(scene, head)
        except ValueError:
            continue
        if first is None:
            continue
        tail = _split(scene, rest)
        if tail is not None:
            return [first, *tail]
    # a reference error in the only reading is worth reporting as such
    _clause(scene, text)
    return None


def apply_instruction(scene: Scene, instruction: str) -> Scene:
    """The target scene of ``instruction`` on ``scene``; every change names objects as the source shows them."""
    target = scene
    for ch in parse_instruction(scene, instruction):
        if ch.kind in ("delete", "shape", "emblem", "pose", "color", "pattern") and target.object_at(ch.slot) is None:
            raise ValueError(f"the instruction changes the object at the {POSITIONS[ch.slot]} twice")
        target = ch.apply(target)
    if not target.objects:
        raise ValueError(f"{instruction!r} would leave the image empty: a scene keeps at least one object")
    return target


_OBJECT_PHRASE = re.compile(
    f"an? (?P<size>{_alt(SIZES)}) (?P<color>{_alt(COLORS)}) (?P<pattern>{_alt(PATTERNS)}) (?P<shape>{_alt(SHAPES)}) "
    f"with an? (?P<emblem>{_alt(EMBLEMS)}) emblem, (?P<pose>{_alt(POSES)}), at the (?P<pos>{_alt(POSITIONS)})"
)
_HEAD = re.compile(
    f"(?P<style>{_alt(STYLE_PHRASE.values())}) of (?:one|two|three|four) objects? "
    f"on (?P<bg>{_alt(BACKGROUND_PHRASE.values())}): (?P<objs>.*)"
)


def parse_detailed_caption(caption: str) -> Scene:
    """The scene a ``captions.detailed_caption`` describes (its exact inverse; texture seed 0)."""
    text = _normalise(caption)
    m = _HEAD.fullmatch(text)
    if not m:
        raise ValueError(f"not a detailed Shapes-world caption: {caption[:80]!r}")
    objects = []
    for part in m["objs"].split("; "):
        o = _OBJECT_PHRASE.fullmatch(part)
        if not o:
            raise ValueError(f"cannot read the object phrase {part!r}")
        objects.append(WorldObject(o["shape"], o["color"], o["size"], o["pattern"], o["pose"], o["emblem"], POSITIONS.index(o["pos"])))
    style = next(k for k, v in STYLE_PHRASE.items() if v == m["style"])
    background = next(k for k, v in BACKGROUND_PHRASE.items() if v == m["bg"])
    return Scene(objects=tuple(sorted(objects, key=lambda o: o.slot)), background=background, style=style, seed=0)


def rewrite_caption(caption: str, instruction: str) -> str:
    """Rule-based rewriter: source detailed caption + instruction -> target detailed caption."""
    from .captions import detailed_caption

    return detailed_caption(apply_instruction(parse_detailed_caption(caption), instruction))
