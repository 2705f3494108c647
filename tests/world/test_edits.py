import random
from dataclasses import fields

import numpy as np
import pytest

from retouch.world.captions import BACKGROUND_PHRASE, STYLE_PHRASE
from retouch.world.edits import EDIT_TYPES, PATTERN_NOUN, TEMPLATES, TYPE_KIND, bracket_diff, sample_edit
from retouch.world.render import render
from retouch.world.scene import OBJECT_ATTRS, WorldObject, random_scene


def _edits(type_id, n, seed):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        e = sample_edit(random_scene(rng), type_id, rng)
        if e is not None:
            out.append(e)
    return out


@pytest.mark.parametrize("type_id", sorted(EDIT_TYPES))
def test_mask_covers_every_changed_pixel(type_id):
    for e in _edits(type_id, 12, 100 + type_id):
        diff = (render(e.source) != render(e.target)).any(-1)
        assert diff.any(), e.instruction  # an edit changes something
        assert not (diff & ~e.mask).any(), e.instruction
        if type_id == 9:
            assert e.mask.all()
        elif type_id != 0:
            assert not e.mask.all()  # a local edit leaves something untouched


def _diff_attrs(a, b):
    """(slot, attribute) pairs that differ between two scenes, plus scene-level fields."""
    out = {k for k in ("background", "style") if getattr(a, k) != getattr(b, k)}
    slots = {o.slot for o in a.objects} | {o.slot for o in b.objects}
    for s in slots:
        oa, ob = a.object_at(s), b.object_at(s)
        if oa is None or ob is None:
            out.add((s, "presence"))
            continue
        out |= {(s, f.name) for f in fields(WorldObject) if getattr(oa, f.name) != getattr(ob, f.name)}
    return out


@pytest.mark.parametrize("type_id", sorted(EDIT_TYPES))
def test_edit_changes_only_what_it_names(type_id):
    for e in _edits(type_id, 25, 200 + type_id):
        named = set()
        for c in e.changes:
            if c.kind in ("background", "style"):
                named.add(c.kind)
            elif c.kind in ("add", "delete"):
                named.add((c.new.slot if c.kind == "add" else c.slot, "presence"))
            else:
                named.add((c.slot, c.kind))
        assert _diff_attrs(e.source, e.target) == named
        assert e.source.seed == e.target.seed
        if type_id == 0:
            assert 2 <= len(e.changes) <= 3
            assert len({c.kind for c in e.changes}) == len(e.changes)
        else:
            assert [c.kind for c in e.changes] == [TYPE_KIND[type_id]]


def test_values_named_in_instruction():
    for type_id in (1, 4, 5, 6, 7, 8, 9):
        for e in _edits(type_id, 10, 300 + type_id):
            (c,) = e.changes
            if c.kind == "style":
                assert STYLE_PHRASE[c.new] in e.instruction
            elif c.kind == "background":
                assert BACKGROUND_PHRASE[c.new] in e.instruction
            elif c.kind == "pattern":
                assert c.new in e.instruction or PATTERN_NOUN[c.new] in e.instruction
            else:
                assert c.new in e.instruction


def test_at_least_six_phrasings_per_type():
    for kind, t in TEMPLATES.items():
        assert len(set(t)) >= 6, kind
    for type_id in sorted(EDIT_TYPES):
        seen = {e.instruction.split(" the ")[0] for e in _edits(type_id, 60, 400 + type_id)}
        assert len(seen) >= 3, type_id  # the phrasings really are used


def test_pie_prompts_bracket_the_change():
    for e in _edits(6, 10, 7):
        src, tgt = e.pie_prompts
        assert "[" in src and "[" in tgt
        assert src.replace("[", "").replace("]", "") == e.source_caption
        assert tgt.replace("[", "").replace("]", "") == e.target_caption
        (c,) = e.changes
        assert f"[{c.new}]" in tgt


def test_bracket_diff_keeps_punctuation_outside():
    a, b = bracket_diff("a red star, upright, at the top", "a red star, upside down, at the top")
    assert a == "a red star, [upright], at the top"
    assert b == "a red star, [upside down], at the top"


def test_blended_word_names_the_object():
    for e in _edits(1, 5, 9):
        (c,) = e.changes
        assert e.blended_word == f"{e.source.object_at(c.slot).shape} {c.new}"


def test_object_attributes_all_edited_somewhere():
    kinds = {TYPE_KIND[t] for t in TYPE_KIND}
    assert {"shape", "color", "pattern", "pose", "emblem"} <= kinds <= set(OBJECT_ATTRS) | {"add", "delete", "background", "style"}


def test_mask_is_local_for_object_edits():
    areas = [e.mask.mean() for e in _edits(6, 10, 5)]
    assert max(areas) < 0.3 and min(areas) > 0.02
    assert np.isfinite(areas).all()


def test_random_edit_names_objects_unambiguously():
    """Each object an instruction names by shape (and colour) is the only such object in source and target."""
    for e in _edits(0, 150, 77):
        for c in e.changes:
            if c.kind in ("add", "background", "style"):
                continue
            o = e.source.object_at(c.slot)
            others = [p for sc in (e.source, e.target) for p in sc.objects if p.slot != c.slot]
            if f"the {o.shape} at the {o.position}" in e.instruction:
                continue
            if f"the {o.color} {o.shape}" in e.instruction:
                assert not any(p.shape == o.shape and p.color == o.color for p in others), e.instruction
            else:
                assert not any(p.shape == o.shape for p in others), e.instruction
