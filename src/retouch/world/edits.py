"""Exact edits of the ten PIE-Bench types on Shapes-world scenes.

An edit is a list of atomic ``Change`` s applied to a source scene.  From it come
the target scene, the instruction (several phrasings per type), PIE-style
source/target prompts with the changed words in [brackets], a ``blended_word``,
and the edit mask: every pixel where the two renders differ plus the footprint of
each touched object, dilated by a couple of pixels; the whole image for a style
change.
"""

from __future__ import annotations

import difflib
import logging
import random
import re
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
from scipy.ndimage import binary_dilation

from .captions import BACKGROUND_PHRASE, STYLE_PHRASE, detailed_caption
from .render import DEFAULT_SIZE, object_footprint, render
from .scene import (
    BACKGROUNDS,
    COLORS,
    EMBLEMS,
    PATTERNS,
    POSES,
    POSITIONS,
    SHAPES,
    STYLES,
    Scene,
    WorldObject,
    random_object,
)

logger = logging.getLogger(__name__)

# PIE-Bench's editing types, their folder names and their share of the 700 cases
EDIT_TYPES: dict[int, str] = {
    0: "random",
    1: "change_object",
    2: "add_object",
    3: "delete_object",
    4: "change_attribute_content",
    5: "change_attribute_pose",
    6: "change_attribute_color",
    7: "change_attribute_material",
    8: "change_background",
    9: "change_style",
}
PIE_COUNTS: dict[int, int] = {0: 140, 1: 80, 2: 80, 3: 80, 4: 40, 5: 40, 6: 40, 7: 40, 8: 80, 9: 80}
PIE_DIRS: dict[int, str] = {t: f"{t}_{EDIT_TYPES[t]}_{PIE_COUNTS[t]}" for t in EDIT_TYPES}
# atomic change kind of each single-change type
TYPE_KIND: dict[int, str] = {
    1: "shape",
    2: "add",
    3: "delete",
    4: "emblem",
    5: "pose",
    6: "color",
    7: "pattern",
    8: "background",
    9: "style",
}
OBJECT_KINDS = ("shape", "emblem", "pose", "color", "pattern")

MASK_DILATION = 2  # pixels at 128x128, scaled with the image

TEMPLATES: dict[str, tuple[str, ...]] = {
    "shape": (
        "turn the {ref} into {a_new}",
        "replace the {ref} with {a_new}",
        "change the {ref} to {a_new}",
        "make the {ref} {a_new} instead",
        "swap the {ref} for {a_new}",
        "transform the {ref} into {a_new}",
        "the {ref} should be {a_new}",
    ),
    "add": (
        "add {obj} at the {pos}",
        "put {obj} in the {pos} corner",
        "place {obj} at the {pos}",
        "insert {obj} at the {pos}",
        "draw {obj} at the {pos}",
        "there should also be {obj} at the {pos}",
    ),
    "delete": (
        "remove the {ref}",
        "delete the {ref}",
        "take away the {ref}",
        "erase the {ref}",
        "get rid of the {ref}",
        "make the {ref} disappear",
    ),
    "emblem": (
        "replace the {old} emblem on the {ref} with {a_new}",
        "change the {old} on the {ref} to {a_new}",
        "put {a_new} emblem on the {ref} instead of the {old}",
        "make the {ref} show {a_new}",
        "swap the {old} emblem of the {ref} for {a_new}",
        "the {ref} should carry {a_new} emblem",
    ),
    "pose": (
        "make the {ref} {new}",
        "change the pose of the {ref} to {new}",
        "rotate the {ref} so that it is {new}",
        "the {ref} should be {new}",
        "set the {ref} {new}",
        "turn the {ref} so it stands {new}",
    ),
    "color": (
        "make the {ref} {new}",
        "turn the {ref} {new}",
        "change the color of the {ref} to {new}",
        "paint the {ref} {new}",
        "recolor the {ref} {new}",
        "the {ref} should be {new}",
        "color the {ref} {new}",
    ),
    "pattern": (
        "make the {ref} {new}",
        "give the {ref} a {noun} pattern",
        "change the pattern of the {ref} to {new}",
        "cover the {ref} with a {noun} pattern",
        "the {ref} should be {new}",
        "switch the {ref} to a {new} texture",
    ),
    "background": (
        "change the background to {new}",
        "replace the background with {new}",
        "put the objects on {new}",
        "make the background {new}",
        "swap the background for {new}",
        "set the scene on {new}",
        "move everything onto {new}",
    ),
    "style": (
        "make it {new}",
        "turn the picture into {new}",
        "render this as {new}",
        "change the style to {new}",
        "convert the image to {new}",
        "redraw it as {new}",
    ),
}
PATTERN_NOUN = {"solid": "plain", "striped": "stripe", "dotted": "polka dot", "checkered": "checkerboard"}


@dataclass(frozen=True)
class Change:
    """One atomic change.  ``slot`` is None for background and style; ``new`` is the
    new value, or the added object for ``add``."""

    kind: str
    slot: int | None = None
    new: str | WorldObject | None = None

    def apply(self, scene: Scene) -> Scene:
        if self.kind == "background":
            return replace(scene, background=self.new)
        if self.kind == "style":
            return replace(scene, style=self.new)
        if self.kind == "add":
            assert isinstance(self.new, WorldObject)
            if scene.object_at(self.new.slot) is not None:
                raise ValueError(f"slot {self.new.slot} is not free")
            return scene.with_object(self.new)
        if self.kind == "delete":
            return scene.without_slot(self.slot)
        obj = scene.object_at(self.slot)
        if obj is None:
            raise ValueError(f"no object in slot {self.slot} to change")
        return scene.with_object(replace(obj, **{self.kind: self.new}))

    def to_dict(self) -> dict:
        new = self.new.__dict__ if isinstance(self.new, WorldObject) else self.new
        return {"kind": self.kind, "slot": self.slot, "new": new}


def referring_expression(scene: Scene, slot: int, others: tuple[WorldObject, ...] | None = None) -> str:
    """Shortest unambiguous name of the object in ``slot``: shape, colour + shape, or with its position.

    ``others`` are the objects it must be told apart from; by default the scene's other
    objects.  A multi-change instruction passes the objects of both source and target, so
    that "remove the red star" stays unambiguous next to "add a red star".
    """
    o = scene.object_at(slot)
    assert o is not None
    if others is None:
        others = tuple(p for p in scene.objects if p.slot != slot)
    if not any(p.shape == o.shape for p in others):
        return o.shape
    if not any(p.shape == o.shape and p.color == o.color for p in others):
        return f"{o.color} {o.shape}"
    return f"{o.shape} at the {o.position}"


def describe_new_object(o: WorldObject) -> str:
    """Full description of an object to add (every attribute, so the target is exact)."""
    return f"a {o.size} {o.color} {o.pattern} {o.shape} with {_a(o.emblem)} emblem, {o.pose},"


def change_instruction(source: Scene, ch: Change, rng: random.Random, target: Scene | None = None) -> str:
    """One phrasing of ``ch``; objects are named as they are in ``source`` (and told apart from ``target``'s)."""
    t = rng.choice(TEMPLATES[ch.kind])
    if ch.kind == "background":
        return t.format(new=BACKGROUND_PHRASE[ch.new])
    if ch.kind == "style":
        return t.format(new=STYLE_PHRASE[ch.new])
    if ch.kind == "add":
        assert isinstance(ch.new, WorldObject)
        return t.format(obj=describe_new_object(ch.new), pos=POSITIONS[ch.new.slot]).replace(", at", " at").replace(", in", " in")
    others = tuple(p for sc in (source, target or source) for p in sc.objects if p.slot != ch.slot)
    ref = referring_expression(source, ch.slot, others)
    if ch.kind == "delete":
        return t.format(ref=ref)
    old = source.object_at(ch.slot)
    if ch.kind == "emblem":
        return t.format(ref=ref, old=old.emblem, new=ch.new, a_new=_a(ch.new))
    if ch.kind == "pattern":
        return t.format(ref=ref, new=ch.new, noun=PATTERN_NOUN[ch.new])
    return t.format(ref=ref, new=ch.new, a_new=_a(ch.new))


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def bracket_diff(src: str, tgt: str) -> tuple[str, str]:
    """PIE-Bench-style prompts: words that differ are wrapped in [brackets] on each side."""
    a, b = _TOKEN.findall(src), _TOKEN.findall(tgt)
    out_a: list[str] = []
    out_b: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out_a += a[i1:i2]
            out_b += b[j1:j2]
            continue
        if i2 > i1:
            out_a.append("[" + " ".join(a[i1:i2]) + "]")
        if j2 > j1:
            out_b.append("[" + " ".join(b[j1:j2]) + "]")
    return _join(out_a), _join(out_b)


_TOKEN = re.compile(r"[\w']+|[^\w\s]")


def _join(tokens: list[str]) -> str:
    """Space-join tokens with no space before punctuation."""
    return re.sub(r" ([^\w\s\[])", r"\1", " ".join(tokens))


def edit_mask(source: Scene, target: Scene, changes: list[Change], size: int = DEFAULT_SIZE) -> np.ndarray:
    """Boolean HxW mask (True = edit region) covering every pixel the edit changes."""
    if any(c.kind == "style" for c in changes):
        return np.ones((size, size), dtype=bool)
    a, b = render(source, size), render(target, size)
    m = (a != b).any(axis=2)
    for c in changes:
        slot = c.new.slot if c.kind == "add" else c.slot
        if slot is None:
            continue
        for sc in (source, target):
            o = sc.object_at(slot)
            if o is not None:
                m |= object_footprint(o, size)
    it = max(1, round(MASK_DILATION * size / DEFAULT_SIZE))
    return binary_dilation(m, iterations=it)


@dataclass
class Edit:
    type_id: int
    source: Scene
    changes: list[Change]
    instruction: str
    size: int = DEFAULT_SIZE
    target: Scene = field(init=False)

    def __post_init__(self) -> None:
        t = self.source
        for c in self.changes:
            t = c.apply(t)
        self.target = t

    @property
    def source_caption(self) -> str:
        return detailed_caption(self.source)

    @property
    def target_caption(self) -> str:
        return detailed_caption(self.target)

    @property
    def pie_prompts(self) -> tuple[str, str]:
        return bracket_diff(self.source_caption, self.target_caption)

    @property
    def blended_word(self) -> str:
        """Source and target noun of the one edited object (PIE-Bench's local-blend words), else ''."""
        slots = {c.new.slot if c.kind == "add" else c.slot for c in self.changes}
        if len(slots) != 1 or None in slots:
            return ""
        (slot,) = slots
        s, t = self.source.object_at(slot), self.target.object_at(slot)
        return " ".join(o.shape for o in (s, t) if o is not None) if s and t else (s or t).shape

    @cached_property
    def mask(self) -> np.ndarray:
        return edit_mask(self.source, self.target, self.changes, self.size)

    def render_source(self) -> np.ndarray:
        return render(self.source, self.size)

    def render_target(self) -> np.ndarray:
        return render(self.target, self.size)


def _sample_change(kind: str, scene: Scene, rng: random.Random, avoid_slots: set[int]) -> Change | None:
    """A random change of ``kind`` valid on ``scene``; None if there is none."""
    if kind == "background":
        return Change("background", None, rng.choice([b for b in BACKGROUNDS if b != scene.background]))
    if kind == "style":
        return Change("style", None, rng.choice([s for s in STYLES if s != scene.style]))
    if kind == "add":
        free = [s for s in scene.free_slots() if s not in avoid_slots]
        return Change("add", None, random_object(rng, rng.choice(free))) if free else None
    slots = [o.slot for o in scene.objects if o.slot not in avoid_slots]
    if kind == "delete":
        # keep at least one object in the scene
        return Change("delete", rng.choice(slots)) if slots and len(scene.objects) >= 2 else None
    if not slots:
        return None
    slot = rng.choice(slots)
    vocab = {"shape": SHAPES, "emblem": EMBLEMS, "pose": POSES, "color": tuple(COLORS), "pattern": PATTERNS}[kind]
    old = getattr(scene.object_at(slot), kind)
    return Change(kind, slot, rng.choice([v for v in vocab if v != old]))


def sample_edit(scene: Scene, type_id: int, rng: random.Random, size: int = DEFAULT_SIZE) -> Edit | None:
    """A random edit of PIE type ``type_id`` on ``scene``, or None when the scene admits none."""
    if type_id not in EDIT_TYPES:
        raise ValueError(f"unknown edit type {type_id}; expected 0..9")
    if type_id != 0:
        ch = _sample_change(TYPE_KIND[type_id], scene, rng, set())
        if ch is None:
            return None
        return Edit(type_id, scene, [ch], change_instruction(scene, ch, rng), size)
    # random: 2-3 changes of different kinds; each touched object is touched once, and
    # every change is named against the source scene
    k = rng.choice((2, 3))
    kinds = rng.sample(list(OBJECT_KINDS) + ["add", "delete", "background", "style"], k)
    changes: list[Change] = []
    touched: set[int] = set()
    cur = scene
    for kind in kinds:
        ch = _sample_change(kind, cur if kind == "delete" else scene, rng, touched)
        if ch is None:
            return None
        slot = ch.new.slot if ch.kind == "add" else ch.slot
        if slot is not None:
            touched.add(slot)
        changes.append(ch)
        cur = ch.apply(cur)
    parts = [change_instruction(scene, c, rng, target=cur) for c in changes]
    instruction = ", ".join(parts[:-1]) + " and " + parts[-1]
    return Edit(0, scene, changes, instruction, size)


def edit_to_dict(e: Edit) -> dict:
    return {"type_id": e.type_id, "changes": [c.to_dict() for c in e.changes], "instruction": e.instruction}
