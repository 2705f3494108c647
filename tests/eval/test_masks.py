"""Mask scores against known overlaps."""

from __future__ import annotations

import numpy as np
import pytest

from retouch.eval.masks import mask_scores, summarise


def test_scores_of_known_overlaps():
    t = np.zeros((10, 10), bool)
    t[:, :5] = True  # 50 pixels
    p = np.zeros((10, 10), bool)
    p[:, 3:8] = True  # 50 pixels, 20 shared
    s = mask_scores(p, t)
    assert s["iou"] == pytest.approx(20 / 80)
    assert s["precision"] == pytest.approx(20 / 50) and s["recall"] == pytest.approx(20 / 50)
    assert s["miss"] == 0.0 and s["fraction"] == pytest.approx(0.5)
    far = np.zeros((10, 10), bool)
    far[:, 9] = True
    assert mask_scores(far, t)["miss"] == 1.0 and mask_scores(far, t)["iou"] == 0.0
    assert mask_scores(np.zeros_like(t), t) | {} == {"iou": 0.0, "precision": 0.0, "recall": 0.0, "miss": 1.0, "fraction": 0.0}
    assert mask_scores(t, t)["iou"] == 1.0


def test_summary_groups_by_type_and_overall():
    rows = [{"type": 1, "iou": 1.0, "precision": 1.0, "recall": 1.0, "miss": 0.0, "fraction": 0.1}] + [
        {"type": 2, "iou": 0.0, "precision": 0.0, "recall": 0.0, "miss": 1.0, "fraction": 0.0}
    ] * 3
    s = summarise(rows)
    assert s["1"]["n"] == 1 and s["2"]["n"] == 3 and s["all"]["n"] == 4
    assert s["all"]["iou"] == pytest.approx(0.25) and s["2"]["miss"] == 1.0


def test_sizes_must_match():
    with pytest.raises(ValueError, match="differ in size"):
        mask_scores(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
