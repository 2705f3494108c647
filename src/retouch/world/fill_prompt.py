"""What a Shapes inpainting model is told: the caption of the whole scene a fill should leave.

The Shapes generator draws from a caption's layout map and draft (models/layout.py, models/draft.py), which
describe a whole scene. A fill request says less: erase gives no prompt, inpaint describes one object, outpaint
usually nothing. As ByteEdit's and TurboEdit's pipelines caption the input first (an MLLM there, the scene
reader here: ``caption.SceneReaderCaptioner``), the request is turned into the scene the output should show:

- ``erase``: the parse of the input without every object whose footprint the mask covers for the most part
  (``ERASE_COVER``); the fill then draws background where the map says the place is empty;
- ``inpaint``: the parse with the prompt's object put at the place the mask covers most, read by the world's
  instruction reader as "add PROMPT at the PLACE" (a prompt that reads as a whole caption is used as given);
- ``outpaint``: the parse of the canvas (the prompt, when given, as the whole scene's caption).

The result is written as the world's detailed caption, which the caption reader reads almost exactly
(docs/backbone.md), so the model gets a map and a draft of the intended scene.
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from .captions import detailed_caption
from .render import DEFAULT_SIZE, object_footprint, slot_center
from .scene import POSITIONS, Scene

logger = logging.getLogger(__name__)

ERASE_COVER = 0.5  # an object is erased when the mask covers at least this share of its footprint


def slot_shares(mask: np.ndarray) -> np.ndarray:
    """(4,) the share of the mask's pixels nearest each place's centre."""
    size = mask.shape[0]
    yy, xx = np.nonzero(mask)
    if not len(yy):
        return np.zeros(len(POSITIONS))
    centres = np.array([slot_center(s, size) for s in range(len(POSITIONS))])  # (4, 2) as (x, y)
    d = (xx[:, None] + 0.5 - centres[None, :, 0]) ** 2 + (yy[:, None] + 0.5 - centres[None, :, 1]) ** 2  # (P, 4)
    return np.bincount(d.argmin(1), minlength=len(POSITIONS)) / len(yy)


def erased_scene(scene: Scene, mask: np.ndarray) -> Scene:
    """``scene`` without the objects the mask covers (``ERASE_COVER`` of the footprint or more)."""
    size = mask.shape[0]
    out = scene
    for o in scene.objects:
        foot = object_footprint(o, size)
        if foot.any() and (mask & foot).sum() / foot.sum() >= ERASE_COVER:
            out = out.without_slot(o.slot)
    return out


def inpainted_scene(scene: Scene, mask: np.ndarray, prompt: str) -> Scene | None:
    """``scene`` with the prompt's object at the place the mask covers most, or None when the prompt does not read
    as one object."""
    from .reading import ReadingError, read_instruction

    slot = int(np.argmax(slot_shares(mask)))
    base = scene.without_slot(slot)
    try:
        target = read_instruction(base, f"add {prompt.strip().rstrip('.')} at the {POSITIONS[slot]}").target
    except ReadingError as e:
        logger.info("the inpaint prompt does not read as one object (%s): it is used as the caption", e)
        return None
    return target if target.object_at(slot) is not None else None


class SceneFillPrompt:
    """Composes a fill's caption from the scene reader's parse of the crop (see the module docstring)."""

    def __init__(self, folder: str | None = None) -> None:
        from .reader import SceneReader

        self.reader = SceneReader.from_pretrained(folder) if folder else SceneReader.from_pretrained()

    def read(self, image: np.ndarray) -> Scene:
        from .reader import read_scenes

        (scene,) = read_scenes(self.reader, image[None])
        return scene

    def compose(self, task: str, image: np.ndarray, mask: np.ndarray, prompt: str | None) -> str:
        if image.shape[:2] != (DEFAULT_SIZE, DEFAULT_SIZE):
            image = np.asarray(Image.fromarray(image).resize((DEFAULT_SIZE, DEFAULT_SIZE), Image.BICUBIC))
            mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((DEFAULT_SIZE, DEFAULT_SIZE), Image.BILINEAR)) > 0
        if task == "outpaint" and prompt:
            return prompt
        scene = self.read(image)
        if task == "erase":
            scene = erased_scene(scene, mask)
        elif task == "inpaint":
            if not prompt:
                raise ValueError("inpaint needs a prompt: what to draw in the mask")
            target = inpainted_scene(scene, mask, prompt)
            if target is None:
                return prompt
            scene = target
        if not scene.objects:
            # the world's captions always name an object; with none, the model fills from the surroundings alone
            # (the null caption: classifier-free guidance's unconditional branch, which it was trained on)
            logger.info("%s: the scene reader finds no object; the fill is unconditional", task)
            return ""
        caption = detailed_caption(scene)
        logger.info("%s: the model is told %r", task, caption)
        return caption
