"""ByteEdit's training mask mix (train/fill_masks.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from retouch.train.fill_masks import MASK_KINDS, sample_mask
from retouch.world.render import object_footprint
from retouch.world.scene import random_scene


@pytest.mark.parametrize("kind", sorted(MASK_KINDS))
def test_each_kind_gives_a_nonempty_boolean_mask(kind):
    rng = random.Random(3)
    for _ in range(20):
        scene = random_scene(rng)
        m = MASK_KINDS[kind](rng, 128, scene)
        assert m.shape == (128, 128) and m.dtype == bool and m.any()
        if kind == "outward":
            assert not m.all() and m[0].any() | m[-1].any() | m[:, 0].any() | m[:, -1].any()
        if kind == "whole":
            assert m.all()


def test_object_masks_hold_a_whole_object():
    rng = random.Random(5)
    for _ in range(20):
        scene = random_scene(rng, n_objects=3)
        m = MASK_KINDS["object"](rng, 128, scene)
        assert any((object_footprint(o, 128) & ~m).sum() == 0 for o in scene.objects)


def test_the_mix_follows_its_weights_and_refuses_unknown_kinds():
    rng = random.Random(0)
    scene = random_scene(rng)
    kinds = [sample_mask(rng, 64, scene, {"box": 3.0, "whole": 1.0, "brush": 0.0})[0] for _ in range(400)]
    assert set(kinds) == {"box", "whole"} and 0.65 < kinds.count("box") / 400 < 0.85
    with pytest.raises(ValueError, match="unknown mask kinds"):
        sample_mask(rng, 64, scene, {"lasso": 1.0})
    with pytest.raises(ValueError, match="no kind"):
        sample_mask(rng, 64, scene, {"box": 0.0})
    assert np.asarray(sample_mask(rng, 64, scene, {"box": 1.0})[1]).shape == (64, 64)
