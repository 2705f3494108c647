"""Benchmark suites in PIE-Bench's own folder format.

A suite is a folder with ``mapping_file.json`` (keyed by case id) and images
under ``annotation_images/<type folder>/``.  Each entry has PIE-Bench's fields
(``image_path`` relative to ``annotation_images``, ``original_prompt``,
``editing_prompt``, ``editing_instruction``, ``editing_type_id``,
``blended_word``, ``mask``) and, for Shapes-PIE suites, ground truth:
``target_image_path`` (relative to the suite folder), ``source_scene``,
``target_scene``, the detailed captions and the changes.  ``load_suite`` reads
either kind, so a user's copy of the real PIE-Bench loads the same way.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .captions import short_caption
from .edits import EDIT_TYPES, PIE_COUNTS, PIE_DIRS, Edit, edit_to_dict, sample_edit
from .render import DEFAULT_SIZE
from .scene import Scene, random_scene

logger = logging.getLogger(__name__)

MAPPING = "mapping_file.json"
IMAGES = "annotation_images"
TARGETS = "target_images"


# -- PIE-Bench run-length encoding -------------------------------------------
def rle_encode(mask: np.ndarray) -> list[int]:
    """Flat [start, length, ...] runs of 1s over the row-major image (PIE-Bench's format)."""
    flat = np.asarray(mask, dtype=bool).ravel()
    padded = np.concatenate([[False], flat, [False]])
    d = np.diff(padded.astype(np.int8))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    out = np.empty(2 * len(starts), dtype=np.int64)
    out[0::2], out[1::2] = starts, ends - starts
    return out.tolist()


def rle_decode(encoded: list[int], shape: tuple[int, int], border: bool = True) -> np.ndarray:
    """Decode PIE-Bench's RLE to a boolean HxW mask.

    With ``border=True`` this follows PIE-Bench's ``mask_decode`` exactly: runs are
    clipped at the end of the image and the one-pixel border is set to 1 ("to avoid
    annotation errors in boundary").  ``border=False`` gives the mask as encoded.
    """
    h, w = shape
    n = h * w
    flat = np.zeros(n, dtype=bool)
    if len(encoded) % 2:
        raise ValueError(f"RLE mask has an odd number of values ({len(encoded)})")
    for start, length in zip(encoded[0::2], encoded[1::2], strict=True):
        flat[start : start + min(length, n - start)] = True
    m = flat.reshape(h, w)
    if border:
        m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = True
    return m


# -- writing -------------------------------------------------------------------
def type_counts(n: int) -> dict[int, int]:
    """Split ``n`` cases over the ten types in PIE-Bench's proportions (largest remainder)."""
    total = sum(PIE_COUNTS.values())
    exact = {t: n * c / total for t, c in PIE_COUNTS.items()}
    counts = {t: int(v) for t, v in exact.items()}
    for t in sorted(exact, key=lambda t: exact[t] - counts[t], reverse=True)[: n - sum(counts.values())]:
        counts[t] += 1
    return counts


def generate_edits(n: int, seed: int, size: int = DEFAULT_SIZE) -> Iterator[tuple[str, Edit]]:
    """(case id, edit) pairs: ``n`` cases in PIE proportions, deterministic in ``seed``."""
    rng = random.Random(f"shapes-pie/{seed}")
    for t, count in type_counts(n).items():
        for i in range(count):
            e = None
            while e is None:
                e = sample_edit(random_scene(rng), t, rng, size)
            yield f"{t}{i:011d}", e


def case_record(case_id: str, e: Edit) -> dict:
    src_p, tgt_p = e.pie_prompts
    folder = PIE_DIRS[e.type_id]
    return {
        "image_path": f"{folder}/{case_id}.png",
        "original_prompt": src_p,
        "editing_prompt": tgt_p,
        "editing_instruction": e.instruction,
        "editing_type_id": str(e.type_id),
        "blended_word": e.blended_word,
        "mask": rle_encode(e.mask),
        # ground truth beyond PIE-Bench
        "target_image_path": f"{TARGETS}/{folder}/{case_id}.png",
        "source_scene": e.source.to_dict(),
        "target_scene": e.target.to_dict(),
        "source_caption": e.source_caption,
        "target_caption": e.target_caption,
        "source_short": short_caption(e.source),
        "target_short": short_caption(e.target),
        "edit": edit_to_dict(e),
    }


def write_suite(
    out: str | Path, n: int = 700, seed: int = 1, size: int = DEFAULT_SIZE, callback: Callable[[int, int], None] | None = None
) -> Path:
    """Write a Shapes-PIE suite of ``n`` cases to ``out``; returns the mapping file path."""
    if n < 1:
        raise ValueError(f"a suite needs at least one case, got n={n}")
    out = Path(out)
    if (out / MAPPING).exists():
        raise FileExistsError(f"{out / MAPPING} already exists; choose an empty folder")
    mapping: dict[str, dict] = {}
    for k, (case_id, e) in enumerate(generate_edits(n, seed, size)):
        rec = case_record(case_id, e)
        for rel, img in ((Path(IMAGES) / rec["image_path"], e.render_source()), (Path(rec["target_image_path"]), e.render_target())):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(out / rel)
        mapping[case_id] = rec
        if callback:
            callback(k + 1, n)
    meta = {"generator": "retouch Shapes-PIE", "n": n, "seed": seed, "size": size, "edit_types": EDIT_TYPES}
    (out / "suite.json").write_text(json.dumps(meta, indent=2))
    # the mapping file goes last so that a half-written suite is never mistaken for a whole one
    path = out / MAPPING
    path.write_text(json.dumps(mapping))
    return path


# -- reading -------------------------------------------------------------------
@dataclass
class Case:
    """One benchmark case.  Ground-truth fields are None for suites that lack them (real PIE-Bench)."""

    id: str
    image_path: Path
    original_prompt: str
    editing_prompt: str
    editing_instruction: str
    editing_type_id: int
    blended_word: str
    rle: list[int]
    target_image_path: Path | None = None
    source_scene: Scene | None = None
    target_scene: Scene | None = None
    source_caption: str | None = None
    target_caption: str | None = None

    @property
    def source_prompt(self) -> str:
        """The original prompt without PIE's brackets."""
        return self.original_prompt.replace("[", "").replace("]", "")

    @property
    def target_prompt(self) -> str:
        return self.editing_prompt.replace("[", "").replace("]", "")

    def load_image(self) -> np.ndarray:
        return load_rgb(self.image_path)

    def load_target(self) -> np.ndarray | None:
        return load_rgb(self.target_image_path) if self.target_image_path else None

    def mask(self, shape: tuple[int, int] | None = None, border: bool = True) -> np.ndarray:
        """The edit mask (True = edit region), decoded with PIE-Bench's semantics by default."""
        if shape is None:
            with Image.open(self.image_path) as im:
                shape = (im.height, im.width)
        return rle_decode(self.rle, shape, border=border)


def load_rgb(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} not found")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as e:
        raise ValueError(f"{path} is not a readable image: {e}") from e


def load_suite(folder: str | Path) -> list[Case]:
    """Read a PIE-Bench-format folder (a Shapes-PIE suite or the real PIE-Bench)."""
    folder = Path(folder)
    mf = folder / MAPPING
    if not mf.is_file():
        raise FileNotFoundError(f"{folder} is not a PIE-Bench-format suite: {MAPPING} missing")
    try:
        mapping = json.loads(mf.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{mf} is not valid JSON: {e}") from e
    cases = []
    for case_id, r in sorted(mapping.items()):
        try:
            cases.append(
                Case(
                    id=case_id,
                    image_path=folder / IMAGES / r["image_path"],
                    original_prompt=r["original_prompt"],
                    editing_prompt=r["editing_prompt"],
                    editing_instruction=r.get("editing_instruction", ""),
                    editing_type_id=int(r["editing_type_id"]),
                    blended_word=r.get("blended_word", ""),
                    rle=list(r["mask"]),
                    target_image_path=folder / r["target_image_path"] if r.get("target_image_path") else None,
                    source_scene=Scene.from_dict(r["source_scene"]) if r.get("source_scene") else None,
                    target_scene=Scene.from_dict(r["target_scene"]) if r.get("target_scene") else None,
                    source_caption=r.get("source_caption"),
                    target_caption=r.get("target_caption"),
                )
            )
        except KeyError as e:
            raise ValueError(f"{mf}: case {case_id} lacks field {e}") from e
    return cases
