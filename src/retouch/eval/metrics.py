"""Edit-success metrics against exact Shapes-world ground truth."""

from __future__ import annotations

import logging

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
