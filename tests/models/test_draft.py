"""The draft network: a layout reading drawn in pixels, one shared decoder per place."""

from __future__ import annotations

import json

import pytest
import torch

from retouch.models.draft import DraftConfig, DraftNet
from retouch.models.layout import reading_of_scenes
from retouch.world.scene import Scene, WorldObject

TINY = DraftConfig(widths=(16, 16, 8, 8), embed=32, seam=8)


def _scene(color: str = "red", slot: int = 0) -> Scene:
    obj = WorldObject("star", color, "large", "striped", "upright", "moon", slot)
    other = WorldObject("circle", "blue", "small", "solid", "upright", "bolt", 3)
    return Scene(objects=(obj, other), background="sky", style="flat", seed=1)


def _net() -> DraftNet:
    torch.manual_seed(0)
    net = DraftNet(TINY).eval()
    with torch.no_grad():  # the seam stage starts as the identity; give it weight so the test sees its reach
        net.seam_out.weight.normal_(0, 0.1)
    return net


def test_draft_is_an_image_and_each_place_is_drawn_from_its_own_reading():
    net = _net()
    a, b = net.draw(reading_of_scenes([_scene("red")])), net.draw(reading_of_scenes([_scene("green")]))
    assert a.shape == (1, 3, 128, 128) and a.min() >= -1 and a.max() <= 1
    # the top-left object changed: its place changed, and the places away from it did not (the seam stage's two
    # 3 x 3 convolutions reach 2 pixels over a border)
    assert not torch.allclose(a[..., :64, :64], b[..., :64, :64])
    torch.testing.assert_close(a[..., 66:, 66:], b[..., 66:, 66:])
    torch.testing.assert_close(a[..., 66:, :62], b[..., 66:, :62])


def test_scene_attributes_reach_every_place():
    net = _net()
    s = _scene()
    night = Scene(objects=s.objects, background="night", style="flat", seed=1)
    a, b = net.draw(reading_of_scenes([s])), net.draw(reading_of_scenes([night]))
    assert not torch.allclose(a[..., 66:, :62], b[..., 66:, :62])  # an empty place still shows the background


def test_save_load_round_trip_and_clear_errors(tmp_path):
    net = _net()
    net.save_pretrained(tmp_path / "d", half=False)
    back = DraftNet.from_pretrained(tmp_path / "d")
    r = reading_of_scenes([_scene()])
    torch.testing.assert_close(net.draw(r), back.draw(r))
    with pytest.raises(FileNotFoundError, match="no draft network"):
        DraftNet.from_pretrained(tmp_path / "missing")
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    (tmp_path / "d" / "config.json").write_text(json.dumps(cfg | {"model_type": "retouch-scene-reader"}))
    with pytest.raises(ValueError, match="not a draft network config"):
        DraftNet.from_pretrained(tmp_path / "d")
    (tmp_path / "d" / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "d" / "model.safetensors").write_bytes(b"torn")
    with pytest.raises(ValueError, match="not a draft network's weights"):
        DraftNet.from_pretrained(tmp_path / "d")
    with pytest.raises(ValueError, match="base 8 doubled 2 times"):
        DraftNet(DraftConfig(widths=(8, 8, 8)))
