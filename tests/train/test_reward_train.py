"""The attributes reward's adversarial training: the worst case stays in its ball and is worse than the crop."""

from __future__ import annotations

import torch

from retouch.models.rewards import AttributeReward, RewardConfig
from retouch.train.rewards import _attribute_loss, _worst_case


def test_worst_case_is_in_the_ball_and_raises_the_loss():
    torch.manual_seed(0)
    net = AttributeReward(RewardConfig(kind="attributes", width=8))
    crops = torch.rand(4, 3, 64, 64) * 2 - 1
    values = torch.zeros(4, 6, dtype=torch.long)
    adv = _worst_case(net, crops, values, eps=0.05, steps=3)
    assert adv.shape == crops.shape and adv.min() >= -1 and adv.max() <= 1
    assert (adv - crops).abs().max() <= 0.05 + 1e-6
    with torch.no_grad():
        assert float(_attribute_loss(net, adv, values)) > float(_attribute_loss(net, crops, values))
    assert all(p.grad is None for p in net.parameters())  # the search leaves the weights' gradients alone
