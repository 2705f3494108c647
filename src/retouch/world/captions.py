"""Captions of Shapes-world scenes.

``short_caption`` is a PIE-Bench-like one-liner.  ``detailed_caption`` names every
attribute in a fixed reading order (TurboEdit §3.4: detailed captions make edits
disentangled): style, background, then the objects slot by slot, each as
size, colour, pattern, shape, emblem, pose, position.
"""

from __future__ import annotations

import logging

from .scene import Scene, WorldObject

logger = logging.getLogger(__name__)

STYLE_PHRASE = {
    "flat": "a flat illustration",
    "sketch": "a pencil sketch",
    "pixel": "a pixel art picture",
    "watercolor": "a watercolor painting",
    "grayscale": "a grayscale picture",
    "sepia": "a sepia picture",
}
BACKGROUND_PHRASE = {
    "plain": "a plain white background",
    "sky": "a blue sky with clouds",
    "grass": "a grassy field",
    "night": "a starry night sky",
    "brick": "a red brick wall",
    "sand": "a sandy desert",
}
PATTERN_WORD = {"solid": "solid", "striped": "striped", "dotted": "dotted", "checkered": "checkered"}
NUMBER = {1: "one", 2: "two", 3: "three", 4: "four"}


def object_phrase(o: WorldObject, detailed: bool = True) -> str:
    if not detailed:
        return f"{o.color} {o.shape}"
    return f"a {o.size} {o.color} {PATTERN_WORD[o.pattern]} {o.shape} with {_article(o.emblem)} emblem, {o.pose}, at the {o.position}"


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def short_caption(scene: Scene) -> str:
    objs = [_article(object_phrase(o, detailed=False)) for o in scene.objects]
    listed = objs[0] if len(objs) == 1 else ", ".join(objs[:-1]) + " and " + objs[-1]
    style = "" if scene.style == "flat" else f", {STYLE_PHRASE[scene.style].split(' ', 1)[1]}"
    return f"{listed} on {BACKGROUND_PHRASE[scene.background]}{style}"


def detailed_caption(scene: Scene) -> str:
    return detailed_caption_spans(scene)[0]


def detailed_caption_spans(scene: Scene) -> tuple[str, list[tuple[int, int, int]]]:
    """The detailed caption and, for each object, ``(slot, start, end)``: the characters of its phrase.

    The grounding loss of the text-to-image teacher uses the spans to know which tokens name which object.
    """
    n = len(scene.objects)
    text = f"{STYLE_PHRASE[scene.style]} of {NUMBER[n]} object{'s' if n > 1 else ''} on {BACKGROUND_PHRASE[scene.background]}: "
    spans = []
    for i, o in enumerate(scene.objects):
        phrase = object_phrase(o)
        spans.append((o.slot, len(text), len(text) + len(phrase)))
        text += phrase + ("; " if i < n - 1 else ".")
    return text, spans


# --- varied captions for training text-to-image models ----------------------------------------
# Alternative wordings used only while training, so that a model does not tie an attribute to one
# template.  The hand-written paraphrases in tests/fixtures/paraphrases.jsonl deliberately use other
# words again (crimson, tiny, upper-left, crescent, ...): they measure generalisation, not recall.
STYLE_WORDS = {
    "flat": ("a flat illustration", "a flat drawing", "a simple flat image", "a clean vector drawing"),
    "sketch": ("a pencil sketch", "a pencil drawing", "a sketch", "a hand-drawn sketch"),
    "pixel": ("a pixel art picture", "pixel art", "a pixelated picture", "an 8-bit style image"),
    "watercolor": ("a watercolor painting", "a watercolour painting", "a watercolor", "a painting in watercolors"),
    "grayscale": ("a grayscale picture", "a black and white picture", "a greyscale image", "a monochrome picture"),
    "sepia": ("a sepia picture", "a sepia photo", "a sepia-toned image", "an old sepia print"),
}
BACKGROUND_WORDS = {
    "plain": ("a plain white background", "a white background", "a blank white backdrop"),
    "sky": ("a blue sky with clouds", "a cloudy blue sky", "the sky"),
    "grass": ("a grassy field", "a field of grass", "green grass"),
    "night": ("a starry night sky", "a night sky with stars", "a dark starry sky"),
    "brick": ("a red brick wall", "a brick wall", "a wall of bricks"),
    "sand": ("a sandy desert", "desert sand", "a desert"),
}
SIZE_WORDS = {"small": ("small", "little"), "medium": ("medium", "medium-sized", "mid-sized"), "large": ("large", "big")}
PATTERN_WORDS = {
    "solid": ("solid", "plain", "solid-colored"),
    "striped": ("striped", "stripy"),
    "dotted": ("dotted", "spotted", "polka-dot"),
    "checkered": ("checkered", "checked", "chequered"),
}
EMBLEM_WORDS = {
    "arrow": ("arrow",),
    "moon": ("moon",),
    "bolt": ("bolt", "lightning bolt"),
    "drop": ("drop", "water drop"),
    "smile": ("smile", "smiley"),
}
POSE_WORDS = {
    "upright": ("upright", "standing upright", "straight"),
    "tilted left": ("tilted left", "leaning left", "tilted to the left"),
    "tilted right": ("tilted right", "leaning right", "tilted to the right"),
    "upside down": ("upside down", "flipped upside down", "inverted"),
}
POSITION_FORMS = ("at the {p}", "in the {p}", "in the {p} corner", "{p}")
EMBLEM_FORMS = ("with {a} emblem", "bearing {a} symbol", "marked with {a}", "with {a} on it")
NUMBER_WORDS = {1: ("one", "a single"), 2: ("two", "a pair of"), 3: ("three",), 4: ("four",)}


def varied_caption(scene: Scene, rng) -> str:
    """A detailed caption of ``scene`` in a randomly chosen wording and order (``rng``: random.Random).

    Every attribute is still named exactly once; only words, clause order and object order vary.
    """
    return varied_caption_spans(scene, rng)[0]


def varied_caption_spans(scene: Scene, rng) -> tuple[str, list[tuple[int, int, int]]]:
    """``varied_caption`` (same draws from ``rng``, same text) and each object's ``(slot, start, end)`` characters."""
    c = rng.choice

    def obj(o: WorldObject) -> str:
        pos = c(POSITION_FORMS).format(p=o.position.replace(" ", c((" ", "-"))) if rng.random() < 0.3 else o.position)
        emblem_name = c(EMBLEM_WORDS[o.emblem])
        emb = c(EMBLEM_FORMS).format(a=_article(emblem_name).rstrip())
        pattern = c(PATTERN_WORDS[o.pattern])
        noun = f"{c(SIZE_WORDS[o.size])} {o.color} {pattern} {o.shape}"
        if pattern == "polka-dot" and rng.random() < 0.5:
            noun = f"{c(SIZE_WORDS[o.size])} {o.color} {o.shape} with polka dots"
        pose = c(POSE_WORDS[o.pose])
        forms = (
            f"{_article(noun)} {emb}, {pose}, {pos}",
            f"{pos} {_article(noun)}, {pose}, {emb}",
            f"{_article(noun)}, {pose}, {pos}, {emb}",
            f"{pos} there is {_article(noun)} {emb}, {pose}",
        )
        return c(forms)

    objs = list(scene.objects)
    if rng.random() < 0.5:
        rng.shuffle(objs)
    n = len(objs)
    style, bg = c(STYLE_WORDS[scene.style]), c(BACKGROUND_WORDS[scene.background])
    count = f"{c(NUMBER_WORDS[n])} {c(('object', 'shape')) if n == 1 else c(('objects', 'shapes'))}"
    heads = (f"{style} of {count} on {bg}", f"{style} showing {count} against {bg}", f"on {bg}, {style} of {count}")
    sep = c(("; ", ". ", ", and "))
    text = c(heads) + c((": ", ". "))
    spans = []
    for i, o in enumerate(objs):
        phrase = obj(o)
        spans.append((o.slot, len(text), len(text) + len(phrase)))
        text += phrase + (sep if i < n - 1 else ".")
    return text, spans
