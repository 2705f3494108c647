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
    places += ["opposite", "diagonal", "beside", "over"] + [n for ns in rc.LIST_ORDERS.values() for n in ns]
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


def test_lists_and_empty_places_say_exactly_where_the_objects_are():
    """A caption that lists the four places in order, or says which places are empty, puts every object in its own
    place (no reading-order default is needed), and a denied value is never the one said."""
    leads = [n for ns in rc.LIST_ORDERS.values() for n in ns]
    empties = re.compile(
        r"is empty|are empty|holds nothing|nothing (in|at) the|: nothing|: empty|left blank|no object at|is filled|empty place|empty$"
    )
    n_list = n_empty = n_neg = 0
    for k in range(3000):
        rng = random.Random(f"said/{k}")
        scene = random_scene(rng)
        cap, said = rc.rich_caption(scene, rng, typos=0.0)
        low = cap.lower().rstrip(".!")
        is_list = any(lead in low for lead in leads)
        if is_list or empties.search(low):
            n_list += is_list
            n_empty += not is_list
            assert sorted(o.slot for o in said.scene.objects) == sorted(o.slot for o in scene.objects), cap
        for m in re.finditer(r"\bnot ([a-z-]+) but ([a-z-]+)", low):
            n_neg += 1
            assert m.group(1) != m.group(2), cap
    assert n_list > 50 and n_empty > 50 and n_neg > 20


def test_a_shared_pair_says_its_shared_values_for_both():
    """ "two stars, both dotted and upside down: ..." says dotted and upside down of both objects (not omitted)."""
    seen = 0
    for k in range(3000):
        rng = random.Random(f"pair/{k}")
        cap, said = rc.rich_caption(random_scene(rng), rng, typos=0.0)
        m = re.search(r"(two|a pair of) ([a-z]+), (both|each) ([^:;-]+?)(: | - |, )", cap.lower())
        if m is None or said is None:
            continue
        seen += 1
        for o in said.scene.objects:
            assert said.omitted.get(o.slot, frozenset()) <= set(OBJECT_ATTRS)
        if m.group(2) in rc.SHAPE_PLURAL.values():
            shape = next(s for s, pl in rc.SHAPE_PLURAL.items() if pl == m.group(2))
            assert sum(o.shape == shape for o in said.scene.objects) >= 2, cap
    assert seen > 30
