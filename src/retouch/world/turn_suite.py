"""Multi-turn edit suites in MagicBrush's turn structure, with the world's exact ground truth after every turn.

A suite is a folder with ``edit_sessions.json`` (MagicBrush's file: session id -> list of turns, each
``{"input", "mask", "output", "instruction"}`` with file names under ``images/<session id>/``) and the images:
``<id>-input.png``, then per turn k ``<id>-output{k}.png`` (the exact target render after turn k) and
``<id>-mask{k}.png`` (the exact edit mask of turn k, white = edited).  Turn k's input is turn k-1's output, as
in MagicBrush.  Beyond MagicBrush each turn also holds its ``editing_type_id`` (PIE-Bench's types 1-9), the
scenes before and after, and their detailed captions.  ``suite.json`` records how the suite was made.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import save_image, sweep_temps, write_json, write_text
from .edits import EDIT_TYPES, PIE_COUNTS, Edit, edit_to_dict, sample_edit
from .render import DEFAULT_SIZE
from .scene import Scene, random_scene

logger = logging.getLogger(__name__)

SESSIONS = "edit_sessions.json"
IMAGES = "images"
TURN_TYPES = tuple(t for t in EDIT_TYPES if t != 0)  # one change per turn: PIE-Bench's single-change types


def sample_chain(scene: Scene, turns: int, rng: random.Random, size: int = DEFAULT_SIZE) -> list[Edit]:
    """``turns`` successive single-change edits, each on the previous one's target, types drawn in PIE-Bench's proportions."""
    weights = [PIE_COUNTS[t] for t in TURN_TYPES]
    chain: list[Edit] = []
    cur = scene
    while len(chain) < turns:
        e = sample_edit(cur, rng.choices(TURN_TYPES, weights)[0], rng, size)
        if e is None:
            continue
        chain.append(e)
        cur = e.target
    return chain


def write_turn_suite(
    out: str | Path,
    n: int = 100,
    turns: int = 3,
    seed: int = 1,
    size: int = DEFAULT_SIZE,
    callback: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``n`` edit sessions of ``turns`` turns each to ``out``; returns the sessions file's path."""
    if n < 1:
        raise ValueError(f"a suite needs at least one session, got n={n}")
    if not 1 <= turns <= 20:
        raise ValueError(f"turns must lie in [1, 20], got {turns}")
    out = Path(out)
    if (out / SESSIONS).exists():
        raise FileExistsError(f"{out / SESSIONS} already exists; choose an empty folder")
    sweep_temps(out)
    rng = random.Random(f"shapes-turns/{seed}")
    sessions: dict[str, list[dict]] = {}
    for k in range(n):
        sid = f"{k:06d}"
        chain = sample_chain(random_scene(rng), turns, rng, size)
        folder = out / IMAGES / sid
        save_image(chain[0].render_source(), folder / f"{sid}-input.png", fsync=False)
        recs = []
        for j, e in enumerate(chain, start=1):
            save_image(e.render_target(), folder / f"{sid}-output{j}.png", fsync=False)
            save_image(e.mask.astype(np.uint8) * 255, folder / f"{sid}-mask{j}.png", fsync=False)
            recs.append(
                {
                    "input": f"{sid}-input.png" if j == 1 else f"{sid}-output{j - 1}.png",
                    "mask": f"{sid}-mask{j}.png",
                    "output": f"{sid}-output{j}.png",
                    "instruction": e.instruction,
                    "editing_type_id": str(e.type_id),
                    "source_caption": e.source_caption,
                    "target_caption": e.target_caption,
                    "source_scene": e.source.to_dict(),
                    "target_scene": e.target.to_dict(),
                    "edit": edit_to_dict(e),
                }
            )
        sessions[sid] = recs
        if callback:
            callback(k + 1, n)
    write_json(
        out / "suite.json",
        {"generator": "retouch Shapes-turns (MagicBrush turn structure)", "n": n, "turns": turns, "seed": seed, "size": size},
    )
    path = out / SESSIONS
    write_text(path, json.dumps(sessions))  # last: a half-written suite is never mistaken for a whole one
    return path


@dataclass
class Turn:
    session: str
    index: int  # 1-based
    input_path: Path
    output_path: Path  # the ground truth after this turn
    mask_path: Path
    instruction: str
    editing_type_id: int | None = None
    target_scene: Scene | None = None

    def mask(self) -> np.ndarray:
        with Image.open(self.mask_path) as im:
            return np.asarray(im.convert("L")) > 127


def load_turn_suite(folder: str | Path) -> dict[str, list[Turn]]:
    """Read a MagicBrush-format folder (``edit_sessions.json`` + ``images/<id>/``): session id -> its turns in order.
    A ``ValueError`` names the session and the field that is wrong; a missing image is named too."""
    folder = Path(folder)
    path = folder / SESSIONS
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a multi-turn suite: {SESSIONS} missing")
    try:
        raw = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a JSON object keyed by session id, got {type(raw).__name__}")
    out: dict[str, list[Turn]] = {}
    for sid, turns in sorted(raw.items()):
        if not isinstance(turns, list) or not turns:
            raise ValueError(f"{path}: session {sid} must be a non-empty list of turns")
        got = []
        for j, t in enumerate(turns, start=1):
            try:
                paths = {}
                for key in ("input", "output", "mask"):
                    v = t[key]
                    if not isinstance(v, str) or not v or "/" in v or "\\" in v:
                        raise ValueError(f"field {key!r} must be a file name, got {v!r}")
                    p = folder / IMAGES / sid / v
                    if not p.is_file():
                        raise ValueError(f"{key} {p} not found")
                    paths[key] = p
                if not isinstance(t["instruction"], str):
                    raise ValueError("field 'instruction' must be a string")
                tid = t.get("editing_type_id")
                got.append(
                    Turn(
                        sid,
                        j,
                        paths["input"],
                        paths["output"],
                        paths["mask"],
                        t["instruction"],
                        int(tid) if tid is not None else None,
                        Scene.from_dict(t["target_scene"]) if t.get("target_scene") else None,
                    )
                )
            except (KeyError, TypeError) as e:
                raise ValueError(f"{path}: session {sid} turn {j}: missing or malformed field {e}") from e
            except ValueError as e:
                raise ValueError(f"{path}: session {sid} turn {j}: {e}") from e
        out[sid] = got
    return out


__all__ = ["SESSIONS", "Turn", "load_turn_suite", "sample_chain", "write_turn_suite"]
