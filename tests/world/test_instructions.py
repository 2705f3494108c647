"""The rule-based instruction reader inverts the world's instruction generator exactly."""

from __future__ import annotations

import random

import pytest

from retouch.world.edits import EDIT_TYPES, sample_edit
from retouch.world.instructions import apply_instruction, parse_instruction
from retouch.world.scene import random_scene


def test_every_generated_instruction_maps_to_its_target():
    rng = random.Random(11)
    n = 0
    for k in range(600):
        scene = random_scene(random.Random(f"instr/{k}"))
        edit = sample_edit(scene, k % len(EDIT_TYPES), rng)
        if edit is None:
            continue
        assert apply_instruction(scene, edit.instruction).same_content(edit.target), edit.instruction
        n += 1
    assert n > 400


def test_unmappable_instructions_are_clear_errors():
    scene = random_scene(random.Random(3))
    with pytest.raises(ValueError, match="empty"):
        parse_instruction(scene, "   ")
    with pytest.raises(ValueError, match="cannot map"):
        parse_instruction(scene, "make it look nicer")
    absent = next(s for s in ("circle", "square", "triangle", "star", "heart", "cross") if all(o.shape != s for o in scene.objects))
    with pytest.raises(ValueError, match=f"no {absent}"):
        parse_instruction(scene, f"remove the {absent}")


def test_detailed_captions_parse_back_and_rewrite():
    from retouch.world.captions import detailed_caption
    from retouch.world.instructions import parse_detailed_caption, rewrite_caption

    rng = random.Random(2)
    for k in range(300):
        scene = random_scene(random.Random(f"cap/{k}"))
        assert parse_detailed_caption(detailed_caption(scene)).same_content(scene)
        edit = sample_edit(scene, k % len(EDIT_TYPES), rng)
        if edit is not None:
            assert rewrite_caption(edit.source_caption, edit.instruction) == edit.target_caption
    with pytest.raises(ValueError, match="not a detailed"):
        parse_detailed_caption("a red star")
