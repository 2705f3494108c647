import random

import numpy as np
import pytest

from retouch.world.render import object_footprint, render
from retouch.world.scene import STYLES, Scene, WorldObject, random_scene


def test_render_is_deterministic_and_sized():
    s = random_scene(random.Random(1))
    a, b = render(s), render(s)
    assert a.shape == (128, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert render(s, 64).shape == (64, 64, 3)
    assert render(s, 256).shape == (256, 256, 3)


@pytest.mark.parametrize("size", [0, 100, 127, -32])
def test_bad_size_is_rejected(size):
    with pytest.raises(ValueError, match="multiple of 32"):
        render(random_scene(random.Random(1)), size)


def test_edges_are_antialiased():
    o = WorldObject("triangle", "blue", "large", "solid", "tilted left", "arrow", 0)
    img = render(Scene((o,), "plain", "flat")).astype(int)
    bg = np.array([242, 242, 236])
    # a hard-edged render would only hold palette colours; anti-aliasing blends them
    distinct = {tuple(p) for p in img.reshape(-1, 3)}
    assert len(distinct) > 40
    assert np.abs(img - bg).sum(-1).max() > 200


@pytest.mark.parametrize("style", STYLES)
def test_objects_stay_inside_their_footprint(style):
    rng = random.Random(3)
    for _ in range(5):
        s = random_scene(rng)
        s = Scene(s.objects, s.background, style, s.seed)
        o = s.objects[0]
        diff = (render(s) != render(s.without_slot(o.slot))).any(-1)
        fp = object_footprint(o, 128)
        if style in ("flat", "grayscale", "sepia"):
            assert not (diff & ~fp).any()
        else:
            # sketch edges, watercolour blur and pixel blocks reach a few pixels further
            from scipy.ndimage import binary_dilation

            assert not (diff & ~binary_dilation(fp, iterations=3)).any()


def test_every_style_looks_different():
    base = random_scene(random.Random(9))
    imgs = {st: render(Scene(base.objects, base.background, st, base.seed)) for st in STYLES}
    for a in STYLES:
        for b in STYLES:
            if a < b:
                assert np.abs(imgs[a].astype(int) - imgs[b].astype(int)).mean() > 3, (a, b)
