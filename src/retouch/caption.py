"""Image -> detailed caption: the captioner that starts a caption-based edit.

TurboEdit asks an MLLM (LLaVA) for a detailed caption of the input.  On the Shapes world the scene
reader plays that part: its parse of the image is written out as the world's detailed caption.
A real checkpoint needs a caption from the user (``source_prompt``) until a captioning model is
plugged in here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)


class Captioner:
    name = "base"

    def caption(self, image: np.ndarray) -> str:
        raise NotImplementedError


class SceneReaderCaptioner(Captioner):
    """The Shapes scene reader's parse, written as a detailed caption (world.captions.detailed_caption)."""

    name = "scene-reader"

    def __init__(self, folder: str | Path | None = None) -> None:
        from .world.reader import SceneReader

        self.reader = SceneReader.from_pretrained(folder) if folder else SceneReader.from_pretrained()
        from .world.render import DEFAULT_SIZE

        self.size = DEFAULT_SIZE  # the reader reads images of the renderer's size

    def caption(self, image: np.ndarray) -> str:
        from .world.captions import detailed_caption
        from .world.reader import read_scenes

        if image.shape[:2] != (self.size, self.size):
            image = np.asarray(Image.fromarray(image).resize((self.size, self.size), Image.BICUBIC))
        (scene,) = read_scenes(self.reader, image[None])
        return detailed_caption(scene)
