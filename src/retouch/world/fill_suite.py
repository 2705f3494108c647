"""Shapes-world suites for the fill tasks, with exact ground truth (``retouch world bench --task ...``).

- ``erase``: a scene of 2-4 objects; the truth is the same scene without one of them, rendered with the
  same texture seed, so the background under the object is known exactly.  The mask is every pixel the
  removal changes plus the object's footprint, dilated by 1-6 pixels at random (at 128 px; ByteEdit's
  "object masks dilated at random").
- ``inpaint``: the reverse: the input lacks one object of a 2-4 object scene; the mask is that object's
  footprint (plus every pixel it changes, dilated 2 px), the prompt its full description ("a small red
  striped star with a moon emblem, upright") and the truth the whole scene.
- ``outpaint``: the input is a crop of the scene, 16-48 pixels per axis (at most 40 on a side, so every
  slot stays partly in view) taken off at random sides; the truth is the whole scene and the mask the
  pixels the input did not show.

The folder keeps PIE-Bench's layout (``mapping_file.json``, ``annotation_images/``, RLE masks) plus
``target_images/``, and each case carries ``task``, ``prompt``, ``extend`` (outpaint: pixels per side),
``slot`` (the erased or inpainted object's slot) and ``mask_size`` (the mask's (H, W): the target's).
``suite.json`` names the task, so ``load_fill_suite`` (and ``retouch bench``) know the suite's kind.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation

from ..atomic import save_image, sweep_temps, write_json, write_text
from ..images import read_rgb
from .captions import detailed_caption, short_caption
from .edits import MASK_DILATION, describe_new_object, referring_expression
from .render import DEFAULT_SIZE, object_footprint, render
from .scene import POSITIONS, Scene, random_scene
from .suite import IMAGES, MAPPING, TARGETS, check_rle, rle_decode, rle_encode

logger = logging.getLogger(__name__)

FILL_TASKS = ("erase", "inpaint", "outpaint")
GENERATOR = "retouch Shapes-fill"
TYPE_ID = {"erase": 3, "inpaint": 2, "outpaint": 10}  # PIE's delete_object / add_object; outpaint has no PIE type
ERASE_DILATION = (1, 6)  # pixels at 128 px, drawn per case
OUTPAINT_AXIS = (16, 48)  # pixels hidden per axis when that axis is cropped
OUTPAINT_SIDE = 40  # at most this many on one side


@dataclass
class FillCase:
    id: str
    task: str
    image_path: Path
    target_path: Path
    mask: np.ndarray  # (H, W) bool at the target's size, True = to fill
    source_scene: Scene
    target_scene: Scene
    prompt: str | None = None  # inpaint: the object's description
    extend: dict[str, int] | None = None  # outpaint: pixels added per side
    slot: int | None = None  # erase / inpaint: the object's slot

    def load_image(self) -> np.ndarray:
        return read_rgb(self.image_path)

    def load_target(self) -> np.ndarray:
        return read_rgb(self.target_path)


def _scaled(px: int, size: int) -> int:
    return max(1, round(px * size / DEFAULT_SIZE))


def _object_mask(source: Scene, target: Scene, slot: int, size: int, dilation: int) -> np.ndarray:
    a, b = render(source, size), render(target, size)
    m = (a != b).any(axis=2)
    for sc in (source, target):
        o = sc.object_at(slot)
        if o is not None:
            m |= object_footprint(o, size)
    return binary_dilation(m, iterations=dilation)


def sample_case(task: str, rng: random.Random, size: int = DEFAULT_SIZE) -> dict:
    """One case: ``record`` fields plus the ``source`` and ``target`` images (arrays) and the ``mask``."""
    if task not in FILL_TASKS:
        raise ValueError(f"unknown fill task {task!r}; known: {', '.join(FILL_TASKS)}")
    if task == "outpaint":
        scene = random_scene(rng)
        full = render(scene, size)
        ext = {"left": 0, "right": 0, "top": 0, "bottom": 0}
        axes = rng.choice([("x",), ("y",), ("x", "y")])
        for axis in axes:
            total = _scaled(rng.randint(*OUTPAINT_AXIS), size)
            cap = _scaled(OUTPAINT_SIDE, size)
            a = rng.randint(max(0, total - cap), min(total, cap))
            lo, hi = ("left", "right") if axis == "x" else ("top", "bottom")
            ext[lo], ext[hi] = a, total - a
        view = full[ext["top"] : size - ext["bottom"], ext["left"] : size - ext["right"]]
        mask = np.ones((size, size), dtype=bool)
        mask[ext["top"] : size - ext["bottom"], ext["left"] : size - ext["right"]] = False
        return {
            "source": view,
            "target": full,
            "mask": mask,
            "source_scene": scene,
            "target_scene": scene,
            "extend": ext,
            "instruction": "extend the picture: " + ", ".join(f"{v} px on the {k}" for k, v in ext.items() if v),
        }
    full = random_scene(rng, n_objects=rng.randint(2, 4))
    slot = rng.choice([o.slot for o in full.objects])
    obj = full.object_at(slot)
    without = full.without_slot(slot)
    if task == "erase":
        source, target = full, without
        dil = _scaled(rng.randint(*ERASE_DILATION), size)
        instruction = f"remove the {referring_expression(full, slot)}"
        prompt = None
    else:
        source, target = without, full
        dil = _scaled(MASK_DILATION, size)
        prompt = describe_new_object(obj).rstrip(",")
        instruction = f"add {prompt} at the {POSITIONS[slot]}"
    return {
        "source": render(source, size),
        "target": render(target, size),
        "mask": _object_mask(source, target, slot, size, dil),
        "source_scene": source,
        "target_scene": target,
        "slot": slot,
        "prompt": prompt,
        "instruction": instruction,
    }


def write_fill_suite(
    out: str | Path,
    task: str,
    n: int = 500,
    seed: int = 1,
    size: int = DEFAULT_SIZE,
    callback: Callable[[int, int], None] | None = None,
) -> Path:
    """Write an ``n``-case ``task`` suite (erase / inpaint / outpaint) to ``out``; returns the mapping file's path."""
    if task not in FILL_TASKS:
        raise ValueError(f"unknown fill task {task!r}; known: {', '.join(FILL_TASKS)}")
    if n < 1:
        raise ValueError(f"a suite needs at least one case, got n={n}")
    if size % 32 or size < 32:
        raise ValueError(f"--size must be a positive multiple of 32, got {size}")
    out = Path(out)
    if (out / MAPPING).exists():
        raise FileExistsError(f"{out / MAPPING} already exists; choose an empty folder")
    sweep_temps(out)
    rng = random.Random(f"shapes-fill/{task}/{seed}")
    mapping: dict[str, dict] = {}
    for k in range(n):
        c = sample_case(task, rng, size)
        case_id = f"{task}{k:08d}"
        rel = f"{task}/{case_id}.png"
        save_image(c["source"], out / IMAGES / rel, fsync=False)
        save_image(c["target"], out / TARGETS / rel, fsync=False)
        src, tgt = c["source_scene"], c["target_scene"]
        mapping[case_id] = {
            "image_path": rel,
            "original_prompt": detailed_caption(src),
            "editing_prompt": detailed_caption(tgt),
            "editing_instruction": c["instruction"],
            "editing_type_id": str(TYPE_ID[task]),
            "blended_word": "" if task == "outpaint" else (src if task == "erase" else tgt).object_at(c["slot"]).shape,
            "mask": rle_encode(c["mask"]),
            "mask_size": list(c["mask"].shape),
            "target_image_path": f"{TARGETS}/{rel}",
            "source_scene": src.to_dict(),
            "target_scene": tgt.to_dict(),
            "source_caption": detailed_caption(src),
            "target_caption": detailed_caption(tgt),
            "source_short": short_caption(src),
            "target_short": short_caption(tgt),
            "task": task,
            "prompt": c.get("prompt"),
            "extend": c.get("extend"),
            "slot": c.get("slot"),
        }
        if callback:
            callback(k + 1, n)
    write_json(out / "suite.json", {"generator": GENERATOR, "task": task, "n": n, "seed": seed, "size": size})
    path = out / MAPPING  # last: a half-written suite is never mistaken for a whole one
    write_text(path, json.dumps(mapping))
    return path


def suite_task(folder: str | Path) -> str | None:
    """The fill task a suite folder was written for, or None (an edit suite, or PIE-Bench itself)."""
    meta = Path(folder) / "suite.json"
    if not meta.is_file():
        return None
    try:
        task = json.loads(meta.read_text()).get("task")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise ValueError(f"{meta} is not valid suite metadata ({e})") from e
    return task if task in FILL_TASKS else None


def load_fill_suite(folder: str | Path) -> tuple[str, list[FillCase]]:
    """(task, cases) of a fill suite; a ``ValueError`` names the file, the case and the field that is wrong."""
    folder = Path(folder)
    task = suite_task(folder)
    if task is None:
        raise ValueError(f"{folder} is not a fill suite (its suite.json names no task of {', '.join(FILL_TASKS)})")
    mf = folder / MAPPING
    if not mf.is_file():
        raise FileNotFoundError(f"{folder}: {MAPPING} missing (the suite was not finished)")
    try:
        mapping = json.loads(mf.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{mf} is not valid JSON: {e}") from e
    if not isinstance(mapping, dict):
        raise ValueError(f"{mf} must hold a JSON object keyed by case id")
    cases = []
    for cid, r in sorted(mapping.items()):
        try:
            if r.get("task") != task:
                raise ValueError(f"task {r.get('task')!r} in a {task} suite")
            h, w = (int(v) for v in r["mask_size"])
            paths = [folder / IMAGES / r["image_path"], folder / r["target_image_path"]]
            for p in paths:
                if not p.is_file():
                    raise ValueError(f"{p} not found")
            cases.append(
                FillCase(
                    id=cid,
                    task=task,
                    image_path=paths[0],
                    target_path=paths[1],
                    mask=rle_decode(check_rle(r["mask"]), (h, w), border=False),
                    source_scene=Scene.from_dict(r["source_scene"]),
                    target_scene=Scene.from_dict(r["target_scene"]),
                    prompt=r.get("prompt"),
                    extend=r.get("extend"),
                    slot=r.get("slot"),
                )
            )
        except KeyError as e:
            raise ValueError(f"{mf}: case {cid} lacks field {e}") from e
        except (TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{mf}: case {cid}: {e}") from e
    return task, cases
