"""A caption generator far richer than the templates of ``captions.py``, for training the caption reader.

``rich_caption(scene, rng)`` describes a scene the way people might: synonyms for every value, adjectives in
any order or after the noun, places given absolutely ("in the top-left corner", "north-west"), by rows and
columns ("along the top: ... and ..."), relative to an object already named ("to the right of the star",
"below it", "diagonally across from it"), or not at all; counts or none; attributes left out; clauses and
objects in any order; punctuation, case and light typos varied. It returns what the caption *says*
(``Said``): the scene with each object in the place the words put it, and which attributes the words leave
out. A caption that names no place for an object puts it in the first free place in reading order (top left,
top right, bottom left, bottom right), the reader's documented default.

The hand-written paraphrase fixtures (``tests/fixtures/paraphrases*.jsonl``) measure generalisation, so the
words they use for attribute values (``FIXTURE_WORDS``: navy, crimson, disc, plus sign, huge, teardrop, upper
left, ...) never appear here; a test checks it. ``negative_caption(rng)`` gives text that is not about the
world (a reader must find no object in it).
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass, field, replace

from . import captions as tpl
from .scene import N_SLOTS, OBJECT_ATTRS, Scene, WorldObject, random_scene

logger = logging.getLogger(__name__)

# the attribute words of the hand-written fixtures, kept out of every phrase below
FIXTURE_WORDS: tuple[str, ...] = (
    "violet",
    "lime",
    "navy",
    "golden",
    "amber",
    "cobalt",
    "scarlet",
    "crimson",
    "emerald",
    "box",
    "disc",
    "plus sign",
    "three-sided",
    "love heart",
    "five-pointed",
    "huge",
    "tiny",
    "covered in dots",
    "bands across",
    "checkerboard",
    "unpatterned",
    "single-coloured",
    "no pattern",
    "speckled",
    "turned over",
    "on its head",
    "clockwise",
    "right way up",
    "level",
    "pointer",
    "teardrop",
    "crescent",
    "happy face",
    "lightning symbol",
    "upper",
    "lower",
    "lawn",
    "dunes",
    "brickwork",
    "starlit",
    "dotted with clouds",
    "empty white canvas",
    "graphite",
    "retro",
    "low-res",
    "aquarelle",
    "watercolour wash",
    "vector graphic",
    "shades of gray",
    "sepia-tone",
)

COLOR_WORDS = {
    "blue": ("blue", "blue", "dark blue", "deep blue", "royal blue", "azure", "sapphire", "ultramarine"),
    "purple": ("purple", "purple", "lilac", "lavender", "plum", "mauve", "magenta", "grape-coloured"),
    "red": ("red", "red", "cherry red", "ruby", "vermilion", "tomato red", "blood-red", "bright red"),
    "green": ("green", "green", "jade", "olive green", "forest green", "mint green", "leaf green", "kelly green"),
    "orange": ("orange", "orange", "tangerine", "apricot", "pumpkin", "carrot-coloured", "burnt orange", "bright orange"),
    "yellow": ("yellow", "yellow", "lemon", "canary yellow", "mustard", "butter yellow", "sunflower yellow", "banana yellow"),
}
COLOR_NOUNS = {"blue": "blue", "purple": "purple", "red": "red", "green": "green", "orange": "orange", "yellow": "yellow"}
SHAPE_WORDS = {
    "circle": ("circle", "circle", "circle", "ball", "round shape", "orb", "coin", "round blob"),
    "square": ("square", "square", "square", "block", "tile", "cube", "square shape"),
    "triangle": ("triangle", "triangle", "triangle", "pyramid", "wedge", "triangular shape", "trigon"),
    "star": ("star", "star", "star", "star shape", "pentagram", "starfish shape", "pointy star"),
    "heart": ("heart", "heart", "heart", "heart shape", "valentine", "heart symbol", "valentine heart"),
    "cross": ("cross", "cross", "cross", "plus", "plus shape", "cross shape", "swiss cross"),
}
SHAPE_PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars", "heart": "hearts", "cross": "crosses"}
THING_WORDS = ("shape", "object", "thing", "figure", "item", "form")
SIZE_WORDS = {
    "small": ("small", "small", "little", "mini", "wee", "petite", "minuscule", "teeny", "smallish"),
    "medium": ("medium", "medium", "medium-sized", "mid-sized", "average-sized", "moderate-sized", "regular-sized", "middling"),
    "large": ("large", "large", "big", "giant", "enormous", "massive", "oversized", "jumbo", "biggish"),
}
SIZE_POST = {
    "small": ("of small size", "on the small side"),
    "medium": ("of medium size", "of average size"),
    "large": ("of large size", "on the big side"),
}
PATTERN_ADJ = {
    "solid": ("solid", "solid", "plain", "solid-colored", "flat-colored", "uniform", "one-colour", "unmarked"),
    "striped": ("striped", "striped", "stripy", "pinstriped", "streaky", "lined"),
    "dotted": ("dotted", "dotted", "spotted", "polka-dot", "dotty", "spotty", "stippled"),
    "checkered": ("checkered", "checkered", "checked", "chequered", "plaid", "gingham", "chessboard-patterned"),
}
PATTERN_POST = {
    "solid": ("in one solid colour", "with no markings", "filled solid", "without any texture"),
    "striped": ("with stripes", "with stripes on it", "in stripes", "with a striped fill"),
    "dotted": ("with polka dots", "with spots", "full of dots", "with a dotted fill"),
    "checkered": ("with a checkered pattern", "with checks", "in a chessboard pattern", "with a checked fill"),
}
POSE_WORDS = {
    "upright": (
        "upright",
        "standing upright",
        "straight",
        "unrotated",
        "not rotated",
        "in its normal orientation",
        "standing straight",
        "upright and untilted",
    ),
    "tilted left": (
        "tilted left",
        "leaning left",
        "tilted to the left",
        "tipped to the left",
        "slanted left",
        "slanting to the left",
        "rotated a bit to the left",
        "canted left",
    ),
    "tilted right": (
        "tilted right",
        "leaning right",
        "tilted to the right",
        "tipped to the right",
        "slanted right",
        "slanting to the right",
        "rotated a bit to the right",
        "canted right",
    ),
    "upside down": (
        "upside down",
        "flipped upside down",
        "inverted",
        "turned upside down",
        "rotated 180 degrees",
        "topsy-turvy",
        "the wrong way up",
        "head down",
    ),
}
EMBLEM_WORDS = {
    "arrow": ("arrow", "arrow", "arrow sign", "arrowhead", "little arrow"),
    "moon": ("moon", "moon", "half moon", "lunar symbol", "moon sign"),
    "bolt": ("bolt", "lightning bolt", "thunderbolt", "zigzag bolt", "lightning flash"),
    "drop": ("drop", "water drop", "droplet", "raindrop", "drip"),
    "smile": ("smile", "smiley", "smiley face", "grin", "grinning face"),
}
EMBLEM_FORMS = (
    "with {a} emblem",
    "with {a} emblem on it",
    "bearing {a} symbol",
    "marked with {a}",
    "with {a} on it",
    "decorated with {a}",
    "stamped with {a}",
    "featuring {a}",
    "with {a} printed on it",
    "that has {a} on it",
    "with {a} icon",
    "sporting {a}",
    "with {a} drawn inside",
)
STYLE_WORDS = {
    "flat": (
        "a flat illustration",
        "a flat drawing",
        "a simple flat image",
        "a clean vector drawing",
        "a flat cartoon",
        "a minimalist illustration",
        "flat design",
        "a simple clip-art picture",
    ),
    "sketch": (
        "a pencil sketch",
        "a sketch",
        "a hand-drawn sketch",
        "a charcoal sketch",
        "a rough sketch",
        "a line drawing",
        "a doodle",
        "a sketched picture",
    ),
    "pixel": (
        "a pixel art picture",
        "pixel art",
        "a pixelated picture",
        "an 8-bit style image",
        "a pixel-art scene",
        "a blocky pixel image",
        "a 16-bit sprite-style picture",
        "a pixelated image",
    ),
    "watercolor": (
        "a watercolor painting",
        "a watercolour painting",
        "a watercolor",
        "a painting in watercolors",
        "a watercolor illustration",
        "a soft watercolor",
        "a painted watercolor picture",
        "a watercolour",
    ),
    "grayscale": (
        "a grayscale picture",
        "a black and white picture",
        "a greyscale image",
        "a monochrome picture",
        "a gray-toned picture",
        "a colourless picture",
        "a desaturated image",
        "a grayscale photo",
    ),
    "sepia": (
        "a sepia picture",
        "a sepia photo",
        "a sepia-toned image",
        "an old sepia print",
        "an antique brown-toned photo",
        "a sepia tinted image",
        "an old brownish photograph",
        "a sepia image",
    ),
}
STYLE_TAIL = {
    "flat": ("flat style", "in a flat style", "flat-shaded", "as a flat illustration"),
    "sketch": ("sketched in pencil", "as a sketch", "in sketch style", "hand-sketched"),
    "pixel": ("in pixel art", "pixelated", "as pixel art", "in an 8-bit style"),
    "watercolor": ("in watercolor", "painted in watercolour", "watercolor style", "as a watercolor"),
    "grayscale": ("in grayscale", "in black and white", "monochrome", "in greyscale"),
    "sepia": ("in sepia", "sepia-toned", "in sepia tones", "with a sepia tint"),
}
BACKGROUND_WORDS = {
    "plain": (
        "a plain white background",
        "a white background",
        "a blank white backdrop",
        "a bare white backdrop",
        "a plain backdrop",
        "a clean white background",
        "plain white",
        "a blank background",
    ),
    "sky": (
        "a blue sky with clouds",
        "a cloudy blue sky",
        "the sky",
        "clouds",
        "a sky full of clouds",
        "the open sky",
        "fluffy clouds",
        "a cloudy sky",
    ),
    "grass": ("a grassy field", "a field of grass", "green grass", "a meadow", "a grassy meadow", "turf", "a patch of grass", "grass"),
    "night": (
        "a starry night sky",
        "a night sky with stars",
        "a dark starry sky",
        "the night sky",
        "a star-filled night",
        "a sky at night",
        "a midnight sky",
        "stars at night",
    ),
    "brick": (
        "a red brick wall",
        "a brick wall",
        "a wall of bricks",
        "bricks",
        "a masonry wall",
        "a wall made of brick",
        "a brick background",
        "an old brick wall",
    ),
    "sand": ("a sandy desert", "desert sand", "a desert", "sand", "an arid desert", "sandy ground", "a sandy plain", "the desert"),
}
BG_PREPS = ("on", "against", "over", "in front of", "set on", "upon")
# absolute places: slot -> phrases (reading order 0 top left, 1 top right, 2 bottom left, 3 bottom right)
PLACE_WORDS = {
    0: ("top left", "top-left", "left top", "top left corner", "top left quadrant", "north-west", "northwest", "top left square"),
    1: ("top right", "top-right", "right top", "top right corner", "top right quadrant", "north-east", "northeast", "top right square"),
    2: (
        "bottom left",
        "bottom-left",
        "left bottom",
        "bottom left corner",
        "bottom left quadrant",
        "south-west",
        "southwest",
        "bottom left square",
    ),
    3: (
        "bottom right",
        "bottom-right",
        "right bottom",
        "bottom right corner",
        "bottom right quadrant",
        "south-east",
        "southeast",
        "bottom right square",
    ),
}
PLACE_FORMS = ("at the {p}", "in the {p}", "{p}", "at {p}", "placed at the {p}", "up in the {p}", "sitting in the {p}", "over in the {p}")
PLACE_SPLIT = {
    0: ("at the top, on the left", "in the top row on the left", "on the left side at the top", "top row, left"),
    1: ("at the top, on the right", "in the top row on the right", "on the right side at the top", "top row, right"),
    2: ("at the bottom, on the left", "in the bottom row on the left", "on the left side at the bottom", "bottom row, left"),
    3: ("at the bottom, on the right", "in the bottom row on the right", "on the right side at the bottom", "bottom row, right"),
}
# relative places: (dx, dy) on the grid -> phrases ("{r}": a reference to an object named before)
RELATIVE = {
    (1, 0): ("to the right of {r}", "right of {r}", "on the right of {r}", "beside {r} on the right"),
    (-1, 0): ("to the left of {r}", "left of {r}", "on the left of {r}", "beside {r} on the left"),
    (0, 1): ("below {r}", "beneath {r}", "under {r}", "underneath {r}", "directly below {r}"),
    (0, -1): ("above {r}", "over {r}", "on top of {r}", "directly above {r}"),
    (1, 1): ("diagonally across from {r}", "diagonally opposite {r}", "in the corner opposite {r}"),
    (-1, 1): ("diagonally across from {r}", "diagonally opposite {r}", "in the corner opposite {r}"),
    (1, -1): ("diagonally across from {r}", "diagonally opposite {r}", "in the corner opposite {r}"),
    (-1, -1): ("diagonally across from {r}", "diagonally opposite {r}", "in the corner opposite {r}"),
}
NUMBER_WORDS = {
    1: ("one", "a single", "1", "just one"),
    2: ("two", "a pair of", "2", "two"),
    3: ("three", "3", "three"),
    4: ("four", "4", "four"),
}
JOINS = ("; ", ". ", ", and ", " and ", ", ", ", plus ", ", as well as ", ", while ", " - ", ". Also ", ", next ", "\n")
NEUTRAL = {"size": "medium", "pattern": "solid", "pose": "upright", "background": "plain", "style": "flat"}

NEGATIVE_NOUNS = (
    "dog",
    "cat",
    "horse",
    "car",
    "bicycle",
    "house",
    "tree",
    "woman",
    "man",
    "child",
    "boat",
    "train",
    "city street",
    "mountain",
    "beach",
    "kitchen",
    "laptop",
    "cup of coffee",
    "bowl of fruit",
    "guitar",
    "bird",
    "flower vase",
    "bridge",
    "forest",
    "robot",
    "castle",
    "pizza",
    "book",
    "lamp",
    "chair",
    "crowd",
    "river",
    "airplane",
    "clock",
)
NEGATIVE_FORMS = (
    "a photo of a {n}",
    "a {n} in the rain",
    "an old {n} near a {m}",
    "portrait of a {n}",
    "the {n} and the {m}",
    "a close-up of a {n}",
    "a {n} at sunset",
    "a painting of a {n} by a {m}",
    "{n}",
    "my {n} is next to the {m}",
    "what time is it",
    "hello there",
    "please summarise this document",
    "the quick brown fox jumps over the lazy dog",
    "lorem ipsum dolor sit amet",
    "asdf qwerty zxcv",
    "1234 5678",
    "???",
    "a",
    "the",
    "an image",
    "a picture of something",
)


@dataclass(frozen=True)
class Said:
    """What a caption says: ``scene`` holds each object in the place the words give it (attribute values the words
    leave out are the drawn scene's, kept only to be masked); ``omitted`` lists, per slot, the object attributes the
    words leave out, and ``scene_omitted`` the scene attributes (``background``, ``style``) they leave out."""

    scene: Scene
    omitted: dict[int, frozenset[str]] = field(default_factory=dict)
    scene_omitted: frozenset[str] = frozenset()


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou8" else "a ") + phrase


def _obj_noun(o: WorldObject, omit: set[str], rng: random.Random) -> str:
    """The noun phrase (no article): prenominal adjectives in some order, then the noun, then post-modifiers."""
    c = rng.choice
    pre, post = [], []
    if "size" not in omit:
        (pre if rng.random() < 0.8 else post).append(("size", c(SIZE_WORDS[o.size])))
    if "color" not in omit:
        if rng.random() < 0.85:
            pre.append(("color", c(COLOR_WORDS[o.color])))
        else:
            post.append(("color", c(("in {c}", "coloured {c}", "painted {c}", "that is {c}")).format(c=c(COLOR_WORDS[o.color]))))
    if "pattern" not in omit:
        if rng.random() < 0.7:
            pre.append(("pattern", c(PATTERN_ADJ[o.pattern])))
        else:
            post.append(("pattern", c(PATTERN_POST[o.pattern])))
    pre_words = list(pre)
    order = rng.random()
    if order < 0.6:  # English order: size colour pattern
        rank = {"size": 0, "color": 1, "pattern": 2}
    elif order < 0.8:
        rank = {"size": 0, "pattern": 1, "color": 2}
    else:
        rank = {k: rng.random() for k in ("size", "color", "pattern")}
    pre_words.sort(key=lambda kw: rank[kw[0]])
    post_words = []
    for kind, w in post:
        if kind == "size":
            w = c(SIZE_POST[o.size])
        post_words.append(w)
    noun = c(THING_WORDS) if "shape" in omit else c(SHAPE_WORDS[o.shape])
    words = [w for _, w in pre_words] + [noun]
    text = " ".join(words)
    if post_words:
        text += " " + " ".join(post_words)
    return text


def _emblem(o: WorldObject, rng: random.Random) -> str:
    return rng.choice(EMBLEM_FORMS).format(a=_a(rng.choice(EMBLEM_WORDS[o.emblem])))


def _pose(o: WorldObject, rng: random.Random) -> str:
    return rng.choice(POSE_WORDS[o.pose])


def _place(slot: int, rng: random.Random) -> str:
    if rng.random() < 0.2:
        return rng.choice(PLACE_SPLIT[slot])
    return rng.choice(PLACE_FORMS).format(p=rng.choice(PLACE_WORDS[slot]))


def _xy(slot: int) -> tuple[int, int]:
    return slot % 2, slot // 2


def _relative(slot: int, ref: WorldObject, ref_name: str, rng: random.Random) -> str | None:
    (x, y), (rx, ry) = _xy(slot), _xy(ref.slot)
    forms = RELATIVE.get((x - rx, y - ry))
    return rng.choice(forms).format(r=ref_name) if forms else None


def _object_clause(o: WorldObject, omit: set[str], place: str | None, rng: random.Random) -> str:
    """One object's phrase: its noun phrase with pose, emblem and place in some order."""
    noun = _a(_obj_noun(o, omit, rng))
    bits = []
    if "pose" not in omit:
        bits.append(_pose(o, rng))
    if "emblem" not in omit:
        bits.append(_emblem(o, rng))
    rng.shuffle(bits)
    u = rng.random()
    if place is None:
        return ", ".join([noun, *bits]) if rng.random() < 0.6 else " ".join([noun, *bits])
    if u < 0.35:
        return ", ".join([noun, *bits, place])
    if u < 0.6:
        lead = place[0].upper() + place[1:] if rng.random() < 0.3 else place
        sep = rng.choice((", ", ": ", " there is ", " sits ", " is "))
        return lead + sep + ", ".join([noun, *bits])
    if u < 0.8:
        return noun + " " + place + (", " + ", ".join(bits) if bits else "")
    return ", ".join([noun, *bits[:1], place, *bits[1:]])


def _omissions(rng: random.Random, mode: str) -> set[str]:
    if mode == "short":
        keep = {"shape", "color"}
        if rng.random() < 0.3:
            keep.add(rng.choice(("size", "pattern")))
        return set(OBJECT_ATTRS) - keep
    if mode == "full":
        return set()
    p = rng.choice((0.1, 0.25, 0.5))
    omit = {a for a in OBJECT_ATTRS if rng.random() < p}
    return omit


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    k = rng.random()
    if k < 0.4:
        return word[:i] + word[i + 1 :]  # drop a letter
    if k < 0.8:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # swap two
    return word[:i] + word[i] + word[i:]  # double one


def _surface(text: str, rng: random.Random, typos: float) -> str:
    """Case, punctuation and light typos (typos only in words that name no attribute)."""
    if rng.random() < typos:
        words = text.split(" ")
        protected = {w for ph in (*SHAPE_WORDS.values(), *COLOR_WORDS.values()) for p in ph for w in p.split()}
        idx = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha() and w.lower() not in protected]
        if idx:
            i = rng.choice(idx)
            words[i] = _typo(words[i], rng)
        text = " ".join(words)
    u = rng.random()
    if u < 0.15:
        text = text.lower()
    elif u < 0.2:
        text = text.upper()
    elif u < 0.25:
        text = text.title()
    elif text and rng.random() < 0.7:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.15:
        text = re.sub(r"[;:,.]", "", text)
    if rng.random() < 0.2:
        text = text.rstrip(".") + rng.choice(("", "!", " .", "..."))
    return text


def _scene_phrases(scene: Scene, rng: random.Random, omit: set[str]) -> tuple[str | None, str | None, str | None]:
    style = None if "style" in omit else rng.choice(STYLE_WORDS[scene.style])
    tail = None if "style" in omit else rng.choice(STYLE_TAIL[scene.style])
    bg = None if "background" in omit else rng.choice(BACKGROUND_WORDS[scene.background])
    return style, tail, bg


def _forced_sharing(scene: Scene, rng: random.Random) -> Scene:
    """Scenes where objects share values now and then, so that "two red stars" and "another one" occur."""
    objs = list(scene.objects)
    if len(objs) < 2 or rng.random() > 0.25:
        return scene
    share = rng.sample(list(OBJECT_ATTRS), rng.randint(1, 3))
    src = rng.choice(objs)
    objs = [replace(o, **{a: getattr(src, a) for a in share}) if rng.random() < 0.7 else o for o in objs]
    return replace(scene, objects=tuple(objs))


# -- structured captions: what people write beyond one clause per object --------------------------------------
# Found in the hand-written fixtures' misses (docs/backbone.md, "What is left"): attributes given after the objects
# are introduced ("The star: small, dotted ..."), shared by all ("all medium and upright"), objects listed in an
# order instead of placed ("going round from the top left: ..."), empty places stated, "field: value" lists and
# negated values ("not striped but dotted"). The words are this module's own (none of FIXTURE_WORDS).
PATTERN_NOUN = {
    "solid": ("plain", "solid", "no markings", "one flat colour"),
    "striped": ("stripes", "stripy", "pinstripes", "streaks"),
    "dotted": ("dots", "spots", "polka dots", "spotted"),
    "checkered": ("checks", "plaid", "gingham", "chequers"),
}
FIELD_KEYS = {
    "place": ("where", "position", "location", "place", "spot"),
    "shape": ("shape", "what", "object", "kind"),
    "color": ("colour", "color", "hue", "paint"),
    "size": ("size", "scale"),
    "pattern": ("pattern", "fill", "texture", "surface"),
    "pose": ("pose", "orientation", "rotation", "angle"),
    "emblem": ("emblem", "symbol", "icon", "mark", "sign"),
}
GAP_WORDS = ("nothing", "empty", "an empty spot", "a gap", "blank", "no object", "a free spot")
EMPTY_FORMS = ("the {p} is empty", "nothing is at the {p}", "{p}: empty", "the {p} is left empty", "the {p} holds nothing", "{p}: nothing")
# orders that name every place (slot sequences; a gap is named where the order meets an empty place)
ORDERS = {
    (0, 1, 2, 3): (
        "in reading order from the top left",
        "left to right, top row first",
        "row by row from the top left",
        "from the top left, going right and then down",
        "starting top left, then top right, bottom left and bottom right",
    ),
    (0, 1, 3, 2): (
        "going round from the top left",
        "around the corners starting top left and moving right",
        "circling from the top left towards the right",
        "starting at the top left and going round to the right",
    ),
    (0, 2, 3, 1): (
        "going round from the top left, downwards first",
        "around the corners from the top left, heading down first",
        "starting top left and going round downwards",
    ),
    (0, 2, 1, 3): (
        "column by column from the left, top first",
        "down the left column and then down the right",
        "left column top to bottom, then the right column",
    ),
}
SHARED_FORMS = {
    2: ("both are {v}", "the two are both {v}", "both of them {v}", "each is {v}", "both {v}"),
    0: ("all are {v}", "they are all {v}", "every one of them is {v}", "each one is {v}", "all of them {v}", "all {v}"),
}


def _bare(o: WorldObject, attr: str, rng: random.Random, negate: float = 0.0) -> str:
    """One attribute's value in a few words, as lists give it ("small", "dots", "upside down", "a moon")."""
    c = rng.choice
    if attr == "shape":
        return c(SHAPE_WORDS[o.shape])
    if attr in ("pattern", "color", "pose") and rng.random() < negate:
        return _negated(o, attr, rng)
    if attr == "size":
        return c(SIZE_WORDS[o.size])
    if attr == "color":
        return c(COLOR_WORDS[o.color])
    if attr == "pattern":
        return c(PATTERN_ADJ[o.pattern] + PATTERN_NOUN[o.pattern])
    if attr == "pose":
        return c(POSE_WORDS[o.pose])
    e = c(EMBLEM_WORDS[o.emblem])
    return c((e, _a(e), "with " + _a(e), _emblem(o, rng)))


def _negated(o: WorldObject, attr: str, rng: random.Random) -> str:
    """A value said by what it is not as well: "not striped but dotted", "neither red nor blue, just green"."""
    words = {"pattern": PATTERN_ADJ, "color": COLOR_WORDS, "pose": POSE_WORDS}[attr]
    value = getattr(o, attr)
    others = [v for v in words if v != value]
    x, y = rng.sample(others, 2)
    say = lambda v: rng.choice(words[v][:2])  # noqa: E731 - the plain words: a negated synonym reads as a riddle
    form = rng.choice(("not {x} but {v}", "{v}, not {x}", "{v} rather than {x}", "neither {x} nor {y}, just {v}", "{v} (not {x})"))
    return form.format(x=say(x), y=say(y), v=say(value))


def _value_list(o: WorldObject, attrs: list[str], rng: random.Random) -> str:
    vals = [_bare(o, a, rng, negate=0.08) for a in attrs]
    if len(vals) > 1 and rng.random() < 0.4:
        return ", ".join(vals[:-1]) + " and " + vals[-1]
    return rng.choice((", ", ", ", "; ")).join(vals)


def _shown(o: WorldObject, omit: frozenset | set) -> list[str]:
    """The object attributes a caption says, in the order lists usually give them."""
    return [a for a in ("size", "color", "pattern", "pose", "emblem") if a not in omit]


def _ref_names(objs: list[WorldObject], nouns: dict[int, str], omit: dict, rng: random.Random) -> dict[int, str]:
    """A name that picks each object out of the others, for a later sentence: "the star", "the red one", "the
    top-left one", "the second one"."""
    names = {}
    for i, o in enumerate(objs):
        cands = []
        if "shape" not in omit[o.slot] and sum(p.shape == o.shape for p in objs) == 1:
            cands.append(f"the {nouns[o.slot]}")
        for attr, table in (("color", COLOR_WORDS), ("size", SIZE_WORDS)):
            if attr not in omit[o.slot] and sum(getattr(p, attr) == getattr(o, attr) for p in objs) == 1:
                cands.append(f"the {table[getattr(o, attr)][0]} one")
        place = rng.choice(PLACE_WORDS[o.slot][:3])
        cands += [f"the {place} one", f"the one at the {place}"]
        ordinal = ("first", "second", "third", "fourth")[i]
        cands.append(f"the {'last' if i == len(objs) - 1 and i > 0 and rng.random() < 0.5 else ordinal} one")
        names[o.slot] = rng.choice(cands[:2]) if cands and rng.random() < 0.6 else rng.choice(cands)
    return names


def _deferred_body(objs: list[WorldObject], omit: dict, rng: random.Random) -> str:
    """Objects introduced by shape (and perhaps one more word) and place, then described one by one."""
    nouns = {o.slot: rng.choice(SHAPE_WORDS[o.shape][:4]) for o in objs}
    early: dict[int, list[str]] = {}
    for o in objs:
        said = _shown(o, omit[o.slot])
        early[o.slot] = [a for a in said if a in ("size", "color") and rng.random() < 0.3]
    intro = []
    names = _ref_names(objs, nouns, omit, rng)
    place_in_intro = rng.random() < 0.65
    for i, o in enumerate(objs):
        words = [_bare(o, a, rng) for a in early[o.slot]]
        noun = nouns[o.slot] if "shape" not in omit[o.slot] else rng.choice(THING_WORDS)
        phrase = _a(" ".join([*words, noun]))
        if place_in_intro:
            rel = None
            if i > 0 and rng.random() < 0.35:
                ref = objs[i - 1]
                if names[ref.slot].startswith("the ") and not names[ref.slot].startswith("the one"):
                    rel = _relative(o.slot, ref, names[ref.slot], rng)
            place = rel or _place(o.slot, rng)
            phrase = rng.choice(("{n} {p}", "{n} {p}", "{p} {n}")).format(n=phrase, p=place) if not rel else f"{phrase} {rel}"
        intro.append(phrase)
    head = ", ".join(intro[:-1]) + (" and " if len(intro) > 1 else "") + intro[-1]
    details = []
    order = list(objs)
    if rng.random() < 0.3:
        rng.shuffle(order)
    for o in order:
        rest = [a for a in _shown(o, omit[o.slot]) if a not in early[o.slot]]
        name = names[o.slot]
        where = "" if place_in_intro else " " + rng.choice(("is ", "sits ", "")) + _place(o.slot, rng)
        if not rest:
            if where:
                details.append(f"{name}{where}")
            continue
        vals = _value_list(o, rest, rng)
        form = rng.choice(("{N}: {v}", "{N} is {v}", "{N} ({v})", "{N} - {v}", "as for {n}, {v}"))
        details.append(form.format(N=name[0].upper() + name[1:], n=name, v=vals) + where)
    sep = rng.choice((". ", "; ", ". "))
    return head + (". " + sep.join(details) if details else "")


def _shared_body(objs: list[WorldObject], omit: dict, rng: random.Random) -> tuple[str, list[WorldObject]]:
    """Some attributes shared by every object and said once ("all medium and upright"); the rest per object."""
    shared = rng.sample(["size", "color", "pattern", "pose", "emblem", "shape"], rng.randint(1, 3))
    src = objs[0]
    objs = [replace(o, **{a: getattr(src, a) for a in shared}) for o in objs]
    for o in objs:  # a shared value is said, whatever the object's omissions were
        omit[o.slot] = frozenset(omit[o.slot]) - set(shared)
    n = len(objs)
    vals = _value_list(src, [a for a in shared if a != "shape"], rng) if set(shared) - {"shape"} else ""
    clauses = []
    for o in objs:
        o_omit = set(omit[o.slot]) | set(shared)
        noun = _obj_noun(o, o_omit, rng)
        if "shape" in shared:
            noun = re.sub(r"\b(" + "|".join(map(re.escape, THING_WORDS)) + r")\b", "one", noun, count=1)
        bits = [b for b, a in ((_pose(o, rng), "pose"), (_emblem(o, rng), "emblem")) if a not in o_omit]
        clauses.append(", ".join([noun if noun == "one" else _a(noun), *bits, _place(o.slot, rng)]))
    body = "; ".join(clauses) if rng.random() < 0.5 else rng.choice(JOINS[:4]).join(clauses)
    if "shape" in shared:
        count = f"{rng.choice(NUMBER_WORDS[n][:2])} {SHAPE_PLURAL[src.shape]}"
    else:
        count = f"{rng.choice(NUMBER_WORDS[n][:2])} {rng.choice(THING_WORDS)}s"
    if vals:
        share = rng.choice(SHARED_FORMS[2] if n == 2 else SHARED_FORMS[0]).format(v=vals)
        if rng.random() < 0.5:
            return f"{count}, {share}: {body}", objs
        return f"{count}: {body}. {share[0].upper()}{share[1:]}", objs
    return f"{count}: {body}", objs


def _ordered_body(objs: list[WorldObject], omit: dict, rng: random.Random) -> str:
    """Objects listed in an order that names the places, with gaps named: "row by row from the top left: A, B,
    nothing, C"."""
    by_slot = {o.slot: o for o in objs}
    if rng.random() < 0.3:  # per row: "Top row: A and B. Bottom row: nothing, then C."
        rows = []
        for name, slots in (
            (rng.choice(("top row", "along the top", "the top row, from the left")), (0, 1)),
            (rng.choice(("bottom row", "along the bottom", "the bottom row, from the left")), (2, 3)),
        ):
            items = [_bare_object(by_slot[s], omit, rng) if s in by_slot else rng.choice(GAP_WORDS) for s in slots]
            if all(s not in by_slot for s in slots) and rng.random() < 0.5:
                rows.append(f"{name}: {rng.choice(GAP_WORDS)}")
            else:
                rows.append(f"{name}: {items[0]}{rng.choice((', then ', '; ', ' and ', ', '))}{items[1]}")
        if rng.random() < 0.5:
            rows.reverse()
        return rng.choice((". ", "; ")).join(r[0].upper() + r[1:] for r in rows)
    orders = [k for k in ORDERS if len(objs) == 4 or k == (0, 1, 2, 3) or rng.random() < 0.5]
    order = rng.choice(orders)
    last = max(order.index(s) for s in by_slot)
    items = [_bare_object(by_slot[s], omit, rng) if s in by_slot else rng.choice(GAP_WORDS) for s in order[: last + 1]]
    lead = rng.choice(ORDERS[order])
    joined = ", ".join(items[:-1]) + (rng.choice((", and ", " and ", ", ")) if len(items) > 1 else "") + items[-1]
    if rng.random() < 0.5:
        return f"{lead[0].upper()}{lead[1:]}: {joined}"
    return f"{joined}, {lead}"


def _bare_object(o: WorldObject, omit: dict, rng: random.Random) -> str:
    """An object with no place: a noun phrase with its pose and emblem, or "shape (values)"."""
    om = omit[o.slot]
    if rng.random() < 0.35:
        noun = _a(_obj_noun(o, om | {"size", "color", "pattern"}, rng))
        rest = _shown(o, om)
        return f"{noun} ({_value_list(o, rest, rng)})" if rest else noun
    return _object_clause(o, om, None, rng)


def _empty_body(objs: list[WorldObject], omit: dict, rng: random.Random) -> str:
    """The empty places said, and the others given by place or left to reading order ("the rest, in order")."""
    free = [s for s in range(N_SLOTS) if s not in {o.slot for o in objs}]
    said = [rng.choice(PLACE_WORDS[s][:3]) for s in free]
    if len(free) == 1 or rng.random() < 0.5:
        empties = [rng.choice(EMPTY_FORMS).format(p=p) for p in said]
        empty = "; ".join(empties) if rng.random() < 0.5 else ", and ".join(empties)
    else:
        empty = f"the {' and the '.join(said)} are empty"
    if len(free) == 1 and rng.random() < 0.3:
        forms = ("only the {p} is empty", "the one empty place is the {p}", "every place but the {p} is taken")
        empty = rng.choice(forms).format(p=said[0])
    objs = sorted(objs, key=lambda o: o.slot)
    if rng.random() < 0.5:
        lead = rng.choice(
            (
                "the rest, in reading order from the top left",
                "the others, left to right and top to bottom",
                "the remaining places, from the top left",
            )
        )
        body = f"{lead}: " + "; ".join(_bare_object(o, omit, rng) for o in objs)
    else:
        lead = rng.choice(("elsewhere", "the rest", "otherwise", "the others"))
        body = f"{lead}: " + "; ".join(_object_clause(o, omit[o.slot], _place(o.slot, rng), rng) for o in objs)
    parts = [empty[0].upper() + empty[1:], body]
    return ". ".join(parts)


def _fields_body(objs: list[WorldObject], omit: dict, rng: random.Random) -> str:
    """A list of fields for each object: "Where: bottom left. What: a large purple square. Pattern: checks."."""
    keys = {k: rng.choice(v) for k, v in FIELD_KEYS.items()}
    sep = rng.choice((". ", "; ", ", "))
    blocks = []
    for o in objs:
        fields = [("place", rng.choice(PLACE_WORDS[o.slot]))]
        om = omit[o.slot]
        if keys["shape"] in ("what", "object") and rng.random() < 0.7:
            noun = _obj_noun(o, om | {"pattern"}, rng)
            fields.append(("shape", _a(noun)))
            said = [a for a in ("pattern", "pose", "emblem") if a not in om]
        else:
            said = [a for a in ("shape", "size", "color", "pattern", "pose", "emblem") if a not in om]
        fields += [(a, _bare(o, a, rng)) for a in said]
        if rng.random() < 0.3:
            rng.shuffle(fields)
        text = sep.join(f"{keys[k].capitalize() if rng.random() < 0.7 else keys[k]}: {v}" for k, v in fields)
        blocks.append(text)
    return rng.choice((". ", " | ", "\n", ". Next object. ")).join(blocks)


STRUCTURES = {"deferred": 0.3, "shared": 0.25, "ordered": 0.2, "empty": 0.1, "fields": 0.15}


def _structured_body(objs: list[WorldObject], omit: dict, rng: random.Random, kind: str | None = None) -> tuple[str, list[WorldObject]]:
    """One of ``STRUCTURES`` (``kind``, or drawn by weight among those the object count allows): the body and the
    objects (a shared attribute changes them). ``omit`` (slot -> attributes left out) is updated in place."""
    if kind is None:
        kinds = [k for k in STRUCTURES if (len(objs) > 1 or k in ("fields", "deferred", "empty")) and (len(objs) < 4 or k != "empty")]
        kind = rng.choices(kinds, weights=[STRUCTURES[k] for k in kinds])[0]
    if kind == "shared":
        return _shared_body(objs, omit, rng)
    body = {"deferred": _deferred_body, "ordered": _ordered_body, "empty": _empty_body, "fields": _fields_body}[kind](objs, omit, rng)
    return body, objs


def rich_caption(scene: Scene, rng: random.Random, typos: float = 0.08) -> tuple[str, Said]:
    """A caption of ``scene`` in a random wording and what it says (places as the words give them)."""
    scene = _forced_sharing(scene, rng)
    objs = list(scene.objects)
    if rng.random() < 0.5:
        rng.shuffle(objs)
    mode = rng.choices(("full", "partial", "short"), weights=(0.45, 0.35, 0.2))[0]
    omit = {o.slot: _omissions(rng, mode) for o in objs}
    # how places are given: "abs" absolute, "rel" some relative to an earlier object, "none", "some" (mixed), "rows"
    placing = rng.choices(("abs", "rel", "none", "some", "rows", "structured"), weights=(0.3, 0.17, 0.17, 0.08, 0.13, 0.3))[0]
    if len(objs) == 1 and placing in ("rel", "rows"):
        placing = "abs"
    scene_omit = set()
    if rng.random() < (0.35 if mode == "short" else 0.12):
        scene_omit.add("style")
    if rng.random() < 0.08:
        scene_omit.add("background")

    if placing == "structured":
        body, objs = _structured_body(objs, omit, rng)
        order, placed = objs, {o.slot for o in objs}
        scene = replace(scene, objects=tuple(objs))
    elif placing == "rows" and _rows_ok(objs):
        body, order = _rows_body(objs, omit, rng)
        placed = {o.slot for o in objs}
    else:
        if placing == "rows":
            placing = "abs"
        clauses, placed = [], set()
        named: list[WorldObject] = []
        for i, o in enumerate(objs):
            place = None
            if placing == "abs" or (placing == "some" and rng.random() < 0.5):
                place = _place(o.slot, rng)
            elif placing == "rel":
                if i == 0 or rng.random() < 0.3:
                    place = _place(o.slot, rng)
                else:
                    ref = named[-1] if rng.random() < 0.7 else rng.choice(named)
                    ref_is_last = ref is named[-1]
                    same_shape = [n for n in named if n.shape == ref.shape]
                    if ref_is_last and rng.random() < 0.5:
                        ref_name = rng.choice(("it", "that one", "the previous one"))
                    elif len(same_shape) == 1 and "shape" not in omit[ref.slot]:
                        ref_name = "the " + ref.shape
                    elif ref_is_last:
                        ref_name = "it"
                    else:
                        ref_name = None
                    place = _relative(o.slot, ref, ref_name, rng) if ref_name else None
                    if place is None:
                        place = _place(o.slot, rng)
            if place is not None:
                placed.add(o.slot)
            clauses.append(_object_clause(o, omit[o.slot], place, rng))
            named.append(o)
        body = clauses[0]
        for cl in clauses[1:]:
            body += rng.choice(JOINS) + cl
        order = objs
    # re-slot the objects the words give no place: the first free places in reading order, in order of mention
    free = iter(s for s in range(N_SLOTS) if s not in placed)
    new_objs, new_omit = [], {}
    for o in order:
        slot = o.slot if o.slot in placed else next(free)
        new_objs.append(replace(o, slot=slot))
        new_omit[slot] = frozenset(omit[o.slot])
    said_scene = replace(scene, objects=tuple(new_objs))

    style, tail, bg = _scene_phrases(scene, rng, scene_omit)
    n = len(objs)
    count = None
    if placing != "structured" and rng.random() < 0.45:  # a structured body counts its objects itself when it does
        noun = rng.choice(THING_WORDS) + ("s" if n > 1 else "")
        count = f"{rng.choice(NUMBER_WORDS[n])} {noun}"
    text = _assemble(body, style, tail, bg, count, rng)
    text = _surface(text, rng, typos)
    return text, Said(said_scene, new_omit, frozenset(scene_omit))


def _assemble(body: str, style: str | None, tail: str | None, bg: str | None, count: str | None, rng: random.Random) -> str:
    c = rng.choice
    prep = c(BG_PREPS)
    on_bg = f"{prep} {bg}" if bg else ""
    u = rng.random()
    if style and count and u < 0.25:
        head = f"{style} of {count}" + (f" {on_bg}" if on_bg else "")
        return head + c((": ", ". ", " - ")) + body + "."
    if style and u < 0.45:
        head = style + (f" {on_bg}" if on_bg and rng.random() < 0.6 else "")
        rest = "" if on_bg in head else (f", {on_bg}" if on_bg else "")
        return head + c((": ", ". ", ", ", " with ", " showing ")) + body + rest + "."
    if u < 0.65:
        s = body + (f" {on_bg}" if on_bg else "")
        if tail:
            s += c((", ", " ", ". ")) + tail
        return s + "."
    if u < 0.8:
        bits = []
        if bg:
            bits.append(
                c(("Background: {b}.", "The background is {b}.", "{B} behind.", "All of it {p} {b}.")).format(
                    b=bg, B=bg[0].upper() + bg[1:], p=prep
                )
            )
        if style:
            bits.append(c(("Style: {s}.", "Drawn as {s}.", "It is {s}.", "Rendered as {s}.")).format(s=style))
        pre = (f"There are {count}: " if count and rng.random() < 0.5 else "") + body + "."
        rng.shuffle(bits)
        return " ".join([pre, *bits]) if rng.random() < 0.6 else " ".join([*bits, pre])
    s = (f"{on_bg[0].upper()}{on_bg[1:]}, " if on_bg else "") + body
    if tail:
        s += f", {tail}"
    return s + "."


def _rows_ok(objs: list[WorldObject]) -> bool:
    slots = {o.slot for o in objs}
    return any(pair <= slots for pair in ({0, 1}, {2, 3}, {0, 2}, {1, 3}))


def _rows_body(objs: list[WorldObject], omit: dict[int, set[str]], rng: random.Random) -> tuple[str, list[WorldObject]]:
    """Objects given by rows or columns: "along the top, A on the left and B on the right; ..." """
    slots = {o.slot: o for o in objs}
    groups = [g for g in ((0, 1), (2, 3), (0, 2), (1, 3)) if set(g) <= set(slots)]
    g = rng.choice(groups)
    rows = g in ((0, 1), (2, 3))
    where = {
        (0, 1): ("along the top", "in the top row", "across the top"),
        (2, 3): ("along the bottom", "in the bottom row", "across the bottom"),
        (0, 2): ("down the left side", "in the left column", "on the left"),
        (1, 3): ("down the right side", "in the right column", "on the right"),
    }[g]
    first, second = ("on the left", "on the right") if rows else ("at the top", "at the bottom")
    a, b = slots[g[0]], slots[g[1]]
    na, nb = _object_clause(a, omit[a.slot], None, rng), _object_clause(b, omit[b.slot], None, rng)
    if rng.random() < 0.5:
        group = f"{rng.choice(where)}, {na} {first} and {nb} {second}"
    else:
        group = f"{rng.choice(where)}: {na}, then {nb}" if rng.random() < 0.5 else f"{rng.choice(where)} {na} and {nb}, in that order"
    others = [o for o in objs if o.slot not in g]
    parts = [group] + [_object_clause(o, omit[o.slot], _place(o.slot, rng), rng) for o in others]
    if rng.random() < 0.5:
        parts.reverse()
    body = parts[0]
    for p in parts[1:]:
        body += rng.choice(("; ", ". ", ", and "))[0:] + p
    return body, [a, b, *others]


def negative_caption(rng: random.Random) -> str:
    """Text that is not about the Shapes world (a reader should find no object in it)."""
    nouns = rng.sample(NEGATIVE_NOUNS, 2)
    return _surface(rng.choice(NEGATIVE_FORMS).format(n=nouns[0], m=nouns[1]), rng, 0.0)


def training_caption(rng: random.Random, p_template: float = 0.2, p_negative: float = 0.04) -> tuple[str, Said | None]:
    """One training caption: the world's own templates (detailed, varied, short) now and then, else a rich one;
    ``None`` as the Said for a negative (not about the world)."""
    u = rng.random()
    if u < p_negative:
        return negative_caption(rng), None
    scene = random_scene(rng)
    if u < p_negative + p_template:
        v = rng.random()
        if v < 0.4:
            return tpl.detailed_caption(scene), Said(scene)
        if v < 0.7:
            return tpl.varied_caption(scene, rng), Said(scene)
        # the short caption names no place, no size/pattern/pose/emblem, and no style when it is flat
        objs = tuple(replace(o, slot=i) for i, o in enumerate(scene.objects))
        omit = {i: frozenset(set(OBJECT_ATTRS) - {"shape", "color"}) for i in range(len(objs))}
        return tpl.short_caption(scene), Said(replace(scene, objects=objs), omit)
    return rich_caption(scene, rng)
