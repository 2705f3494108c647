"""ByteEdit's reward models (models/rewards.py) and their training pairs (train/rewards.py)."""

from __future__ import annotations

import random

import pytest
import torch

from retouch.models.rewards import (
    REWARDS,
    AttributeReward,
    CoherenceReward,
    RewardConfig,
    RewardModel,
    object_values,
    prompt_values,
    region_crops,
)
from retouch.train.rewards import DEGRADATIONS, _changed, degrade
from retouch.world.render import render
from retouch.world.scene import OBJECT_ATTRS, random_scene


def _image(seed: int) -> torch.Tensor:
    return torch.from_numpy(render(random_scene(random.Random(seed)))).permute(2, 0, 1)[None].float() / 127.5 - 1


@pytest.mark.parametrize("kind", [k for k in DEGRADATIONS if k != "generator"])
def test_degradations_change_the_mask_only(kind):
    x = _image(1)
    m = torch.zeros(1, 1, 128, 128)
    m[..., 30:90, 40:100] = 1
    y = degrade(x, m, kind, random.Random(2), torch.cat([_image(3), _image(4)]))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert torch.equal(y * (1 - m), x * (1 - m))
    assert (y - x).abs().amax() > 0.04
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(x, m, "sepia", random.Random(0), x)


def test_every_kind_saves_and_loads(tmp_path):
    assert set(REWARDS) == {"aesthetic", "attributes", "coherence"}
    x = torch.cat([_image(5), _image(6)])
    m = torch.zeros(2, 1, 128, 128)
    m[..., 50:70, 50:70] = 1
    for kind, cls in REWARDS.items():
        torch.manual_seed(0)
        net = cls(RewardConfig(kind=kind, width=16)).eval()
        net.save_pretrained(tmp_path / kind)
        back = RewardModel.from_pretrained(tmp_path / kind, kind=kind)
        with torch.no_grad():
            if kind == "attributes":
                crops = region_crops(x, m)
                assert crops.shape == (2, 3, AttributeReward.crop, AttributeReward.crop)
                values = torch.tensor([object_values(random_scene(random.Random(k), n_objects=1).objects[0]) for k in (1, 2)])
                r = net(crops, values)
                assert r.shape == (2,) and (r <= 0).all()  # a sum of log-probabilities
                # stored in float16 (the weight budget): the scores agree to that precision
                torch.testing.assert_close(back(crops, values), r, atol=2e-2, rtol=2e-2)
            elif kind == "coherence":
                assert net(x).shape == (2, 1, 128, 128)
                s = back.score(x, m)
                assert s.shape == (2,) and ((s >= 0) & (s <= 1)).all()
                torch.testing.assert_close(s, net.score(x, m))
            else:
                assert net(x).shape == (2,)
                torch.testing.assert_close(back(x), net(x))
    with pytest.raises(ValueError, match="is a coherence reward model, not aesthetic"):
        RewardModel.from_pretrained(tmp_path / "coherence", kind="aesthetic")
    with pytest.raises(FileNotFoundError, match="holds no reward model"):
        RewardModel.from_pretrained(tmp_path / "nothing")


def test_coherence_score_reads_only_the_mask_and_its_border():
    net = CoherenceReward(RewardConfig(kind="coherence", width=16)).eval()
    x = _image(7)
    m = torch.zeros(1, 1, 128, 128)
    m[..., 10:20, 10:20] = 1
    y = x.clone()
    y[..., 100:, 100:] = -1  # far from the mask and its band
    with torch.no_grad():
        assert abs(float(net.score(x, m)) - float(net.score(y, m))) < 1e-6


def test_image_text_negatives_change_one_attribute():
    rng = random.Random(0)
    o = random_scene(rng, n_objects=1).objects[0]
    for _ in range(20):
        bad, name = _changed(o, rng)
        diff = [k for k in OBJECT_ATTRS if getattr(bad, k) != getattr(o, k)]
        assert diff == [name]


def test_attribute_reward_reads_prompts_as_the_objects_they_describe():
    from retouch.train.rewards import describe

    rng = random.Random(3)
    for _ in range(40):
        for o in random_scene(rng).objects:
            assert prompt_values(describe(o)) == object_values(o)
    with pytest.raises(ValueError, match="does not read as one object"):
        prompt_values("the quarterly sales figures")


def test_attribute_reward_scores_only_said_values_and_prefers_the_likelier():
    net = AttributeReward(RewardConfig(kind="attributes", width=16)).eval()
    crop = region_crops(_image(8), torch.ones(1, 1, 128, 128))
    with torch.no_grad():
        logits = net.logits(crop)
        best = torch.tensor([[int(lg.argmax()) for lg in logits.values()]])
        worst = torch.tensor([[int(lg.argmin()) for lg in logits.values()]])
        assert float(net(crop, best)) > float(net(crop, worst))
        assert float(net(crop, torch.full((1, len(OBJECT_ATTRS)), -1))) == 0.0  # nothing said: nothing scored
        # the margins: positive for the argmax value, negative for any other, infinite (no hinge) where not said
        m_best, m_worst = net.margins(crop, best), net.margins(crop, worst)  # (1, 6)
        assert (m_best > 0).all() and (m_worst < 0).all()
        lg = list(logits.values())[0][0]
        assert torch.isclose(m_best[0, 0], lg.max() - lg.topk(2).values[1])
        said = best.clone()
        said[0, 2:] = -1
        assert torch.isinf(net.margins(crop, said)[0, 2:]).all() and torch.isfinite(net.margins(crop, said)[0, :2]).all()


def test_attribute_reward_learns_from_pairs_and_is_scored_on_parsed_prompts():
    """A few steps of the recipe's loss on 16 renders lower it; the held-out check reads the pairs' prompts as text."""
    import numpy as np

    from retouch.train.rewards import PairSource, RewardTrainConfig, _step_loss, evaluate_reward

    scenes = [random_scene(random.Random(k), n_objects=2) for k in range(16)]
    images = np.stack([render(s) for s in scenes])
    cfg = RewardTrainConfig(kind="attributes", width=8)
    torch.manual_seed(0)
    net = AttributeReward(RewardConfig(kind="attributes", width=8))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    src = PairSource(cfg, scenes, images, random.Random(0))
    idx = list(range(16))
    first = float(_step_loss(net, PairSource(cfg, scenes, images, random.Random(1)), idx, torch.device("cpu")))
    for _ in range(30):
        loss = _step_loss(net, src, idx, torch.device("cpu"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = float(_step_loss(net, PairSource(cfg, scenes, images, random.Random(1)), idx, torch.device("cpu")))
    assert last < first
    result = evaluate_reward(net, PairSource(cfg, scenes, images, random.Random(2)), 16, torch.device("cpu"))
    assert result["n"] == 16 and set(result["by"]) <= set(OBJECT_ATTRS)



def test_attribute_pairs_redraw_the_configured_share_of_crops():
    """``redrawn``: that share of the scenes goes through the redraw (the autoencoder with latent noise in training)."""
    import numpy as np

    from retouch.train.rewards import PairSource, RewardTrainConfig

    scenes = [random_scene(random.Random(k), n_objects=1) for k in range(40)]
    images = np.stack([render(s) for s in scenes])
    seen = []

    def redraw(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return torch.zeros_like(x)

    plain = PairSource(RewardTrainConfig(kind="attributes", redrawn=0.0), scenes, images, random.Random(0), redraw=redraw)
    crops, *_ = plain.objects(list(range(40)))
    assert not seen and crops.abs().sum() > 0
    half = PairSource(RewardTrainConfig(kind="attributes", redrawn=0.5), scenes, images, random.Random(0), redraw=redraw)
    crops, *_ = half.objects(list(range(40)))
    assert 8 <= sum(seen) <= 32
    assert int((crops.flatten(1).abs().sum(1) == 0).sum()) == sum(seen)  # exactly the redrawn crops are blank
