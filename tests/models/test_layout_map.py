"""The Shapes model's layout map: exact features of a scene, painted over the right cells, carried by the conditioning."""

from __future__ import annotations

import json
import random

import pytest
import torch

from retouch.models.backbone import TextConditioning, UNetDenoiser
from retouch.models.layout import (
    LAYOUT_CHANNELS,
    OBJECT_DIM,
    OBJECT_SLICES,
    SCENE_DIM,
    check_layout_config,
    layout_config,
    paint_layout,
    place_index,
    reading_of_scenes,
    scene_of_reading,
)
from retouch.world.scene import COLORS, N_SLOTS, SHAPES, random_scene


def test_scene_round_trips_through_its_reading():
    rng = random.Random(7)
    scenes = [random_scene(rng) for _ in range(50)]
    reading = reading_of_scenes(scenes)
    assert reading.objects.shape == (50, N_SLOTS, OBJECT_DIM) and reading.scene.shape == (50, SCENE_DIM)
    for i, s in enumerate(scenes):
        assert scene_of_reading(reading, i, seed=s.seed) == s


def test_paint_puts_each_place_on_its_own_cells():
    rng = random.Random(3)
    scene = random_scene(rng, n_objects=4)
    m = paint_layout(reading_of_scenes([scene]), 16, 16)  # (1, 43, 16, 16)
    assert m.shape == (1, LAYOUT_CHANNELS, 16, 16)
    shape_sl, color_sl = OBJECT_SLICES["shape"], OBJECT_SLICES["color"]
    for o in scene.objects:
        r, c = divmod(o.slot, 2)
        cell = m[0, :, r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8]  # (43, 8, 8): the place's cells
        assert torch.all(cell[0] == 1)
        assert torch.all(cell[shape_sl].argmax(0) == SHAPES.index(o.shape))
        assert torch.all(cell[color_sl].argmax(0) == list(COLORS).index(o.color))
    # coordinates run across each place, centred on it
    slot, coords = place_index(16, 16)
    assert slot[0, 0] == 0 and slot[0, 15] == 1 and slot[15, 0] == 2 and slot[15, 15] == 3
    torch.testing.assert_close(coords[:, :8, :8].mean(dim=(1, 2)), torch.zeros(2))
    assert coords[0, 0, 0] < 0 < coords[0, 0, 7] and coords[1, 0, 0] < 0 < coords[1, 7, 0]
    with pytest.raises(ValueError, match="does not split"):
        place_index(15, 16)


def test_empty_place_has_no_object_features():
    scene = random_scene(random.Random(1), n_objects=1)
    m = paint_layout(reading_of_scenes([scene]), 8, 8)
    empty = next(s for s in range(N_SLOTS) if scene.object_at(s) is None)
    r, c = divmod(empty, 2)
    assert torch.all(m[0, :OBJECT_DIM, r * 4 : (r + 1) * 4, c * 4 : (c + 1) * 4] == 0)


def test_conditioning_carries_the_layout_through_its_operations():
    a = TextConditioning(torch.randn(2, 5, 8), layout=torch.randn(2, 3, 4, 4))
    b = TextConditioning(torch.randn(2, 5, 8), layout=torch.randn(2, 3, 4, 4))
    torch.testing.assert_close(a.lerp(b, 0.25).layout, 0.75 * a.layout + 0.25 * b.layout)
    assert a.select(1).layout.shape == (1, 3, 4, 4) and torch.equal(a.select(1).layout[0], a.layout[1])
    assert a.repeat(3).layout.shape == (6, 3, 4, 4) and torch.equal(a.repeat(2).layout[2], a.layout[0])
    assert a.cat(b).layout.shape == (4, 3, 4, 4)
    assert torch.count_nonzero(a.zeros_like().layout) == 0
    with pytest.raises(ValueError, match="layout"):
        a.cat(TextConditioning(torch.randn(1, 5, 8)))
    with pytest.raises(ValueError, match="layout"):
        a.lerp(TextConditioning(torch.randn(2, 5, 8)), 0.5)


def test_unet_denoiser_reads_the_layout_as_extra_channels():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4 + 3, out_channels=4, block_out_channels=(32, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, attention_head_dim=2, norm_num_groups=8,
    ).eval()
    den = UNetDenoiser(unet, "v_prediction", torch.linspace(0.99, 0.01, 1000))
    x, tok = torch.randn(1, 4, 8, 8), torch.randn(1, 5, 8)
    lay = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        out = den(x, 500, TextConditioning(tok, layout=lay))
        ref = unet(torch.cat([x, lay], 1), torch.tensor([500]), encoder_hidden_states=tok).sample
        other = den(x, 500, TextConditioning(tok, layout=-lay))
    torch.testing.assert_close(out, ref)
    assert not torch.allclose(out, other)


def test_layout_config_is_checked(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(layout_config()))
    assert check_layout_config(tmp_path)["channels"] == LAYOUT_CHANNELS
    bad = layout_config() | {"channels": 40}
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="channels"):
        check_layout_config(tmp_path)


def test_snapped_reading_makes_decided_blocks_one_hot_and_keeps_the_rest():
    import torch

    from retouch.models.layout import OBJECT_SLICES, SCENE_SLICES, LayoutReading, reading_of_scenes
    from retouch.world.scene import random_scene

    exact = reading_of_scenes([random_scene(__import__("random").Random(k)) for k in range(6)])
    same = exact.snapped()
    assert torch.equal(same.objects, exact.objects) and torch.equal(same.scene, exact.scene)
    # soften: every block mixed with uniform, one place half occupied, one object's shape undecided
    obj, glob = exact.objects.clone(), exact.scene.clone()
    for sl in OBJECT_SLICES.values():
        if sl.start > 0:
            obj[..., sl] = 0.7 * obj[..., sl] + 0.3 * obj[..., :1] / (sl.stop - sl.start)
    for sl in SCENE_SLICES.values():
        glob[..., sl] = 0.8 * glob[..., sl] + 0.2 / (sl.stop - sl.start)
    obj = obj * 0.9
    slot = int(exact.objects[0, :, 0].argmax())
    shape = OBJECT_SLICES["shape"]
    obj[0, slot, shape] = 0.9 / (shape.stop - shape.start)  # a left-out shape: uniform
    obj[1, :, 0] = torch.where(exact.objects[1, :, 0] > 0, torch.full_like(obj[1, :, 0], 0.5), obj[1, :, 0])
    snapped = LayoutReading(obj, glob).snapped()
    assert torch.equal(snapped.scene, exact.scene)
    for i in (2, 3, 4, 5):
        assert torch.equal(snapped.objects[i], exact.objects[i])
    assert torch.allclose(snapped.objects[0, slot, shape], obj[0, slot, shape])  # undecided: as read
    rest = [sl for name, sl in OBJECT_SLICES.items() if name not in ("occupied", "shape")]
    assert all(torch.equal(snapped.objects[0, slot, sl], exact.objects[0, slot, sl]) for sl in rest)
    assert torch.allclose(snapped.objects[1], obj[1])  # half-occupied places: as read
