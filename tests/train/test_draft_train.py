"""The draft network's training task: regression on renders, a learning curve scored by the scene reader, resumable."""

from __future__ import annotations

import json

import pytest
import torch

from retouch.models.draft import DraftNet
from retouch.train import run_recipe


def test_draft_recipe_trains_scores_and_resumes(tmp_path):
    recipe = {
        "task": "draft", "out": str(tmp_path / "draft"), "cache": str(tmp_path / "cache"), "n_scenes": 6, "steps": 2,
        "batch_size": 2, "widths": [16, 16, 8, 8], "embed": 32, "seam": 8, "eval_n": 3, "eval_every": 1, "ckpt_every": 1,
        "threads": 1, "bf16_cpu": True,
    }  # fmt: skip
    path = tmp_path / "draft.json"
    path.write_text(json.dumps(recipe))
    first = run_recipe(path)
    curve = json.loads((tmp_path / "draft" / "curve.json").read_text())
    assert [c["images"] for c in curve] == [2, 4]
    assert {"exact_scene", "attr_accuracy", "acc_shape", "acc_emblem"} <= set(curve[-1]) and 0 <= first["attr_accuracy"] <= 1
    net = DraftNet.from_pretrained(tmp_path / "draft")
    assert net.config.widths == (16, 16, 8, 8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    # resumed: continues at step 3 with its curve kept, and the weights move
    assert run_recipe(path, steps=3)["step"] == 3
    assert [c["images"] for c in json.loads((tmp_path / "draft" / "curve.json").read_text())] == [2, 4, 6]
    after = DraftNet.from_pretrained(tmp_path / "draft").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_a_second_stage_starts_from_the_first_and_continues_its_curve(tmp_path):
    base = {
        "task": "draft", "cache": str(tmp_path / "cache"), "n_scenes": 4, "batch_size": 2, "widths": [16, 16, 8, 8], "embed": 32,
        "seam": 8, "eval_n": 2, "eval_every": 1, "ckpt_every": 1, "threads": 1,
    }  # fmt: skip
    first = base | {"out": str(tmp_path / "first"), "steps": 1}
    second = base | {"out": str(tmp_path / "second"), "steps": 1, "init": first["out"], "init_recipe": str(tmp_path / "first.json")}
    (tmp_path / "first.json").write_text(json.dumps(first))
    (tmp_path / "second.json").write_text(json.dumps(second))
    run_recipe(tmp_path / "second.json")  # trains the missing first stage, then the second from its weights
    assert (tmp_path / "first" / "model.safetensors").is_file()
    assert [c["images"] for c in json.loads((tmp_path / "second" / "curve.json").read_text())] == [2, 4]
    (tmp_path / "bad.json").write_text(json.dumps(second | {"out": str(tmp_path / "bad"), "embed": 16}))
    with pytest.raises(ValueError, match="init: .* is a DraftConfig"):
        run_recipe(tmp_path / "bad.json")
