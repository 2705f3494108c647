"""Edit-success metrics against exact Shapes-world ground truth."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..world.scene import OBJECT_ATTRS, Scene

logger = logging.getLogger(__name__)


def scene_match(pred: Scene, target: Scene) -> dict:
    """Compare a parsed scene with the true one.

    ``exact`` is full equality of everything visible; ``attrs`` holds per-attribute
    accuracy: background, style, ``layout`` (the set of occupied slots) and, for each
    object attribute, the fraction of the target's objects whose slot holds an object
    with that value in the parse.
    """
    attrs: dict[str, float] = {
        "background": float(pred.background == target.background),
        "style": float(pred.style == target.style),
        "layout": float({o.slot for o in pred.objects} == {o.slot for o in target.objects}),
    }
    for k in OBJECT_ATTRS:
        hits = [(p is not None and getattr(p, k) == getattr(o, k)) for o in target.objects for p in [pred.object_at(o.slot)]]
        attrs[k] = sum(hits) / len(hits) if hits else 1.0
    return {"exact": pred.same_content(target), "attrs": attrs}


def score_images(folder: str | Path, against: str | Path, reader: str | Path | None = None) -> dict:
    """Parse ``folder/{index:05d}.png`` for every line of ``against`` (JSON lines with a ``scene``)
    and compare each parse with its scene: ``n``, ``exact_scene``, ``attr_accuracy`` and ``acc_*``."""
    from ..world.reader import SceneReader, read_scenes
    from ..world.suite import load_rgb

    folder, against = Path(folder), Path(against)
    if not against.is_file():
        raise FileNotFoundError(f"captions file {against} not found")
    scenes = []
    for i, line in enumerate(against.read_text().splitlines()):
        if line.strip():
            try:
                scenes.append(Scene.from_dict(json.loads(line)["scene"]))
            except (json.JSONDecodeError, KeyError) as e:
                raise ValueError(f"{against}:{i + 1}: not a captions line with a 'scene' ({e})") from e
    paths = [folder / f"{i:05d}.png" for i in range(len(scenes))]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {len(missing)} of {len(paths)} images, e.g. {missing[:3]}")
    model = SceneReader.from_pretrained(reader) if reader else SceneReader.from_pretrained()
    matches, preds = [], []
    for i in range(0, len(paths), 64):
        imgs = [load_rgb(p) for p in paths[i : i + 64]]
        for p, s in zip(read_scenes(model, imgs), scenes[i : i + 64], strict=True):
            matches.append(scene_match(p, s))
            preds.append(p)
    return {"n": len(matches)} | summarise_matches(matches) | detection_stats(preds, scenes)


def detection_stats(preds: list[Scene], targets: list[Scene]) -> dict:
    """``detected``: the share of target objects whose slot holds a parsed object; ``acc_detected_*``: each object
    attribute's accuracy over those objects only. ``acc_*`` count a missing object as wrong, so their chance level
    is below 1 / (number of values); these figures separate "drawn wrong" from "not drawn at all"."""
    n = found = 0
    hits = dict.fromkeys(OBJECT_ATTRS, 0)
    for pred, target in zip(preds, targets, strict=True):
        for o in target.objects:
            n += 1
            p = pred.object_at(o.slot)
            if p is None:
                continue
            found += 1
            for k in OBJECT_ATTRS:
                hits[k] += getattr(p, k) == getattr(o, k)
    out: dict = {"detected": found / n if n else None}
    return out | {f"acc_detected_{k}": (v / found if found else None) for k, v in hits.items()}


def summarise_matches(matches: list[dict]) -> dict:
    """``exact_scene``, ``attr_accuracy`` (mean of the per-attribute figures) and ``acc_*`` over ``scene_match`` results."""
    keys = list(matches[0]["attrs"]) if matches else []
    per = {k: float(np.mean([m["attrs"][k] for m in matches])) for k in keys}
    out: dict = {"exact_scene": float(np.mean([m["exact"] for m in matches])) if matches else None}
    out["attr_accuracy"] = float(np.mean(list(per.values()))) if per else None
    return out | {f"acc_{k}": v for k, v in per.items()}
