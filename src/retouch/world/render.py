"""Anti-aliased renderer of Shapes-world scenes.

Everything is drawn at ``SS`` times the output size with Pillow and box-filtered
down, so edges are anti-aliased.  Objects sit centred in their slot and never
leave a disc of radius ``R``, which keeps edits local; every style filter reads
only a few pixels around each pixel for the same reason.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .scene import COLORS, GRID, POSES, SIZES, Scene, WorldObject

logger = logging.getLogger(__name__)

SS = 4  # supersampling factor
DEFAULT_SIZE = 128
# circumradius of an object as a fraction of its slot's side
SIZE_FRAC = {"small": 0.27, "medium": 0.36, "large": 0.455}
POSE_DEG = {"upright": 0.0, "tilted left": 30.0, "tilted right": -30.0, "upside down": 180.0}
BADGE_FRAC = 0.44  # plain disc behind the emblem, fraction of the object radius
EMBLEM_FRAC = 0.36
OUTLINE_FRAC = 0.035  # outline width, fraction of the slot side
assert set(SIZE_FRAC) == set(SIZES) and set(POSE_DEG) == set(POSES)

Points = list[tuple[float, float]]


def _circle(cx: float = 0.0, cy: float = 0.0, r: float = 1.0, n: int = 48) -> Points:
    return [(cx + r * math.cos(2 * math.pi * i / n), cy + r * math.sin(2 * math.pi * i / n)) for i in range(n)]


def _regular(n: int, r: float = 1.0, phase: float = 90.0) -> Points:
    return [(r * math.cos(math.radians(phase + 360 * i / n)), r * math.sin(math.radians(phase + 360 * i / n))) for i in range(n)]


def _star(outer: float = 1.0, inner: float = 0.58) -> Points:
    pts = []
    for i in range(10):
        r = outer if i % 2 == 0 else inner
        a = math.radians(90 + 36 * i)
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


def _heart() -> Points:
    pts = []
    for i in range(64):
        t = 2 * math.pi * i / 64
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((x, y))
    # centre the bounding box and scale into the unit disc
    ys = [p[1] for p in pts]
    cy = (max(ys) + min(ys)) / 2
    pts = [(x, y - cy) for x, y in pts]
    s = 1.0 / max(math.hypot(x, y) for x, y in pts)
    return [(x * s, y * s) for x, y in pts]


def _cross(w: float = 0.45) -> Points:
    a = math.sqrt(1 - w * w) - 0.005
    return [(w, a), (w, w), (a, w), (a, -w), (w, -w), (w, -a), (-w, -a), (-w, -w), (-a, -w), (-a, w), (-w, w), (-w, a)]


# Shapes in unit coordinates, y pointing up, inside the unit disc.
SHAPE_POLYS: dict[str, Points] = {
    "circle": _circle(n=72),
    "square": [(s * 0.7071, t * 0.7071) for s, t in ((1, 1), (1, -1), (-1, -1), (-1, 1))],
    "triangle": _regular(3),
    "star": _star(),
    "heart": _heart(),
    "cross": _cross(),
}

# Emblems: lists of (polygon, ink) where ink=False paints the badge colour back
# (used to cut the crescent out of the moon).  All are asymmetric under the poses.
EMBLEM_POLYS: dict[str, list[tuple[Points, bool]]] = {
    "arrow": [([(0, 1), (0.75, 0.05), (0.28, 0.05), (0.28, -1), (-0.28, -1), (-0.28, 0.05), (-0.75, 0.05)], True)],
    "bolt": [([(0.15, 1), (-0.6, -0.12), (-0.05, -0.12), (-0.3, -1), (0.6, 0.2), (0.08, 0.2), (0.5, 1)], True)],
    "drop": [(_circle(0, -0.35, 0.62), True), ([(0, 1), (-0.56, -0.1), (0.56, -0.1)], True)],
    "moon": [(_circle(0, 0, 0.95), True), (_circle(0.45, 0.2, 0.78), False)],
    "smile": [
        (_circle(-0.4, 0.38, 0.2, 20), True),
        (_circle(0.4, 0.38, 0.2, 20), True),
        (
            [(0.75 * math.cos(math.radians(a)), 0.75 * math.sin(math.radians(a)) - 0.05) for a in range(200, 341, 10)]
            + [(0.45 * math.cos(math.radians(a)), 0.45 * math.sin(math.radians(a)) - 0.05) for a in range(340, 199, -10)],
            True,
        ),
    ],
}

BACKGROUND_BASE = {
    "plain": (242, 242, 236),
    "sky": (120, 185, 240),
    "grass": (80, 170, 70),
    "night": (18, 22, 60),
    "brick": (165, 70, 50),
    "sand": (225, 195, 140),
}


def luma(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _shade(rgb: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(round(c * f)) for c in rgb)  # type: ignore[return-value]


def _tint(rgb: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(round(c + (255 - c) * f)) for c in rgb)  # type: ignore[return-value]


def pattern_color(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Second colour of a pattern: darker on light colours, lighter on dark ones."""
    return _shade(rgb, 0.55) if luma(rgb) > 150 else _tint(rgb, 0.55)


def emblem_color(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return (25, 25, 30) if luma(rgb) > 120 else (250, 250, 250)


def slot_center(slot: int, size: int) -> tuple[float, float]:
    cell = size / GRID
    r, c = divmod(slot, GRID)
    return ((c + 0.5) * cell, (r + 0.5) * cell)


def object_radius(obj: WorldObject, size: int) -> float:
    return SIZE_FRAC[obj.size] * size / GRID


def _place(pts: Points, cx: float, cy: float, r: float, deg: float) -> list[tuple[float, float]]:
    """Unit coordinates (y up) -> image coordinates (y down), rotated by ``deg`` counter-clockwise."""
    ca, sa = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return [(cx + r * (x * ca - y * sa), cy - r * (x * sa + y * ca)) for x, y in pts]


def _pattern_layer(kind: str, box: int, period: float, deg: float) -> Image.Image:
    """A ``box`` x ``box`` L-mode stencil of the pattern (255 = second colour), rotated with the pose."""
    img = Image.new("L", (box, box), 0)
    if kind == "solid":
        return img
    d = ImageDraw.Draw(img)
    c = box / 2
    n = int(box / period) + 3
    for i in range(-n, n + 1):
        for j in range(-n, n + 1):
            u, v = i * period, j * period  # lattice in pattern coordinates
            if kind == "striped":
                if j != 0:
                    continue
                quad = [(u, -box), (u + period / 2, -box), (u + period / 2, box), (u, box)]
            elif kind == "checkered":
                if (i + j) % 2:
                    continue
                quad = [(u, v), (u + period, v), (u + period, v + period), (u, v + period)]
            elif kind == "dotted":
                quad = _circle(u + period / 2, v + period / 2, period * 0.27, 16)
            else:
                raise ValueError(f"unknown pattern {kind!r}")
            d.polygon(_place(quad, c, c, 1.0, deg), fill=255)
    return img


def draw_object(canvas: Image.Image, obj: WorldObject, size: int) -> None:
    """Draw ``obj`` onto the supersampled RGB ``canvas`` (side ``size * SS``)."""
    big = size * SS
    cx, cy = slot_center(obj.slot, big)
    r = object_radius(obj, big)
    deg = POSE_DEG[obj.pose]
    base = COLORS[obj.color]
    cell = big / GRID
    box = int(math.ceil(2 * r + 4 * SS))
    ox, oy = int(round(cx - box / 2)), int(round(cy - box / 2))
    lc, lcy = cx - ox, cy - oy  # centre in the local box

    shape = Image.new("L", (box, box), 0)
    poly = _place(SHAPE_POLYS[obj.shape], lc, lcy, r, deg)
    ImageDraw.Draw(shape).polygon(poly, fill=255)

    layer = Image.new("RGB", (box, box), base)
    stencil = _pattern_layer(obj.pattern, box, period=0.16 * cell, deg=deg)
    layer.paste(pattern_color(base), mask=stencil)
    d = ImageDraw.Draw(layer)
    # outline: darker rim so the object stands out on any background and in grayscale
    d.line(poly + [poly[0]], fill=_shade(base, 0.45), width=max(1, int(round(OUTLINE_FRAC * cell))), joint="curve")
    # badge and emblem
    d.polygon(_place(_circle(n=48), lc, lcy, BADGE_FRAC * r, 0), fill=base)
    for pts, ink in EMBLEM_POLYS[obj.emblem]:
        d.polygon(_place(pts, lc, lcy, EMBLEM_FRAC * r, deg), fill=emblem_color(base) if ink else base)
    # widen the stencil by the outline so the rim is kept
    shape = shape.filter(ImageFilter.MaxFilter(3))
    canvas.paste(layer, (ox, oy), mask=shape)


def _background(name: str, big: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (big, big), BACKGROUND_BASE[name])
    d = ImageDraw.Draw(img)
    u = big / 128  # drawing unit: one pixel of a 128 image
    if name == "sky":
        top, bottom = np.array([70, 140, 225]), np.array([175, 215, 250])
        t = np.linspace(0, 1, big)[:, None, None]
        arr = (top * (1 - t) + bottom * t).repeat(big, axis=1)
        img = Image.fromarray(arr.astype(np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(4):
            x, y = rng.uniform(0, big), rng.uniform(0, big)
            for dx, dy, rr in ((0, 0, 9), (8, 2, 7), (-8, 2, 7)):
                d.ellipse([x + (dx - rr) * u, y + (dy - rr * 0.7) * u, x + (dx + rr) * u, y + (dy + rr * 0.7) * u], fill=(250, 250, 252))
    elif name == "grass":
        horizon = int(big * 0.3)
        d.rectangle([0, 0, big, horizon], fill=(150, 205, 245))
        for _ in range(220):
            x, y = rng.uniform(0, big), rng.uniform(horizon, big)
            h = rng.uniform(3, 6) * u
            d.line([(x, y), (x + rng.uniform(-1.5, 1.5) * u, y - h)], fill=(45, 120, 40), width=max(1, int(u)))
    elif name == "night":
        for _ in range(70):
            x, y = rng.uniform(0, big), rng.uniform(0, big)
            rr = rng.uniform(0.5, 1.1) * u
            d.ellipse([x - rr, y - rr, x + rr, y + rr], fill=(245, 245, 200))
    elif name == "brick":
        h = 8 * u
        mortar = (215, 205, 190)
        rows = int(big / h) + 1
        for i in range(rows + 1):
            y = i * h
            d.line([(0, y), (big, y)], fill=mortar, width=max(1, int(1.5 * u)))
            off = 0 if i % 2 == 0 else 8 * u
            for j in range(-1, int(big / (16 * u)) + 2):
                x = j * 16 * u + off
                d.line([(x, y), (x, y + h)], fill=mortar, width=max(1, int(1.5 * u)))
    elif name == "sand":
        for k in range(6):
            y0 = rng.uniform(0, big)
            pts = [(x, y0 + 4 * u * math.sin(x / (14 * u) + k)) for x in np.linspace(0, big, 48)]
            d.line(pts, fill=(195, 160, 105), width=max(1, int(1.2 * u)))
    return img


def _gauss_kernel(sigma: float) -> np.ndarray:
    rad = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-rad, rad + 1)
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an HxWxC float array with reflected borders."""
    k = _gauss_kernel(sigma)
    rad = len(k) // 2
    p = np.pad(a, ((rad, rad), (0, 0), (0, 0)), mode="reflect")
    a = sum(k[i] * p[i : i + a.shape[0]] for i in range(len(k)))
    p = np.pad(a, ((0, 0), (rad, rad), (0, 0)), mode="reflect")
    return sum(k[i] * p[:, i : i + a.shape[1]] for i in range(len(k)))


@lru_cache(maxsize=8)
def _grain(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (size, size, 1)).astype(np.float32)


@lru_cache(maxsize=8)
def _mottle(size: int, seed: int) -> np.ndarray:
    """Low-frequency paper texture with unit standard deviation, HxWx1."""
    m = _blur(_grain(size, seed), 3.0 * size / 128)
    return (m / m.std()).astype(np.float32)


def apply_style(img: np.ndarray, style: str, seed: int) -> np.ndarray:
    """Global render style on an HxWx3 uint8 image.  Each filter is local (a few pixels)."""
    a = img.astype(np.float32)
    size = img.shape[0]
    lum = a @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if style == "flat":
        return img
    if style == "grayscale":
        out = np.repeat(lum[..., None], 3, axis=2)
    elif style == "sepia":
        out = lum[..., None] * np.array([1.0, 0.82, 0.6], dtype=np.float32) + np.array([22, 14, 4], dtype=np.float32)
    elif style == "pixel":
        b = max(1, size // 64)
        small = a.reshape(size // b, b, size // b, b, 3).mean(axis=(1, 3))
        small = np.round(small / 32) * 32  # posterise to 9 levels per channel
        out = small.repeat(b, axis=0).repeat(b, axis=1)
    elif style == "sketch":
        gy, gx = np.gradient(lum)
        edge = np.clip(np.hypot(gx, gy) / 40.0, 0, 1)[..., None]
        paper = np.array([248, 246, 238], dtype=np.float32)
        wash = 0.35 * a + 0.65 * paper
        out = wash * (1 - 0.85 * edge) + 40 * 0.85 * edge
    elif style == "watercolor":
        # soft edges, pigment pooling at edges, a light wash and blotchy paper: the
        # mottling is low-frequency, so it cannot be mistaken for sensor noise or blur
        s = size / 128
        soft = _blur(a, 0.5 * s)
        gy, gx = np.gradient(soft @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
        pool = np.clip(np.hypot(gx, gy) / 60.0, 0, 1)[..., None]
        out = soft * (1 - 0.22 * pool) * (1 + 0.09 * _mottle(size, seed))
        out = 0.85 * out + 0.15 * 255
    else:
        raise ValueError(f"unknown style {style!r}")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def render(scene: Scene, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Render ``scene`` to an ``size`` x ``size`` x 3 uint8 array."""
    if size % 32 or size < 32:
        raise ValueError(f"render size must be a positive multiple of 32, got {size}")
    big = size * SS
    canvas = _background(scene.background, big, scene.seed)
    for obj in scene.objects:
        draw_object(canvas, obj, size)
    flat = np.asarray(canvas.reduce(SS))
    return apply_style(flat, scene.style, scene.seed)


def render_pil(scene: Scene, size: int = DEFAULT_SIZE) -> Image.Image:
    return Image.fromarray(render(scene, size))


def object_footprint(obj: WorldObject, size: int) -> np.ndarray:
    """Boolean HxW disc that contains everything ``obj`` draws (radius plus outline)."""
    cx, cy = slot_center(obj.slot, size)
    r = object_radius(obj, size) + OUTLINE_FRAC * size / GRID + 1
    yy, xx = np.mgrid[0:size, 0:size]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r
