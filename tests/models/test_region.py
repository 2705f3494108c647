"""The region predictor (eq. 1-3): shapes, the instruction's effect, padding, masks, files, and the frozen encoders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from retouch.models.region import ClipFeatures, RegionPredictor, RegionPredictorConfig, region_mask

CFG = RegionPredictorConfig(image_dim=32, text_dim=24, grid=(4, 4), heads=2)


def _inputs(b: int = 2, length: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 16, 32, generator=g), torch.randn(b, length, 24, generator=g), torch.ones(b, length, dtype=torch.bool)


@pytest.fixture(scope="module")
def model() -> RegionPredictor:
    torch.manual_seed(0)
    return RegionPredictor(CFG).eval()


def test_one_probability_per_patch_that_depends_on_the_instruction(model):
    p, t, m = _inputs()
    out = model(p, t, m)
    assert out.prob.shape == (2, 16) and out.fused.shape == (2, 16, 32) and out.grid_prob().shape == (2, 1, 4, 4)
    assert ((out.prob > 0) & (out.prob < 1)).all()
    other = model(p, torch.randn_like(t), m)
    assert not torch.allclose(out.prob, other.prob)  # the instruction moves the region


def test_padding_tokens_are_ignored(model):
    p, t, m = _inputs()
    padded_t = torch.cat([t, torch.randn(2, 3, 24)], 1)  # junk behind the mask must not matter
    padded_m = torch.cat([m, torch.zeros(2, 3, dtype=torch.bool)], 1)
    assert torch.allclose(model(p, t, m).prob, model(p, padded_t, padded_m).prob, atol=1e-6)


def test_the_mask_is_the_thresholded_grid_at_image_size(model):
    prob = torch.tensor([[0.9, 0.1], [0.2, 0.6]]).view(1, 1, 2, 2)
    m = region_mask(prob, (4, 6), threshold=0.5)
    assert m.shape == (1, 4, 6) and m.dtype == bool
    assert m[0, :2, :3].all() and not m[0, :2, 3:].any() and not m[0, 2:, :3].any() and m[0, 2:, 3:].all()
    out = model(*_inputs())
    assert model.mask(out, (20, 20)).shape == (2, 20, 20)


def test_save_and_load_round_trip(model, tmp_path: Path):
    folder = model.save_pretrained(tmp_path / "pred")
    again = RegionPredictor.from_pretrained(folder)
    assert again.config == CFG
    p, t, m = _inputs()
    assert torch.allclose(again(p, t, m).prob, model(p, t, m).prob, atol=2e-3)  # stored in fp16
    assert (folder / "model.safetensors").stat().st_size < 100_000


def test_bad_folders_and_inputs_are_clear_errors(model, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="not a region predictor folder"):
        RegionPredictor.from_pretrained(tmp_path / "nothing")
    folder = model.save_pretrained(tmp_path / "p2")
    (folder / "config.json").write_text(json.dumps({"model_type": "other"}))
    with pytest.raises(ValueError, match="model_type"):
        RegionPredictor.from_pretrained(folder)
    p, t, m = _inputs()
    with pytest.raises(ValueError, match="patch features must be"):
        model(p[:, :5], t, m)
    with pytest.raises(ValueError, match="token states must be"):
        model(p, t[..., :5], m)


def test_clip_features_are_differentiable_and_match_the_no_grad_path(tmp_path: Path):
    from tests.eval.test_clip import _write_tiny_clip

    _write_tiny_clip(tmp_path / "clip")
    clip = ClipFeatures.load(tmp_path / "clip")
    assert clip.grid == (4, 4) and clip.width == 32
    imgs = np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    e, p = clip.encode_images(imgs)
    assert e.shape == (2, 16) and p.shape == (2, 16, 32)
    assert torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-5)
    x = clip.pixels(imgs).requires_grad_(True)
    e2, p2 = clip.encode(x)
    assert torch.allclose(e2, e, atol=1e-5)
    (e2.sum() + p2.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert clip.embed_texts(["abc", "de"]).shape == (2, 16)


def test_bilinear_masks_round_the_grid_and_unknown_modes_are_refused():
    prob = torch.tensor([[0.9, 0.1], [0.1, 0.1]]).view(1, 1, 2, 2)
    near = region_mask(prob, (8, 8), threshold=0.5)
    smooth = region_mask(prob, (8, 8), threshold=0.5, mode="bilinear")
    assert near[0, :4, :4].all() and near.sum() == 16
    assert smooth[0, 0, 0] and not smooth[0, 3, 3] and 0 < smooth.sum() < 16  # the corner of the block is cut
    with pytest.raises(ValueError, match="mode must be one of"):
        region_mask(prob, (8, 8), 0.5, mode="cubic")
    with pytest.raises(ValueError, match="upsample must be one of"):
        RegionPredictor(RegionPredictorConfig(image_dim=32, text_dim=24, grid=(4, 4), heads=2, upsample="cubic"))


def test_a_refined_predictor_reads_the_image_and_starts_from_the_bilinear_grid(tmp_path: Path):
    import torch.nn.functional as F

    cfg = RegionPredictorConfig(image_dim=32, text_dim=24, grid=(4, 4), heads=2, refine=16, refine_width=8)
    torch.manual_seed(0)
    model = RegionPredictor(cfg).eval()
    p, t, m = _inputs()
    img = torch.rand(2, 3, 40, 40)
    out = model(p, t, m, image=img)
    assert out.fine.shape == (2, 1, 16, 16) and out.mask_prob() is out.fine
    logit = torch.logit(out.grid_prob())
    assert torch.allclose(out.fine, torch.sigmoid(F.interpolate(logit, size=(16, 16), mode="bilinear", align_corners=False)), atol=1e-5)
    assert model.mask(out, (40, 40)).shape == (2, 40, 40) and model.upsample_mode == "bilinear"
    with pytest.raises(ValueError, match="pass image="):
        model(p, t, m)
    with torch.no_grad():
        model.refine.out[-1].weight.normal_()
    moved = model(p, t, m, image=img).fine
    assert not torch.allclose(moved, model(p, t, m, image=1 - img).fine)  # the refined map follows the image
    again = RegionPredictor.from_pretrained(model.save_pretrained(tmp_path / "fine"))
    assert again.config == cfg and torch.allclose(again(p, t, m, image=img).fine, moved, atol=5e-3)


def test_grid_mixer_and_layers_build_change_the_output_and_round_trip(tmp_path: Path):
    """config.mixer / layers: the extra blocks exist, each takes part in the answer, and the folder round-trips."""
    cfg = RegionPredictorConfig(image_dim=32, text_dim=24, grid=(4, 4), heads=2, mixer=1, layers=2)
    torch.manual_seed(0)
    model = RegionPredictor(cfg).eval()
    assert not model.reads_image and len(model.mixer) == 1 and len(model.more) == 1
    p, t, m = _inputs()
    base = model(p, t, m).prob
    assert base.shape == (2, 16)
    for block in (model.mixer[0].mlp[-1], model.more[0].linear2):
        with torch.no_grad():
            saved = block.weight.clone()
            block.weight.mul_(3.0)
        assert not torch.allclose(base, model(p, t, m).prob)
        with torch.no_grad():
            block.weight.copy_(saved)
    again = RegionPredictor.from_pretrained(model.save_pretrained(tmp_path / "mixed"))
    assert again.config == cfg
    assert torch.allclose(again(p, t, m).prob, base, atol=5e-3)


def test_the_reader_encoder_is_the_scene_reader_with_batchnorm_folded_and_stays_frozen(tmp_path: Path):
    from retouch.world.reader import SceneReader, SceneReaderConfig

    torch.manual_seed(0)
    reader = SceneReader(SceneReaderConfig(width=4, ctx=8, hidden=16))
    for m in reader.slot.modules():  # non-trivial running statistics, so the fold is tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    reader.eval()
    cfg = RegionPredictorConfig(image_dim=32, text_dim=24, grid=(4, 4), heads=2, reader=4)
    model = RegionPredictor(cfg)
    model.reader.load_scene_reader(reader)
    img = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = reader.slot[:-1]((img - 0.5) / 0.25).flatten(2).transpose(1, 2)  # (2, 16, 16)
    assert torch.allclose(model.reader(img), want, atol=1e-5)
    assert not any(p.requires_grad for p in model.reader.parameters())
    p, t, m = _inputs()
    model(p, t, m, image=img).prob.sum().backward()
    assert model.reader_proj[1].weight.grad is not None and model.reader.net[0].weight.grad is None
    again = RegionPredictor.from_pretrained(model.save_pretrained(tmp_path / "read"))
    assert torch.allclose(again.reader(img), want, atol=0.05)  # fp16 weights on disk
    with pytest.raises(ValueError, match="does not match"):
        RegionPredictor(RegionPredictorConfig(image_dim=32, text_dim=24, grid=(4, 4), heads=2, reader=8)).reader.load_scene_reader(reader)


def test_first_layers_runs_a_prefix_of_the_encoder_and_leaves_the_encoder_whole():
    from transformers import BertConfig, BertModel

    from retouch.models.region import first_layers

    torch.manual_seed(0)
    full = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32)).eval()
    two = first_layers(full, 2)
    assert len(two.encoder.layer) == 2 and len(full.encoder.layer) == 3 and full.config.num_hidden_layers == 3
    assert two.encoder.layer[0] is full.encoder.layer[0]  # shared weights, not a copy
    ref = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32))
    ref.load_state_dict({k: v for k, v in full.state_dict().items() if ".layer.2." not in k}, strict=False)
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        assert torch.allclose(two(input_ids=ids).last_hidden_state, ref.eval()(input_ids=ids).last_hidden_state, atol=1e-5)
        assert not torch.allclose(two(input_ids=ids).last_hidden_state, full(input_ids=ids).last_hidden_state, atol=1e-3)
    with pytest.raises(ValueError, match="between 1 and 3"):
        first_layers(full, 4)
    with pytest.raises(ValueError, match="BERT-style"):
        first_layers(torch.nn.Linear(2, 2), 1)
