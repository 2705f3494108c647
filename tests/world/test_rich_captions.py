"""The caption reader's training captions: what they say must match their words."""

from __future__ import annotations

import random
import re
from dataclasses import replace

import numpy as np

from retouch.world import rich_captions as rc
from retouch.world.scene import N_SLOTS, OBJECT_ATTRS, Scene, WorldObject, random_scene


def _samples(n: int, seed: int = 0):
    rng = random.Random(seed)
    return [rc.training_caption(rng) for _ in range(n)]


def test_no_fixture_word_in_training_captions():
    for cap, _ in _samples(1500, seed=1):
        low = cap.lower()
        for w in rc.FIXTURE_WORDS:
            assert not re.search(r"\b" + re.escape(w) + r"\b", low), (w, cap)


def test_said_values_are_in_the_words():
    # every colour and shape a caption is said to name is written in it (as one of its synonyms), and what it
    # leaves out is not a value of another object's block by accident
    n_rich = 0
    for cap, said in _samples(600, seed=2):
        if said is None:
            continue
        low = cap.lower()
        slots = [o.slot for o in said.scene.objects]
        assert len(set(slots)) == len(slots) and all(0 <= s < N_SLOTS for s in slots)
        assert set(said.omitted) <= set(slots)
        for o in said.scene.objects:
            omitted = said.omitted.get(o.slot, frozenset())
            assert omitted <= set(OBJECT_ATTRS)
            if "color" not in omitted and o.color:
                assert any(w in low for w in rc.COLOR_WORDS[o.color]), (cap, o)
            if "shape" not in omitted:
                words = (*rc.SHAPE_WORDS[o.shape], o.shape)
                assert any(w in low for w in words), (cap, o)
        n_rich += 1
    assert n_rich > 500


def test_unplaced_objects_take_reading_order():
    # captions that name no place at all put the named objects in places 0, 1, ... in the order they are named
    places = [w for ws in rc.PLACE_WORDS.values() for w in ws] + ["top", "bottom", "left", "right", "above", "below", "under", "beneath"]
    places += ["opposite", "diagonal", "beside", "over"]
    seen = 0
    for cap, said in _samples(1500, seed=3):
        if said is None or any(re.search(r"\b" + re.escape(p) + r"\b", cap.lower()) for p in places):
            continue
        assert [o.slot for o in said.scene.objects] == list(range(len(said.scene.objects))), cap
        # shapes in order of mention (where the shape is said)
        named = [o for o in said.scene.objects if "shape" not in said.omitted.get(o.slot, ())]
        pos = [min(i for w in (*rc.SHAPE_WORDS[o.shape], o.shape) if (i := cap.lower().find(w)) >= 0) for o in named]
        if len({o.shape for o in named}) == len(named):
            assert pos == sorted(pos), cap
        seen += 1
    assert seen > 50


def test_relative_places_resolve_on_the_grid():
    rng = random.Random(0)
    ref = WorldObject("star", "red", "small", "solid", "upright", "moon", slot=0)
    for _ in range(20):
        right, below, diag = (rc._relative(s, ref, "the star", rng) for s in (1, 2, 3))
        assert "the star" in right and "right" in right
        assert any(w in below for w in ("below", "beneath", "under"))
        assert "diagonally" in diag or "opposite" in diag
    assert rc._relative(0, ref, "it", rng) is None  # its own place
    assert "left" in rc._relative(2, replace(ref, slot=3), "it", rng)
    above = rc._relative(1, replace(ref, slot=3), "it", rng)
    assert any(w in above for w in ("above", "over", "on top")), above


def test_short_template_captions_omit_what_they_do_not_say():
    rng = random.Random(5)
    found = 0
    for _ in range(400):
        cap, said = rc.training_caption(rng, p_template=1.0, p_negative=0.0)
        if not said.omitted:  # detailed / varied: every attribute named
            assert " at " in cap or " in " in cap or "top" in cap or "bottom" in cap, cap
            continue
        assert "top" not in cap and "bottom" not in cap, cap
        found += 1
        for o in said.scene.objects:
            assert said.omitted[o.slot] == frozenset({"size", "pattern", "pose", "emblem"})
        assert [o.slot for o in said.scene.objects] == list(range(len(said.scene.objects)))
    assert found > 50


def test_said_targets_uniform_neutral_and_negative():
    from retouch.models.layout import OBJECT_SLICES, SCENE_SLICES
    from retouch.train.caption_reader import said_targets

    scene = Scene((WorldObject("star", "red", "large", "dotted", "upside down", "moon", slot=2),), "sky", "sketch")
    said = rc.Said(scene, {2: frozenset({"size", "emblem"})}, frozenset({"style", "background"}))
    obj, glob = said_targets(said, "uniform")
    assert obj[2, 0] == 1 and obj[[0, 1, 3]].sum() == 0
    np.testing.assert_allclose(obj[2, OBJECT_SLICES["size"]], 1 / 3)
    np.testing.assert_allclose(obj[2, OBJECT_SLICES["emblem"]], 1 / 5)
    assert obj[2, OBJECT_SLICES["color"]].tolist() == [0, 0, 1, 0, 0, 0]  # red
    np.testing.assert_allclose(glob[SCENE_SLICES["background"]], 1 / 6)
    assert glob[SCENE_SLICES["style"]].tolist() == [1, 0, 0, 0, 0, 0]  # no style word reads as flat
    obj, glob = said_targets(said, "neutral")
    assert obj[2, OBJECT_SLICES["size"]].tolist() == [0, 1, 0]  # medium
    np.testing.assert_allclose(obj[2, OBJECT_SLICES["emblem"]], 1 / 5)  # no neutral emblem
    assert glob[SCENE_SLICES["background"]].tolist() == [1, 0, 0, 0, 0, 0]  # plain
    obj, glob = said_targets(None)
    assert obj.sum() == 0
    np.testing.assert_allclose(glob.sum(), 2.0)


def test_generator_is_deterministic_in_its_rng():
    a = [rc.rich_caption(random_scene(random.Random(k)), random.Random(k))[0] for k in range(20)]
    b = [rc.rich_caption(random_scene(random.Random(k)), random.Random(k))[0] for k in range(20)]
    assert a == b and len(set(a)) == 20


def _scene_with(slots: list[int], seed: int) -> list[WorldObject]:
    rng = random.Random(seed)
    base = random_scene(rng)
    while len(base.objects) < len(slots):
        base = random_scene(rng)
    return [replace(o, slot=s) for o, s in zip(base.objects, slots, strict=False)]


def test_structured_kinds_keep_every_place_and_name_gaps():
    # each structure says where every object is (no object falls back to reading order), and an order that meets an
    # empty place before its last object names the gap
    for kind in rc.STRUCTURES:
        for seed in range(40):
            slots = sorted(random.Random(seed).sample(range(N_SLOTS), 1 + seed % (3 if kind == "empty" else 4)))
            if kind in ("shared", "ordered") and len(slots) < 2:
                continue
            objs = _scene_with(slots, seed)
            omit = {o.slot: frozenset() for o in objs}
            body, out = rc._structured_body(objs, omit, random.Random(seed), kind=kind)
            assert sorted(o.slot for o in out) == slots, (kind, body)
            low = body.lower()
            if kind == "ordered" and slots != list(range(len(slots))) and "row" not in low and "along the" not in low:
                assert any(g in low for g in rc.GAP_WORDS), body
            if kind == "empty":
                assert "empty" in low or "nothing" in low or "taken" in low, body
            for o in out:  # nothing left out: every colour is in the words
                assert any(w in low for w in rc.COLOR_WORDS[o.color]), (kind, body, o)


def test_shared_attributes_are_shared_and_said_once_for_all():
    seen = 0
    for seed in range(60):
        objs = _scene_with([0, 1, 3], seed)
        omit = {o.slot: frozenset({"size"}) for o in objs}
        body, out = rc._structured_body(objs, omit, random.Random(seed), kind="shared")
        shared = [a for a in OBJECT_ATTRS if len({getattr(o, a) for o in out}) == 1]
        assert shared, body
        assert any(w in body.lower() for w in ("all", "each", "every", "both", "three")), body
        if "size" in shared and len({o.size for o in objs}) > 1:  # made shared, so said: no longer left out
            assert all("size" not in omit[o.slot] for o in out)
            seen += 1
    assert seen > 0


def test_negated_values_name_the_true_one_last_or_first():
    rng = random.Random(0)
    o = WorldObject("star", "red", "large", "dotted", "upside down", "moon", slot=0)
    for _ in range(30):
        text = rc._negated(o, "pattern", rng)
        assert "dotted" in text and ("not" in text or "rather" in text or "neither" in text), text
