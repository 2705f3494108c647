"""Training the region predictor without editing pairs: the losses (eq. 4-9), our generator-difference loss and its
pseudo-masks (the shipped caption reader and draft), the instruction proposer, and short runs of the recipe task on
tiny models (files, eval, resume)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from retouch.train.region import (
    ClipGuidanceLoss,
    DirectionalClipLoss,
    GeneratorDifferenceLoss,
    Projection,
    RegionTrainConfig,
    SemanticAlignmentLoss,
    StructureLoss,
    WorldInstructionProposer,
)
from tests.models.conftest import tiny_shapes_dir  # noqa: F401  (a fixture, re-exported)


def test_structure_loss_is_zero_for_the_same_layout_and_positive_otherwise():
    p = torch.randn(2, 16, 8)
    loss = StructureLoss()
    assert loss(p, p).item() == pytest.approx(0.0, abs=1e-7)
    assert loss(p * 3.0, p).item() == pytest.approx(0.0, abs=1e-6)  # self-similarity ignores the features' scale
    assert loss(torch.randn(2, 16, 8), p).item() > 0.01


def test_clip_losses_measure_cosine_distances():
    t_src, t_tgt = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    e_src = torch.tensor([[1.0, 0.0, 0.0]])
    assert ClipGuidanceLoss()(t_tgt, t_tgt).item() == pytest.approx(0.0, abs=1e-6)
    assert ClipGuidanceLoss()(-t_tgt, t_tgt).item() == pytest.approx(2.0)
    along = e_src + (t_tgt - t_src)  # the image moved exactly as the captions did
    assert DirectionalClipLoss()(along, e_src, t_tgt, t_src).item() == pytest.approx(0.0, abs=1e-6)
    assert DirectionalClipLoss()(e_src - (t_tgt - t_src), e_src, t_tgt, t_src).item() == pytest.approx(2.0)


def test_semantic_alignment_has_the_source_term_and_trains_its_projection():
    torch.manual_seed(0)
    loss = SemanticAlignmentLoss(Projection(8, 4))
    fused, patches = torch.randn(3, 5, 8), torch.randn(3, 5, 8)
    t_tgt, t_src = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1), torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    full = loss(fused, patches, t_tgt, t_src)
    only_tgt = (1 - torch.nn.functional.cosine_similarity(loss.projection(fused), t_tgt, dim=-1)).mean()
    assert full.item() > only_tgt.item()  # the source term is there
    full.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.projection.parameters())


def test_the_proposer_writes_an_instruction_and_target_caption_from_the_caption_alone():
    from retouch.world.captions import detailed_caption
    from retouch.world.instructions import parse_detailed_caption
    from retouch.world.scene import random_scene

    prop = WorldInstructionProposer()
    for k in range(5):
        caption = detailed_caption(random_scene(random.Random(k)))
        instruction, target = prop.propose(caption, random.Random(k))
        assert instruction and target != caption
        parse_detailed_caption(target)  # a caption of the world: the generator and CLIP read it as any other


def test_recipe_settings_are_checked():
    from retouch.train import parse_recipe

    task, cfg = parse_recipe({"task": "region", "steps": 3, "types": [8, 9]})
    assert task == "region" and isinstance(cfg, RegionTrainConfig) and cfg.types == (8, 9)
    with pytest.raises(ValueError, match="unknown settings"):
        parse_recipe({"task": "region", "stepz": 3})
    with pytest.raises(ValueError, match="wrong setting"):
        parse_recipe({"task": "region", "steps": "3"})


def test_two_steps_train_save_evaluate_and_resume(tiny_shapes_dir, tmp_path):  # noqa: F811
    from retouch.models.region import RegionPredictor
    from retouch.train.region import train_region
    from tests.eval.test_clip import _write_tiny_clip

    _write_tiny_clip(tmp_path / "clip")
    out = tmp_path / "run"
    cfg = RegionTrainConfig(
        out=str(out),
        model=str(tiny_shapes_dir),
        clip=str(tmp_path / "clip"),
        n_images=4,
        steps=2,
        batch_size=2,
        warmup=1,
        eval_n=4,
        ckpt_every=1,
    )
    metrics = train_region(cfg)
    for name in ("model.safetensors", "config.json", "train_config.json", "eval.json", "features.pt", "checkpoint.pt"):
        assert (out / name).is_file(), name
    assert json.loads((out / "train_config.json").read_text())["steps"] == 2
    assert metrics["by_type"]["all"]["n"] == 4 and 0.0 <= metrics["by_type"]["all"]["iou"] <= 1.0
    first = RegionPredictor.from_pretrained(out)
    assert first.config.grid == (4, 4) and first.config.image_dim == 32
    torch.manual_seed(cfg.seed)
    fresh = RegionPredictor(first.config)
    assert not torch.allclose(first.mlp[-1].weight, fresh.mlp[-1].weight, atol=1e-3)  # the steps moved the mask head
    cfg.steps = 3
    train_region(cfg)  # resumes from step 2 and reuses the cached features
    assert len(json.loads((out / "history.json").read_text())) == 1


# -- our addition: the generator's own answer (GeneratorDifferenceLoss) ----------------------------
@pytest.fixture(scope="module")
def reader_and_draft():
    from retouch.models.caption_reader import CaptionReader
    from retouch.models.draft import DraftNet

    return CaptionReader.from_pretrained(), DraftNet.from_pretrained()


def _scene():
    from retouch.world.scene import Scene, WorldObject

    a = WorldObject(shape="star", color="red", size="large", pattern="solid", pose="upright", emblem="moon", slot=0)
    b = WorldObject(shape="circle", color="blue", size="medium", pattern="striped", pose="upright", emblem="bolt", slot=3)
    return Scene(objects=(a, b), background="grass", style="flat", seed=1)


def test_the_pseudo_mask_of_a_colour_change_lies_on_that_object(reader_and_draft):
    from dataclasses import replace

    from retouch.train.region import generator_difference_masks
    from retouch.world.captions import detailed_caption
    from retouch.world.render import object_footprint

    src = _scene()
    star = src.object_at(0)
    tgt = src.with_object(replace(star, color="green"))
    (mask,) = generator_difference_masks(*reader_and_draft, [detailed_caption(src)], [detailed_caption(tgt)])
    assert mask.shape == (128, 128) and mask.dtype == bool
    place = np.zeros((128, 128), bool)
    place[: 64 + 4, : 64 + 4] = True  # slot 0: the top-left place, grown by the pseudo-mask's dilation (4 px)
    assert mask.sum() > 500 and not (mask & ~place).any()  # the whole mask in the star's place
    footprint = object_footprint(star, 128)
    assert (mask & footprint).sum() / footprint.sum() > 0.9  # and it covers the star (the disc it may be drawn in)
    assert (mask & object_footprint(src.object_at(3), 128)).sum() == 0  # nothing of the unchanged circle


def test_the_pseudo_mask_of_a_background_change_leaves_the_objects_out_a_style_change_is_everything_and_no_change_is_empty(
    reader_and_draft,
):
    from dataclasses import replace

    from retouch.train.region import generator_difference_masks
    from retouch.world.captions import detailed_caption
    from retouch.world.render import object_radius, slot_center

    src = _scene()
    caps = [detailed_caption(src)] * 3
    styled = detailed_caption(replace(src, style="sepia" if src.style != "sepia" else "flat"))
    bg, same, style = generator_difference_masks(
        *reader_and_draft, caps, [detailed_caption(replace(src, background="sand")), caps[0], styled]
    )
    assert style.all()
    assert bg.mean() > 0.5
    yy, xx = np.mgrid[0:128, 0:128] + 0.5
    for o in src.objects:  # the objects' cores are not repainted (their outlines, dilated, may be)
        cx, cy = slot_center(o.slot, 128)
        core = (xx - cx) ** 2 + (yy - cy) ** 2 <= (0.4 * object_radius(o, 128)) ** 2
        assert bg[core].mean() < 0.05
    assert not same.any()


def test_generator_difference_loss_prefers_the_pseudo_mask_and_reaches_the_refined_map():
    loss = GeneratorDifferenceLoss()
    pseudo = torch.zeros(1, 1, 32, 32)
    pseudo[..., :16, :16] = 1.0
    right = torch.full((1, 1, 4, 4), 0.02)
    right[..., :2, :2] = 0.98
    wrong = 1 - right
    assert loss(right, pseudo).item() < 0.2 < loss(wrong, pseudo).item()
    fine = torch.full((1, 1, 8, 8), 0.5, requires_grad=True)
    both = loss(right, pseudo, fine)
    assert both.item() > loss(right, pseudo).item()
    both.backward()
    assert fine.grad is not None and fine.grad.abs().sum() > 0


def test_a_run_with_the_generator_difference_and_a_refined_map_trains_scores_and_resumes(tmp_path):
    """The loop with w_gen > 0 and w_clip = 0 (no sampling): the shipped generator's caption reader and draft make the
    pseudo-masks, cached once; the curve's snapshots and the resumed run."""
    from retouch.models.backbone import MODELS_DIR
    from retouch.models.region import RegionPredictor
    from retouch.train.region import train_region
    from tests.eval.test_clip import _write_tiny_clip

    _write_tiny_clip(tmp_path / "clip")
    out = tmp_path / "run"
    cfg = RegionTrainConfig(
        out=str(out),
        model=str(MODELS_DIR / "shapes-turbo"),
        clip=str(tmp_path / "clip"),
        n_images=4,
        steps=2,
        batch_size=2,
        warmup=1,
        eval_n=4,
        ckpt_every=1,
        w_clip=0.0,
        w_gen=1.0,
        refine=16,
        refine_width=8,
        curve_every=2,
        curve_n=4,
        types=(0, 6, 8),
    )
    metrics = train_region(cfg)
    data = torch.load(out / "features.pt", weights_only=True)
    assert data["pseudo"].shape == (4, 128, 128) and data["pseudo"].any() and "latents" not in data
    assert metrics["by_type"]["all"]["n"] == 4
    pred = RegionPredictor.from_pretrained(out)
    assert pred.config.refine == 16 and pred.refine is not None
    curve = json.loads((out / "curve.json").read_text())
    assert [c["step"] for c in curve] == [2] and (out / "snapshots" / "step-000002" / "model.safetensors").is_file()
    assert json.loads((out / "history.json").read_text())[-1]["gen"] > 0
    cfg.steps = 3
    train_region(cfg)  # resumes from step 2 with the cached features and pseudo-masks
    assert len(json.loads((out / "history.json").read_text())) == 1
    assert [c["step"] for c in json.loads((out / "curve.json").read_text())] == [2, 3]
    # a shallower instruction encoder and bfloat16 pseudo-masks: the cache is completed, not rebuilt
    import shutil

    from retouch.models.region import InstructionEncoder

    shallow = tmp_path / "shallow"
    shallow.mkdir()
    shutil.copy(out / "features.pt", shallow / "features.pt")
    cfg.out, cfg.steps, cfg.curve_every, cfg.text_layers, cfg.gen_bf16 = str(shallow), 1, 0, 1, True
    train_region(cfg)
    again = torch.load(shallow / "features.pt", weights_only=True)
    assert again["text_layers"] == 1 and again["pseudo_settings"]["bf16"] is True
    assert torch.equal(again["images"], data["images"])  # the renders and CLIP features were kept
    one, mask = InstructionEncoder(layers=1)(again["instructions"][:2])
    assert torch.allclose(again["tokens"][:2, : one.shape[1]].float(), one, atol=2e-2)
    assert not torch.allclose(again["tokens"].float(), data["tokens"].float(), atol=1e-2)
    inter = (again["pseudo"] & data["pseudo"]).sum().item()
    assert inter / max((again["pseudo"] | data["pseudo"]).sum().item(), 1) > 0.9  # bf16 draws nearly the same masks
    assert RegionPredictor.from_pretrained(shallow).config.text_layers == 1
