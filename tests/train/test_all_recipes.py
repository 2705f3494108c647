"""Every recipe the repository ships parses against its task's settings, and the rewards a feedback recipe names
are reward kinds that exist (a removed design's name in a recipe would fail only mid-run otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest

from retouch.models.rewards import REWARDS
from retouch.train import load_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").rglob("*.json"))


def test_there_are_recipes():
    assert len(RECIPES) > 10


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_recipe_parses(path):
    task, cfg = load_recipe(path)
    if task == "feedback":
        assert set(cfg.rewards) <= set(REWARDS), cfg.rewards
    if task == "reward":
        assert cfg.kind in REWARDS
