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

        return detailed_caption(self.read(image))

    def read(self, image: np.ndarray):
        """The scene in ``image``, or ``NoSceneError`` when the image is not a Shapes-world scene."""
        from .world.reader import read_scenes
        from .world.render import render

        if image.shape[:2] != (self.size, self.size):
            image = np.asarray(Image.fromarray(image).resize((self.size, self.size), Image.BICUBIC))
        (scene,) = read_scenes(self.reader, image[None])
        if not scene.objects:
            raise NoSceneError("the scene reader finds no object in it")
        # analysis by synthesis: the parse, rendered, must look like the image at a coarse scale (cell
        # means, which the unknown texture seed of backgrounds and styles barely moves)
        err = cell_error(render(scene, self.size), image)
        if err > MAX_CELL_ERROR:
            raise NoSceneError(
                f"its parse, rendered, differs from it by {err:.0f} grey levels per cell of a {CELLS}x{CELLS} grid "
                f"(at most {MAX_CELL_ERROR:.0f})"
            )
        return scene


CELLS = 8
# Measured (benchmarks/photo_check.py): world renders <= 11.7 on 1,000 fresh scenes, turbo's own
# one-turn outputs <= 30.6 on 50 edits, photos 19-89 (most above 40).
MAX_CELL_ERROR = 36.0


def cell_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two same-size HxWx3 images averaged over a CELLS x CELLS grid."""
    h, w = a.shape[:2]
    ch, cw = h // CELLS, w // CELLS

    def pool(x: np.ndarray) -> np.ndarray:
        x = x[: ch * CELLS, : cw * CELLS].astype(np.float32)
        return x.reshape(CELLS, ch, CELLS, cw, 3).mean((1, 3))

    return float(np.abs(pool(a) - pool(b)).mean())


class NoSceneError(ValueError):
    """The image holds no Shapes-world scene, so the world's captioner cannot caption it."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"found no Shapes-world scene in the image ({why}): the shipped Shapes models caption and edit only "
            "Shapes-world scenes. For another image give both captions yourself (--source-prompt and --target-prompt), "
            "or use --model with a real checkpoint"
        )
        self.why = why
