"""Edit-mask quality against ground-truth masks: IoU, precision, recall, and whether a mask misses the edit entirely."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np


def mask_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Scores of a predicted boolean mask against the true one (same HxW).

    ``iou``: |P & T| / |P | T| (1 when both are empty); ``precision``: |P & T| / |P| (0 for an empty prediction);
    ``recall``: |P & T| / |T|; ``miss``: 1 when the prediction shares no pixel with a non-empty truth.
    """
    p, t = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"predicted mask {p.shape} and true mask {t.shape} differ in size")
    inter, union = float((p & t).sum()), float((p | t).sum())
    n_p, n_t = float(p.sum()), float(t.sum())
    return {
        "iou": inter / union if union else 1.0,
        "precision": inter / n_p if n_p else 0.0,
        "recall": inter / n_t if n_t else 1.0,
        "miss": float(n_t > 0 and inter == 0),
        "fraction": n_p / p.size,
    }


KEYS = ("iou", "precision", "recall", "miss", "fraction")


def summarise(rows: Iterable[dict], by: str = "type") -> dict[str, dict[str, float]]:
    """Means of ``KEYS`` per value of ``rows[i][by]`` and over all rows (key ``"all"``), with ``n``."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[str(r[by])].append(r)
        groups["all"].append(r)
    return {g: {"n": len(rs)} | {k: float(np.mean([r[k] for r in rs])) for k in KEYS} for g, rs in sorted(groups.items())}


__all__ = ["KEYS", "mask_scores", "summarise"]
