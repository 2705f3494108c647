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

from ..atomic import save_image, sweep_temps, write_json, write_text
from ..images import read_rgb
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
    check_rle(encoded)
    for start, length in zip(encoded[0::2], encoded[1::2], strict=True):
        flat[start : start + min(length, n - start)] = True
    m = flat.reshape(h, w)
    if border:
        m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = True
    return m


def check_rle(encoded: object) -> list[int]:
    """``encoded`` if it is PIE-Bench RLE (a flat list of non-negative integer start, length pairs), else ``ValueError``."""
    if not isinstance(encoded, list | tuple):
        raise ValueError(f"RLE mask must be a list of integers, got {type(encoded).__name__}")
    if len(encoded) % 2:
        raise ValueError(f"RLE mask has an odd number of values ({len(encoded)})")
    for i, v in enumerate(encoded):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise ValueError(f"RLE mask value {i} is {v!r}: every value must be a non-negative integer")
    return list(encoded)


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
    sweep_temps(out)  # an interrupted run's half-written files (its whole images are simply written again)
    mapping: dict[str, dict] = {}
    for k, (case_id, e) in enumerate(generate_edits(n, seed, size)):
        rec = case_record(case_id, e)
        for rel, img in ((Path(IMAGES) / rec["image_path"], e.render_source()), (Path(rec["target_image_path"]), e.render_target())):
            save_image(img, out / rel, fsync=False)  # each image whole; the mapping file below is synced
        mapping[case_id] = rec
        if callback:
            callback(k + 1, n)
    meta = {"generator": "retouch Shapes-PIE", "n": n, "seed": seed, "size": size, "edit_types": EDIT_TYPES}
    write_json(out / "suite.json", meta)
    # the mapping file goes last so that a half-written suite is never mistaken for a whole one
    path = out / MAPPING
    write_text(path, json.dumps(mapping))
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
    """A suite image as HxWx3 uint8 (retouch.images' policy: grey, CMYK, 16-bit converted, transparent refused)."""
    return read_rgb(path)


def load_suite(folder: str | Path) -> list[Case]:
    """Read a PIE-Bench-format folder (a Shapes-PIE suite or the real PIE-Bench).  Every case is checked
    here, before any method runs: a ``ValueError`` names the file, the case and the field that is wrong."""
    folder = Path(folder)
    mf = folder / MAPPING
    if not mf.is_file():
        raise FileNotFoundError(f"{folder} is not a PIE-Bench-format suite: {MAPPING} missing")
    try:
        mapping = json.loads(mf.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{mf} is not valid JSON: {e}") from e
    except RecursionError as e:
        raise ValueError(f"{mf} is nested too deeply to be a mapping file") from e
    if not isinstance(mapping, dict):
        raise ValueError(f"{mf} must hold a JSON object keyed by case id, got {type(mapping).__name__}")
    cases = []
    for case_id, r in sorted(mapping.items()):
        try:
            cases.append(_case(folder, case_id, r))
        except KeyError as e:
            raise ValueError(f"{mf}: case {case_id} lacks field {e}") from e
        except (TypeError, ValueError, OverflowError) as e:
            raise ValueError(f"{mf}: case {case_id}: {e}") from e
    return cases


def _text(r: dict, key: str, default: str | None = None) -> str:
    v = r.get(key, default) if default is not None else r[key]
    if not isinstance(v, str):
        raise ValueError(f"field {key!r} must be a string, got {type(v).__name__}")
    return v


def _rel_path(folder: Path, rel: object, key: str) -> Path:
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise ValueError(f"field {key!r} must be a non-empty path string, got {rel!r}")
    p = folder / rel
    if not p.is_file():
        raise ValueError(f"{key} {p} not found")
    return p


def _case(folder: Path, case_id: str, r: object) -> Case:
    if not isinstance(r, dict):
        raise ValueError(f"a case must be a JSON object, got {type(r).__name__}")
    type_id = r["editing_type_id"]
    if isinstance(type_id, bool) or not isinstance(type_id, int | str):
        raise ValueError(f"field 'editing_type_id' must be an integer, got {type_id!r}")
    src_scene, tgt_scene = r.get("source_scene"), r.get("target_scene")
    for key, v in (("source_scene", src_scene), ("target_scene", tgt_scene)):
        if v and not isinstance(v, dict):
            raise ValueError(f"field {key!r} must be a JSON object, got {type(v).__name__}")
    for key in ("source_caption", "target_caption"):
        if r.get(key) is not None and not isinstance(r[key], str):
            raise ValueError(f"field {key!r} must be a string, got {type(r[key]).__name__}")
    return Case(
        id=case_id,
        image_path=_rel_path(folder / IMAGES, r["image_path"], "image_path"),
        original_prompt=_text(r, "original_prompt"),
        editing_prompt=_text(r, "editing_prompt"),
        editing_instruction=_text(r, "editing_instruction", ""),
        editing_type_id=int(type_id),
        blended_word=_text(r, "blended_word", ""),
        rle=check_rle(r["mask"]),
        target_image_path=_rel_path(folder, r["target_image_path"], "target_image_path") if r.get("target_image_path") else None,
        source_scene=Scene.from_dict(src_scene) if src_scene else None,
        target_scene=Scene.from_dict(tgt_scene) if tgt_scene else None,
        source_caption=r.get("source_caption"),
        target_caption=r.get("target_caption"),
    )
