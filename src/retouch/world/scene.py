"""Scene dataclasses of the Shapes world and their JSON round trip.

A scene is a 2x2 grid of slots; each slot holds at most one object.  Every
attribute takes a value from a small closed vocabulary so that captions, edits
and the scene reader can all be exact.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass, replace

logger = logging.getLogger(__name__)

GRID = 2  # slots per side: positions are the cells of a GRID x GRID grid
N_SLOTS = GRID * GRID

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "cross")
# Palette chosen so that the six colours stay distinct in luminance too (grayscale
# and sepia styles keep only luminance): Rec.601 luma ~53, 80, 108, 137, 166, 214.
COLORS: dict[str, tuple[int, int, int]] = {
    "blue": (25, 45, 170),
    "purple": (135, 35, 165),
    "red": (235, 55, 50),
    "green": (50, 195, 70),
    "orange": (250, 150, 25),
    "yellow": (250, 225, 60),
}
SIZES: tuple[str, ...] = ("small", "medium", "large")
PATTERNS: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")
POSES: tuple[str, ...] = ("upright", "tilted left", "tilted right", "upside down")
EMBLEMS: tuple[str, ...] = ("arrow", "moon", "bolt", "drop", "smile")
POSITIONS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
BACKGROUNDS: tuple[str, ...] = ("plain", "sky", "grass", "night", "brick", "sand")
STYLES: tuple[str, ...] = ("flat", "sketch", "pixel", "watercolor", "grayscale", "sepia")

OBJECT_ATTRS: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "color": tuple(COLORS),
    "size": SIZES,
    "pattern": PATTERNS,
    "pose": POSES,
    "emblem": EMBLEMS,
}
SCENE_ATTRS: dict[str, tuple[str, ...]] = {"background": BACKGROUNDS, "style": STYLES}


@dataclass(frozen=True)
class WorldObject:
    """One object: every field is a value from the vocabularies above."""

    shape: str
    color: str
    size: str
    pattern: str
    pose: str
    emblem: str
    slot: int  # 0..N_SLOTS-1, row-major: 0 top left, 1 top right, 2 bottom left, 3 bottom right

    def __post_init__(self) -> None:
        for name, vocab in OBJECT_ATTRS.items():
            if getattr(self, name) not in vocab:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; expected one of {list(vocab)}")
        if not 0 <= self.slot < N_SLOTS:
            raise ValueError(f"slot {self.slot} outside 0..{N_SLOTS - 1}")

    @property
    def position(self) -> str:
        return POSITIONS[self.slot]


@dataclass(frozen=True)
class Scene:
    """A whole scene. ``seed`` only drives background texture and paper grain, so that
    an edit that keeps the seed changes nothing it does not name."""

    objects: tuple[WorldObject, ...]
    background: str
    style: str
    seed: int = 0

    def __post_init__(self) -> None:
        if self.background not in BACKGROUNDS:
            raise ValueError(f"unknown background {self.background!r}; expected one of {list(BACKGROUNDS)}")
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}; expected one of {list(STYLES)}")
        # objects are kept sorted by slot so that equality does not depend on order
        slots = [o.slot for o in self.objects]
        if len(set(slots)) != len(slots):
            raise ValueError(f"two objects share a slot: {slots}")
        object.__setattr__(self, "objects", tuple(sorted(self.objects, key=lambda o: o.slot)))

    def object_at(self, slot: int) -> WorldObject | None:
        for o in self.objects:
            if o.slot == slot:
                return o
        return None

    def free_slots(self) -> list[int]:
        used = {o.slot for o in self.objects}
        return [s for s in range(N_SLOTS) if s not in used]

    def with_object(self, obj: WorldObject) -> Scene:
        """Return a copy where ``obj`` replaces whatever stood in its slot."""
        others = tuple(o for o in self.objects if o.slot != obj.slot)
        return replace(self, objects=others + (obj,))

    def without_slot(self, slot: int) -> Scene:
        return replace(self, objects=tuple(o for o in self.objects if o.slot != slot))

    def same_content(self, other: Scene) -> bool:
        """Equality of everything visible (the texture seed aside)."""
        return (self.objects, self.background, self.style) == (other.objects, other.background, other.style)

    # -- JSON ---------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "objects": [asdict(o) for o in self.objects],
            "background": self.background,
            "style": self.style,
            "seed": self.seed,
        }

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        try:
            objs = tuple(WorldObject(**o) for o in d["objects"])
            return cls(objects=objs, background=d["background"], style=d["style"], seed=int(d.get("seed", 0)))
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a Shapes-world scene: {e}") from e

    @classmethod
    def from_json(cls, s: str) -> Scene:
        return cls.from_dict(json.loads(s))


def random_object(rng: random.Random, slot: int) -> WorldObject:
    return WorldObject(**{k: rng.choice(v) for k, v in OBJECT_ATTRS.items()}, slot=slot)


def random_scene(rng: random.Random, n_objects: int | None = None) -> Scene:
    """Sample a scene with 1..N_SLOTS objects (uniform count unless given)."""
    n = n_objects if n_objects is not None else rng.randint(1, N_SLOTS)
    if not 1 <= n <= N_SLOTS:
        raise ValueError(f"a scene holds 1..{N_SLOTS} objects, asked for {n}")
    slots = rng.sample(range(N_SLOTS), n)
    return Scene(
        objects=tuple(random_object(rng, s) for s in slots),
        background=rng.choice(BACKGROUNDS),
        style=rng.choice(STYLES),
        seed=rng.randrange(2**31),
    )
