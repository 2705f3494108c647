"""A phrasing generator for editing instructions, far looser than ``edits.TEMPLATES``: for tuning and
measuring instruction readers on text no hand ever wrote.

``generate_instructions(n, split)`` samples a scene, one to three edits (all ten PIE kinds, and size
changes), and writes them the way people might: synonyms for every value, politeness and filler
("could you", "please", "thanks!"), several word orders ("make the star blue", "the star should be
blue", "blue for the star, please"), references of every kind (shape alone when unique, colour +
shape, place "the top left one", relative place "the lower star", size "the bigger star" / "the small
one", pattern, emblem, pose, "it" for the only object) and several edits in one sentence.

The held-out split differs from the training split in its seeds *and* in its phrasing: every list
of choices (templates, synonyms, politeness, joiners) is cut into a training part and a held-out part
(every third choice), so held-out sentences combine wordings that training never showed.  Targets
are exact: each edit is applied to the scene here, not read back from the words.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .reading import NEW_OBJECT_DEFAULTS
from .scene import BACKGROUNDS, COLORS, EMBLEMS, PATTERNS, POSES, POSITIONS, SHAPES, SIZES, STYLES, Scene, WorldObject, random_scene

logger = logging.getLogger(__name__)

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class Example:
    source: Scene
    target: Scene
    instruction: str
    kinds: tuple[str, ...]


class _Pick:
    """rng.choice over the part of each list that belongs to the split (every third item is held out)."""

    def __init__(self, rng: random.Random, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        self.rng, self.held = rng, split == "heldout"

    def __call__(self, items: Sequence):
        items = list(items)
        if len(items) >= 3:
            part = [x for k, x in enumerate(items) if (k % 3 == 2) == self.held]
            items = part or items
        return self.rng.choice(items)


COLOR_SYN = {
    "red": ("red", "crimson", "scarlet", "cherry red"),
    "blue": ("blue", "navy", "cobalt", "royal blue"),
    "green": ("green", "emerald", "lime", "leaf green"),
    "yellow": ("yellow", "golden", "lemon", "gold"),
    "orange": ("orange", "tangerine", "amber"),
    "purple": ("purple", "violet", "lilac", "lavender"),
}
SHAPE_SYN = {
    "circle": ("circle", "disc", "ring"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "pyramid", "triangle"),
    "star": ("star",),
    "heart": ("heart",),
    "cross": ("cross", "plus sign", "plus"),
}
PLURAL = {
    "circle": "circles",
    "disc": "discs",
    "ring": "rings",
    "square": "squares",
    "box": "boxes",
    "block": "blocks",
    "triangle": "triangles",
}
PLURAL |= {"pyramid": "pyramids", "star": "stars", "heart": "hearts", "cross": "crosses", "plus sign": "plus signs", "plus": "pluses"}
SIZE_SYN = {"small": ("small", "little", "tiny"), "medium": ("medium", "medium-sized", "mid-sized"), "large": ("large", "big", "huge")}
PATTERN_ADJ = {
    "solid": ("solid", "plain", "single-colour"),
    "striped": ("striped", "stripy", "lined"),
    "dotted": ("dotted", "spotted", "polka-dot"),
    "checkered": ("checkered", "chequered", "checked"),
}
PATTERN_NOUN = {
    "solid": ("a single colour", "one flat colour", "a solid fill"),
    "striped": ("stripes", "a stripe pattern", "lines"),
    "dotted": ("dots", "polka dots", "spots"),
    "checkered": ("checks", "a checkerboard pattern", "a chessboard pattern"),
}
EMBLEM_SYN = {
    "arrow": ("arrow", "pointer", "arrow"),
    "moon": ("moon", "crescent", "crescent moon"),
    "bolt": ("bolt", "lightning bolt", "thunderbolt"),
    "drop": ("drop", "water drop", "raindrop"),
    "smile": ("smile", "smiley", "smiley face"),
}
POSE_SYN = {
    "upright": ("upright", "the right way up", "straight up"),
    "upside down": ("upside down", "upside-down", "on its head"),
    "tilted left": ("tilted left", "leaning to the left", "tilted counterclockwise"),
    "tilted right": ("tilted right", "leaning to the right", "tilted clockwise"),
}
BG_SYN = {
    "plain": ("a plain white background", "a plain background", "a blank white backdrop"),
    "sky": ("a blue sky with clouds", "a cloudy sky", "the sky"),
    "night": ("a starry night sky", "the night sky", "outer space"),
    "grass": ("a grassy field", "a lawn", "a meadow"),
    "brick": ("a red brick wall", "a wall of bricks", "bricks"),
    "sand": ("a sandy desert", "the desert", "sand dunes"),
}
STYLE_SYN = {
    "flat": ("a flat illustration", "a clean vector drawing", "flat design"),
    "sketch": ("a pencil sketch", "a pencil drawing", "a hand-drawn sketch"),
    "pixel": ("pixel art", "an 8-bit picture", "a pixelated image"),
    "watercolor": ("a watercolor painting", "watercolour", "a watercolor"),
    "grayscale": ("black and white", "a grayscale picture", "monochrome"),
    "sepia": ("a sepia picture", "an old photo", "sepia tones"),
}
PLACE_SYN = {
    "top left": ("top left", "upper left", "top-left"),
    "top right": ("top right", "upper right", "top-right"),
    "bottom left": ("bottom left", "lower left", "bottom-left"),
    "bottom right": ("bottom right", "lower right", "bottom-right"),
}
PREFIX = ("", "", "please ", "could you ", "can you ", "i'd like you to ", "would you ", "hey, ", "now ", "kindly ", "let's ", "just ")
SUFFIX = ("", "", " please", ", thanks", " thanks!", " if you can", ".", "!")
JOIN = (" and ", ", ", ", then ", "; ", " and also ", ", and ", " plus ", " and then ")

TEMPLATES = {
    "color": (
        "make {ref} {v}",
        "turn {ref} {v}",
        "paint {ref} {v}",
        "{ref} should be {v}",
        "change the colour of {ref} to {v}",
        "recolour {ref} {v}",
        "i want {ref} to be {v}",
        "colour {ref} {v}",
        "give {ref} a {v} colour",
        "{ref} needs to be {v}",
    ),
    "shape": (
        "turn {ref} into a {v}",
        "replace {ref} with a {v}",
        "make {ref} a {v}",
        "{ref} should be a {v}",
        "swap {ref} for a {v}",
        "change {ref} into a {v}",
        "i want a {v} instead of {ref}",
        "transform {ref} into a {v}",
        "could {ref} become a {v}",
    ),
    "pattern": (
        "give {ref} {n}",
        "make {ref} {v}",
        "{ref} should be {v}",
        "cover {ref} with {n}",
        "fill {ref} with {n}",
        "put {n} on {ref}",
        "{ref} needs {n}",
        "change the pattern of {ref} to {v}",
        "i'd like {n} on {ref}",
    ),
    "emblem": (
        "give {ref} a {v}",
        "put a {v} on {ref}",
        "{ref} should have a {v}",
        "replace the {o} on {ref} with a {v}",
        "swap {ref}'s {o} for a {v}",
        "change the {o} on {ref} to a {v}",
        "{ref} should show a {v} instead of the {o}",
        "make {ref} carry a {v}",
        "let {ref} wear a {v} emblem",
    ),
    "pose": (
        "make {ref} {v}",
        "turn {ref} {v}",
        "{ref} should be {v}",
        "rotate {ref} so it is {v}",
        "set {ref} {v}",
        "i want {ref} {v}",
        "put {ref} {v}",
        "can {ref} be {v}",
    ),
    "size": ("make {ref} {v}", "{ref} should be {v}", "i want {ref} {v}", "resize {ref} to {v}"),
    "grow": ("make {ref} bigger", "enlarge {ref}", "{ref} should be larger", "grow {ref}", "make {ref} a bit bigger"),
    "shrink": ("make {ref} smaller", "shrink {ref}", "{ref} should be smaller", "make {ref} a little smaller"),
    "delete": (
        "remove {ref}",
        "delete {ref}",
        "get rid of {ref}",
        "erase {ref}",
        "take away {ref}",
        "lose {ref}",
        "ditch {ref}",
        "{ref} has to go",
        "{ref} shouldn't be there",
        "i don't want {ref}",
        "make {ref} disappear",
        "take out {ref}",
    ),
    "add": (
        "add {obj} {place}",
        "put {obj} {place}",
        "place {obj} {place}",
        "draw {obj} {place}",
        "i want {obj} {place}",
        "insert {obj} {place}",
        "there should be {obj} {place}",
        "stick {obj} {place}",
        "include {obj} {place}",
    ),
    "background": (
        "change the background to {v}",
        "put everything on {v}",
        "make the background {v}",
        "set it against {v}",
        "use {v} as the background",
        "replace the background with {v}",
        "i want {v} behind them",
        "move everything onto {v}",
        "the background should be {v}",
        "swap the background for {v}",
    ),
    "style": (
        "make it {v}",
        "turn it into {v}",
        "render it as {v}",
        "convert the picture to {v}",
        "i want it as {v}",
        "redo it in the style of {v}",
        "make the whole thing look like {v}",
        "change the style to {v}",
        "give it the look of {v}",
    ),
}


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _unique(scene: Scene, slot: int, pred) -> bool:
    return [o.slot for o in scene.objects if pred(o)] == [slot]


def reference(scene: Scene, slot: int, pick: _Pick, allow_it: bool = True) -> str:
    """An unambiguous everyday name for the object in ``slot`` (checked against the scene here)."""
    o = scene.object_at(slot)
    shape = pick(SHAPE_SYN[o.shape])
    same = [p for p in scene.objects if p.shape == o.shape]
    row, col = divmod(slot, 2)
    forms: list[str] = []
    if len(scene.objects) == 1 and allow_it:
        forms.append("it")
    if len(same) == 1:
        forms += [f"the {shape}", f"the {pick(SIZE_SYN[o.size])} {shape}"]
    if _unique(scene, slot, lambda p: p.shape == o.shape and p.color == o.color):
        forms.append(f"the {pick(COLOR_SYN[o.color])} {shape}")
    if _unique(scene, slot, lambda p: p.color == o.color):
        forms.append(f"the {pick(COLOR_SYN[o.color])} one")
    place = pick(PLACE_SYN[o.position])
    forms += [f"the {shape} at the {place}", f"the {place} {shape}", f"the {place} one", f"the one in the {place} corner"]
    if _unique(scene, slot, lambda p: p.shape == o.shape and p.slot // 2 == row):
        forms.append(f"the {pick(('top', 'upper')) if row == 0 else pick(('bottom', 'lower'))} {shape}")
    if _unique(scene, slot, lambda p: p.shape == o.shape and p.slot % 2 == col):
        side = "left" if col == 0 else "right"
        forms += [f"the {shape} on the {side}", f"the {side} {shape}", f"the {side}-hand {shape}"]
    if _unique(scene, slot, lambda p: p.slot // 2 == row):
        forms.append(f"the {pick(('top', 'upper')) if row == 0 else pick(('bottom', 'lower'))} one")
    if len(same) >= 2:
        big = max(SIZES.index(p.size) for p in same)
        small = min(SIZES.index(p.size) for p in same)
        k = SIZES.index(o.size)
        if k == big and sum(SIZES.index(p.size) == big for p in same) == 1:
            forms.append(f"the {'bigger' if len(same) == 2 else 'biggest'} {shape}")
        if k == small and sum(SIZES.index(p.size) == small for p in same) == 1:
            forms.append(f"the {'smaller' if len(same) == 2 else 'smallest'} {shape}")
    if _unique(scene, slot, lambda p: p.size == o.size) and o.size != "medium":
        forms.append(f"the {pick(SIZE_SYN[o.size])} one")
    if _unique(scene, slot, lambda p: p.pattern == o.pattern) and o.pattern != "solid":
        forms.append(f"the {pick(PATTERN_ADJ[o.pattern][:2])} one")
    if _unique(scene, slot, lambda p: p.emblem == o.emblem):
        forms += [f"the one with the {pick(EMBLEM_SYN[o.emblem])}", f"the {shape} with the {pick(EMBLEM_SYN[o.emblem])}"]
    if _unique(scene, slot, lambda p: p.pose == o.pose) and o.pose == "upside down":
        forms.append("the upside-down one")
    return pick([f for f in forms if f])


def _object_change(kind: str, scene: Scene, slot: int, pick: _Pick, rng: random.Random, allow_it: bool) -> tuple[str, dict]:
    o = scene.object_at(slot)
    ref = reference(scene, slot, pick, allow_it)
    if kind == "size":
        options = [s for s in SIZES if s != o.size]
        sub = rng.choice(["abs", "rel"])
        if sub == "rel":
            k = SIZES.index(o.size)
            if k < 2 and (k == 0 or rng.random() < 0.5):
                return pick(TEMPLATES["grow"]).format(ref=ref), {"size": SIZES[k + 1]}
            return pick(TEMPLATES["shrink"]).format(ref=ref), {"size": SIZES[k - 1]}
        new = rng.choice(options)
        return pick(TEMPLATES["size"]).format(ref=ref, v=pick(SIZE_SYN[new])), {"size": new}
    vocab = {"color": tuple(COLORS), "shape": SHAPES, "pattern": PATTERNS, "emblem": EMBLEMS, "pose": POSES}[kind]
    new = rng.choice([v for v in vocab if v != getattr(o, kind)])
    t = pick(TEMPLATES[kind]).replace("{ref}'s", "its" if ref == "it" else "{ref}'s")
    if kind == "color":
        v = pick(COLOR_SYN[new])
        text = t.format(ref=ref, v=v)
    elif kind == "shape":
        text = t.format(ref=ref, v=pick(SHAPE_SYN[new]))
    elif kind == "pattern":
        text = t.format(ref=ref, v=pick(PATTERN_ADJ[new]), n=pick(PATTERN_NOUN[new]))
    elif kind == "emblem":
        text = t.format(ref=ref, v=pick(EMBLEM_SYN[new]), o=pick(EMBLEM_SYN[o.emblem]))
    else:
        text = t.format(ref=ref, v=pick(POSE_SYN[new]))
    return text, {kind: new}


def _new_object(slot: int, pick: _Pick, rng: random.Random, scene: Scene) -> tuple[str, str, WorldObject]:
    attrs = dict(NEW_OBJECT_DEFAULTS)
    shape = rng.choice(SHAPES)
    words = []
    if rng.random() < 0.5:
        attrs["size"] = rng.choice(SIZES)
        words.append(pick(SIZE_SYN[attrs["size"]]))
    if rng.random() < 0.85:
        attrs["color"] = rng.choice(tuple(COLORS))
        words.append(pick(COLOR_SYN[attrs["color"]]))
    if rng.random() < 0.4:
        attrs["pattern"] = rng.choice(PATTERNS)
        words.append(pick(PATTERN_ADJ[attrs["pattern"]]))
    words.append(pick(SHAPE_SYN[shape]))
    obj = _a(" ".join(words))
    if rng.random() < 0.4:
        attrs["emblem"] = rng.choice(EMBLEMS)
        obj += f" with {_a(pick(EMBLEM_SYN[attrs['emblem']]))}"
    if rng.random() < 0.2:
        attrs["pose"] = rng.choice(POSES)
        obj += f", {pick(POSE_SYN[attrs['pose']])},"
    new = WorldObject(shape=shape, slot=slot, **attrs)
    # where: the place by name, "in the empty corner" when it is the only free one, or next to an object
    forms = [f"at the {pick(PLACE_SYN[POSITIONS[slot]])}", f"in the {pick(PLACE_SYN[POSITIONS[slot]])} corner"]
    if scene.free_slots() == [slot]:
        forms += ["in the empty corner", "in the free spot", "in the remaining corner"]
    row, col = divmod(slot, 2)
    for other, rel in ((row * 2 + 1 - col, "next to"), (2 + col if row == 0 else col, "above" if row == 0 else "below")):
        if scene.object_at(other) is not None:
            forms.append(f"{rel} {reference(scene, other, pick, allow_it=False)}")
    return obj.rstrip(","), pick(forms), new


def sample_example(rng: random.Random, split: str = "train") -> Example | None:
    pick = _Pick(rng, split)
    scene = random_scene(rng)
    scene = replace(scene, seed=0)
    n_edits = rng.choices((1, 2, 3), weights=(0.65, 0.25, 0.10))[0]
    kinds = rng.sample(["color", "shape", "pattern", "emblem", "pose", "size", "delete", "add", "background", "style"], n_edits)
    target = scene
    touched: set[int] = set()
    parts = []
    for kind in kinds:
        if kind == "background":
            new = rng.choice([b for b in BACKGROUNDS if b != scene.background])
            parts.append(pick(TEMPLATES["background"]).format(v=pick(BG_SYN[new])))
            target = replace(target, background=new)
        elif kind == "style":
            new = rng.choice([s for s in STYLES if s != scene.style])
            parts.append(pick(TEMPLATES["style"]).format(v=pick(STYLE_SYN[new])))
            target = replace(target, style=new)
        elif kind == "add":
            free = [s for s in scene.free_slots() if s not in touched]
            if not free:
                return None
            slot = rng.choice(free)
            obj, place, new = _new_object(slot, pick, rng, scene)
            parts.append(pick(TEMPLATES["add"]).format(obj=obj, place=place))
            target = target.with_object(new)
            touched.add(slot)
        else:
            slots = [o.slot for o in scene.objects if o.slot not in touched]
            if not slots or (kind == "delete" and len(target.objects) < 2):
                return None
            slot = rng.choice(slots)
            touched.add(slot)
            if kind == "delete":
                parts.append(pick(TEMPLATES["delete"]).format(ref=reference(scene, slot, pick, n_edits == 1)))
                target = target.without_slot(slot)
            else:
                text, change = _object_change(kind, scene, slot, pick, rng, n_edits == 1)
                parts.append(text)
                target = target.with_object(replace(target.object_at(slot), **change))
    text = parts[0]
    for p in parts[1:]:
        text += pick(JOIN) + p
    text = (pick(PREFIX) + text + pick(SUFFIX)).strip()
    return Example(scene, target, text, tuple(kinds))


def generate_instructions(n: int, split: str = "train", seed: int = 0) -> list[Example]:
    """``n`` examples of ``split`` (deterministic in ``seed``; the two splits never share a seed)."""
    rng = random.Random(f"phrasing/{split}/{seed}")
    out: list[Example] = []
    while len(out) < n:
        ex = sample_example(rng, split)
        if ex is not None and not ex.target.same_content(ex.source):
            out.append(ex)
    return out
