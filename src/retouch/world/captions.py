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
    n = len(scene.objects)
    head = f"{STYLE_PHRASE[scene.style]} of {NUMBER[n]} object{'s' if n > 1 else ''} on {BACKGROUND_PHRASE[scene.background]}"
    return head + ": " + "; ".join(object_phrase(o) for o in scene.objects) + "."
