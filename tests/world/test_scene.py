import random

import pytest

from retouch.world.scene import N_SLOTS, Scene, WorldObject, random_scene


def test_json_round_trip_many_scenes():
    rng = random.Random(11)
    for _ in range(200):
        s = random_scene(rng)
        assert Scene.from_json(s.to_json()) == s
        assert 1 <= len(s.objects) <= N_SLOTS


def test_random_scene_is_deterministic_in_its_seed():
    assert random_scene(random.Random(5)) == random_scene(random.Random(5))
    assert random_scene(random.Random(5)) != random_scene(random.Random(6))


def test_object_order_does_not_matter():
    a = WorldObject("star", "red", "small", "solid", "upright", "moon", 0)
    b = WorldObject("heart", "blue", "large", "dotted", "upside down", "bolt", 3)
    assert Scene((a, b), "sky", "flat") == Scene((b, a), "sky", "flat")


@pytest.mark.parametrize(
    "kw, word",
    [
        ({"shape": "blob"}, "shape"),
        ({"color": "teal"}, "color"),
        ({"slot": 7}, "slot"),
    ],
)
def test_bad_values_name_the_field(kw, word):
    base = dict(shape="star", color="red", size="small", pattern="solid", pose="upright", emblem="moon", slot=0)
    with pytest.raises(ValueError, match=word):
        WorldObject(**(base | kw))


def test_two_objects_in_one_slot_rejected():
    a = WorldObject("star", "red", "small", "solid", "upright", "moon", 1)
    with pytest.raises(ValueError, match="share a slot"):
        Scene((a, a), "sky", "flat")


def test_from_dict_rejects_garbage():
    with pytest.raises(ValueError, match="not a Shapes-world scene"):
        Scene.from_dict({"objects": [{"shape": "star"}], "background": "sky", "style": "flat"})
