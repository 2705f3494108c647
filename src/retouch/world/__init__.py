"""The procedural Shapes world: scenes, renderer, captions, exact edits, suites, and the scene reader."""

from .captions import detailed_caption, short_caption
from .edits import EDIT_TYPES, PIE_COUNTS, Change, Edit, edit_mask, sample_edit
from .render import DEFAULT_SIZE, render, render_pil
from .scene import Scene, WorldObject, random_scene
from .suite import Case, load_suite, rle_decode, rle_encode, write_suite

__all__ = [
    "EDIT_TYPES",
    "PIE_COUNTS",
    "DEFAULT_SIZE",
    "Case",
    "Change",
    "Edit",
    "Scene",
    "WorldObject",
    "detailed_caption",
    "edit_mask",
    "load_suite",
    "random_scene",
    "render",
    "render_pil",
    "rle_decode",
    "rle_encode",
    "sample_edit",
    "short_caption",
    "write_suite",
]
