"""Training the region predictor without editing pairs: the losses (eq. 4-9), the instruction proposer, and a
two-step run of the recipe task on tiny models (files, eval, resume)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from retouch.train.region import (
    ClipGuidanceLoss,
    DirectionalClipLoss,
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
