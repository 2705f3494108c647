"""ByteEdit's training mask mix (Ren et al. 2024, sec. 4.1): whole-image, free-form brush strokes, boxes,
outward extensions (outpainting) and object masks dilated at random (inpaint-editing and erasing); and, for
erasing, ``empty``: an object's footprint at a place that holds none (the target there is background only).

Each kind is a function of (rng, size, scene) -> (size, size) bool, True = to generate; ``sample_mask`` draws
the kind by the recipe's weights.  The object kind uses the world's exact object footprints.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
from scipy.ndimage import binary_dilation

from ..world.render import object_footprint
from ..world.scene import Scene

MaskFn = Callable[[random.Random, int, Scene], np.ndarray]


def whole_mask(rng: random.Random, size: int, scene: Scene) -> np.ndarray:
    return np.ones((size, size), dtype=bool)


def brush_mask(rng: random.Random, size: int, scene: Scene) -> np.ndarray:
    """1-4 strokes, each a polyline of 2-6 points drawn with a round brush 4-16% of the side wide."""
    import cv2

    m = np.zeros((size, size), np.uint8)
    for _ in range(rng.randint(1, 4)):
        width = max(2, round(size * rng.uniform(0.04, 0.16)))
        pts = [(rng.randrange(size), rng.randrange(size))]
        for _ in range(rng.randint(1, 5)):
            x, y = pts[-1]
            step = size * rng.uniform(0.1, 0.4)
            ang = rng.uniform(0, 2 * np.pi)
            pts.append((int(np.clip(x + step * np.cos(ang), 0, size - 1)), int(np.clip(y + step * np.sin(ang), 0, size - 1))))
        for a, b in zip(pts, pts[1:], strict=False):
            cv2.line(m, a, b, 1, width)
            cv2.circle(m, b, width // 2, 1, -1)
    return m.astype(bool)


def box_mask(rng: random.Random, size: int, scene: Scene) -> np.ndarray:
    """1-2 axis-aligned boxes, each side 12-60% of the image's."""
    m = np.zeros((size, size), dtype=bool)
    for _ in range(rng.randint(1, 2)):
        h, w = (max(2, round(size * rng.uniform(0.12, 0.6))) for _ in range(2))
        t, left = rng.randint(0, size - h), rng.randint(0, size - w)
        m[t : t + h, left : left + w] = True
    return m


def outward_mask(rng: random.Random, size: int, scene: Scene) -> np.ndarray:
    """The canvas outside a kept rectangle: 6-40% of the side taken off one to four sides."""
    m = np.ones((size, size), dtype=bool)
    sides = rng.sample(["left", "right", "top", "bottom"], rng.randint(1, 4))
    cut = {s: round(size * rng.uniform(0.06, 0.4)) if s in sides else 0 for s in ("left", "right", "top", "bottom")}
    if cut["left"] + cut["right"] > size * 0.7:
        cut["right"] = 0
    if cut["top"] + cut["bottom"] > size * 0.7:
        cut["bottom"] = 0
    m[cut["top"] : size - cut["bottom"], cut["left"] : size - cut["right"]] = False
    return m if m.any() else whole_mask(rng, size, scene)


def object_mask(rng: random.Random, size: int, scene: Scene) -> np.ndarray:
    """One object's footprint (sometimes two), dilated by 1-8% of the side; a box when the scene has none."""
    if not scene.objects:
        return box_mask(rng, size, scene)
    objs = rng.sample(list(scene.objects), min(len(scene.objects), 1 if rng.random() < 0.8 else 2))
    m = np.zeros((size, size), dtype=bool)
    for o in objs:
        m |= object_footprint(o, size)
    return binary_dilation(m, iterations=max(1, round(size * rng.uniform(0.01, 0.08))))


def empty_place_mask(rng: random.Random, size: int, scene: Scene) -> np.ndarray:
    """The dilated footprint of an object that could stand at an empty place (a random one): what an erase
    leaves to fill, with nothing but background beneath it. The object kind when every place is taken."""
    from ..world.scene import N_SLOTS, random_object

    empty = [s for s in range(N_SLOTS) if scene.object_at(s) is None]
    if not empty:
        return object_mask(rng, size, scene)
    ghost = random_object(rng, rng.choice(empty))
    m = object_footprint(ghost, size)
    return binary_dilation(m, iterations=max(1, round(size * rng.uniform(0.01, 0.05))))


MASK_KINDS: dict[str, MaskFn] = {
    "whole": whole_mask,
    "brush": brush_mask,
    "box": box_mask,
    "outward": outward_mask,
    "object": object_mask,
    "empty": empty_place_mask,
}


def sample_mask(rng: random.Random, size: int, scene: Scene, weights: dict[str, float]) -> tuple[str, np.ndarray]:
    """(kind, mask): a kind drawn by ``weights`` (names of ``MASK_KINDS``), then its mask."""
    unknown = set(weights) - set(MASK_KINDS)
    if unknown:
        raise ValueError(f"unknown mask kinds {sorted(unknown)}; known: {', '.join(MASK_KINDS)}")
    kinds = [k for k, w in weights.items() if w > 0]
    if not kinds:
        raise ValueError("the mask mix gives no kind a positive weight")
    kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
    return kind, MASK_KINDS[kind](rng, size, scene)
