"""Fill suites: the truth is the world's own render of the truth scene, and the mask is exactly what the task hides."""

from __future__ import annotations

import numpy as np
import pytest

from retouch.world import render
from retouch.world.fill_suite import load_fill_suite, suite_task, write_fill_suite
from retouch.world.render import object_footprint


@pytest.fixture(scope="module")
def suites(tmp_path_factory):
    root = tmp_path_factory.mktemp("fill-suites")
    for task in ("erase", "inpaint", "outpaint"):
        write_fill_suite(root / task, task, n=8, seed=3)
    return root


def test_erase_truth_is_the_scene_without_the_object(suites):
    task, cases = load_fill_suite(suites / "erase")
    assert task == "erase" and len(cases) == 8
    dilations = set()
    for c in cases:
        src, truth = c.load_image(), c.load_target()
        obj = c.source_scene.object_at(c.slot)
        assert obj is not None and c.target_scene.object_at(c.slot) is None
        assert c.target_scene == c.source_scene.without_slot(c.slot)
        assert np.array_equal(truth, render(c.target_scene)) and np.array_equal(src, render(c.source_scene))
        fp = object_footprint(obj, 128)
        assert c.mask[fp].all()  # the whole object is masked
        assert np.array_equal(src[~c.mask], truth[~c.mask])  # and nothing outside the mask differs
        dilations.add(int(c.mask.sum() - fp.sum()))
    assert len(dilations) > 1  # the dilation is drawn per case


def test_inpaint_prompt_describes_the_missing_object(suites):
    _, cases = load_fill_suite(suites / "inpaint")
    for c in cases:
        obj = c.target_scene.object_at(c.slot)
        assert c.source_scene.object_at(c.slot) is None and c.source_scene == c.target_scene.without_slot(c.slot)
        for value in (obj.size, obj.color, obj.pattern, obj.shape, obj.emblem, obj.pose):
            assert value in c.prompt
        assert c.mask[object_footprint(obj, 128)].all()
        assert np.array_equal(c.load_image()[~c.mask], c.load_target()[~c.mask])


def test_outpaint_input_is_a_crop_and_the_mask_what_it_hides(suites):
    _, cases = load_fill_suite(suites / "outpaint")
    for c in cases:
        e = c.extend
        truth = c.load_target()
        view = c.load_image()
        assert np.array_equal(view, truth[e["top"] : 128 - e["bottom"], e["left"] : 128 - e["right"]])
        hidden = np.ones((128, 128), bool)
        hidden[e["top"] : 128 - e["bottom"], e["left"] : 128 - e["right"]] = False
        assert np.array_equal(c.mask, hidden) and c.mask.any()
        assert max(e.values()) <= 40  # every slot stays partly in view
        assert c.source_scene == c.target_scene


def test_suites_are_deterministic_and_named(suites, tmp_path):
    write_fill_suite(tmp_path / "again", "erase", n=8, seed=3)
    assert (tmp_path / "again" / "mapping_file.json").read_bytes() == (suites / "erase" / "mapping_file.json").read_bytes()
    assert suite_task(suites / "inpaint") == "inpaint"
    with pytest.raises(FileExistsError):
        write_fill_suite(suites / "erase", "erase", n=2)
    with pytest.raises(ValueError, match="unknown fill task"):
        write_fill_suite(tmp_path / "x", "recolour", n=2)
