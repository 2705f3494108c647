import random

import numpy as np
import pytest
import torch

from retouch.train.reader import ReaderTrainConfig, degrade
from retouch.world.reader import SceneReader, logits_to_scenes, read_scenes, scene_to_targets, to_tensor
from retouch.world.render import render
from retouch.world.scene import N_SLOTS, OBJECT_ATTRS, SCENE_ATTRS, random_scene


def test_targets_and_logits_round_trip():
    rng = random.Random(0)
    scenes = [random_scene(rng) for _ in range(20)]
    scene_logits = {k: torch.zeros(20, len(v)) for k, v in SCENE_ATTRS.items()}
    slot_logits = {"present": torch.zeros(20, N_SLOTS, 2)} | {k: torch.zeros(20, N_SLOTS, len(v)) for k, v in OBJECT_ATTRS.items()}
    for i, s in enumerate(scenes):
        t = scene_to_targets(s)
        for k in scene_logits:
            scene_logits[k][i, t[k][0]] = 1
        for k in slot_logits:
            for slot, c in enumerate(t[k]):
                if c >= 0:
                    slot_logits[k][i, slot, c] = 1
    for got, s in zip(logits_to_scenes(scene_logits, slot_logits), scenes, strict=True):
        assert got.same_content(s)


@pytest.fixture(scope="module")
def reader():
    return SceneReader.from_pretrained()


def test_shipped_reader_reads_fresh_renders(reader):
    rng = random.Random(31337)  # a seed the training stream never used
    scenes = [random_scene(rng) for _ in range(150)]
    parsed = read_scenes(reader, np.stack([render(s) for s in scenes]))
    exact = np.mean([p.same_content(s) for p, s in zip(parsed, scenes, strict=True)])
    assert exact >= 0.98


def test_shipped_reader_tolerates_light_degradation_and_other_sizes(reader):
    rng = random.Random(4242)
    scenes = [random_scene(rng) for _ in range(60)]
    x = to_tensor(np.stack([render(s) for s in scenes]))
    cfg = ReaderTrainConfig(aug_prob=1.0)
    x = degrade(x, cfg, torch.Generator().manual_seed(0))
    with torch.no_grad():
        parsed = logits_to_scenes(*reader(x))
    assert np.mean([p.same_content(s) for p, s in zip(parsed, scenes, strict=True)]) >= 0.9
    big = read_scenes(reader, np.stack([render(s, 256) for s in scenes[:30]]))
    assert np.mean([p.same_content(s) for p, s in zip(big, scenes[:30], strict=True)]) >= 0.9


def test_reader_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB"):
        to_tensor(np.zeros((128, 128), np.uint8)[None])


def test_missing_reader_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="retouch train"):
        SceneReader.from_pretrained(tmp_path)


def test_doubts_are_settled_by_rendering():
    """Analysis by synthesis picks, among the network's candidates, the value whose render matches."""
    from dataclasses import replace

    from retouch.world.reader import _settle

    rng = random.Random(8)
    for _ in range(10):
        true = random_scene(rng)
        o = true.objects[0]
        wrong_color = next(c for c in OBJECT_ATTRS["color"] if c != o.color)
        wrong_shape = next(c for c in OBJECT_ATTRS["shape"] if c != o.shape)
        guess = true.with_object(replace(o, color=wrong_color, shape=wrong_shape))
        target = render(true).astype(np.float32)
        doubts = [("color", o.slot, [wrong_color, o.color]), ("shape", o.slot, [wrong_shape, o.shape])]
        assert _settle(guess, doubts, target).same_content(true)
