"""What a Shapes inpainting model is told (world/fill_prompt.py), checked on fill-suite cases with exact truth."""

from __future__ import annotations

import random

import numpy as np

from retouch.world.fill_prompt import erased_scene, inpainted_scene, slot_shares
from retouch.world.fill_suite import sample_case


def test_slot_shares_find_the_masked_place():
    m = np.zeros((128, 128), bool)
    m[70:120, 80:110] = True  # bottom right
    s = slot_shares(m)
    assert s.argmax() == 3 and abs(s.sum() - 1) < 1e-9
    assert slot_shares(np.zeros((128, 128), bool)).sum() == 0


def test_erase_drops_exactly_the_masked_object():
    rng = random.Random(11)
    for _ in range(30):
        c = sample_case("erase", rng)
        assert erased_scene(c["source_scene"], c["mask"]).same_content(c["target_scene"])


def test_inpaint_puts_the_prompted_object_at_the_masked_place():
    rng = random.Random(12)
    for _ in range(30):
        c = sample_case("inpaint", rng)
        got = inpainted_scene(c["source_scene"], c["mask"], c["prompt"])
        assert got is not None and got.same_content(c["target_scene"])


def test_a_prompt_that_is_not_an_object_is_left_to_the_caption():
    rng = random.Random(13)
    c = sample_case("inpaint", rng)
    assert inpainted_scene(c["source_scene"], c["mask"], "qwxz blorp") is None
