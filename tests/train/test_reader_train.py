import json
from pathlib import Path

import pytest
import torch

from retouch.train import load_recipe, run_recipe
from retouch.world.reader import SceneReader


def test_recipe_trains_saves_and_resumes(tmp_path):
    recipe = tmp_path / "r.json"
    out = tmp_path / "reader"
    recipe.write_text(
        json.dumps(
            {"task": "scene-reader", "out": str(out), "steps": 2, "batch_size": 4, "workers": 0, "eval_n": 4, "ckpt_every": 1, "width": 8}
        )
    )
    m = run_recipe(recipe)
    assert set(m) >= {"exact_scene", "acc_color", "n"} and m["n"] == 4
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 2
    assert json.loads((out / "train_config.json").read_text())["steps"] == 2
    r = SceneReader.from_pretrained(out)
    assert r.config.width == 8
    # resuming continues from the checkpoint instead of starting over
    run_recipe(recipe, steps=3)
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 3


def test_recipe_errors_name_the_problem(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"task": "nope"}))
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        load_recipe(p)
    p.write_text(json.dumps({"task": "scene-reader", "stepz": 3}))
    with pytest.raises(ValueError, match="stepz"):
        load_recipe(p)
    p.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_recipe(p)


def test_shipped_recipe_matches_shipped_model():
    task, cfg = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "scene-reader.json")
    assert task == "scene-reader" and cfg.out == "models/scene-reader"
