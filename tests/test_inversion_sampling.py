"""TurboEdit's Algorithms 1-2, DDIM inversion and edit-friendly DDPM inversion against analytic denoisers."""

from __future__ import annotations

import math

import pytest
import torch

from retouch.models import TextConditioning
from retouch.sampling import (
    invert_ddim,
    invert_ddpm,
    invert_turbo,
    sample_ddim,
    sample_ddim_pair,
    sample_ddpm,
    sample_turbo,
    timesteps_for,
)

from .test_sampling import GaussDenoiser, PointDenoiser, _schedule


class CondDenoiser(PointDenoiser):
    """A smooth denoiser whose prediction depends on the conditioning: x0-hat = tanh(x) + mean(tokens)."""

    def __init__(self) -> None:
        super().__init__(torch.zeros(1), "sample")

    def forward(self, x, t, cond, concat=None):
        self.calls += 1
        return torch.tanh(x) * 0.5 + cond.tokens.mean(dim=(1, 2)).view(-1, 1, 1, 1)


class ConstInverter(torch.nn.Module):
    """An inversion network whose mean is a fixed tensor and whose log-variance is -3."""

    def __init__(self, mean: torch.Tensor) -> None:
        super().__init__()
        self.mean = mean
        self.seen: list[tuple[torch.Tensor, int]] = []

    def forward(self, x0, prev, t, cond):
        self.seen.append((prev.clone(), int(t)))
        return self.mean.expand_as(x0), torch.full_like(x0, -3.0)


def _cond(v: float) -> TextConditioning:
    return TextConditioning(torch.full((1, 3, 8), v))


def test_turbo_inversion_follows_algorithm_1():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 4, 8, 8, generator=g)
    mean = torch.randn(1, 4, 8, 8, generator=g)
    den, inv_net = CondDenoiser(), ConstInverter(mean)
    ts = timesteps_for(4)
    inv = invert_turbo(inv_net, den, x0, ts, _cond(0.1))
    assert den.calls == 4 and len(inv_net.seen) == 4  # 8 evaluations in all
    assert torch.equal(inv_net.seen[0][0], torch.zeros_like(x0))  # x_{0,T+1} = 0
    ac = _schedule()
    prev = torch.zeros_like(x0)
    for k, t in enumerate(ts):
        assert inv_net.seen[k][1] == t
        assert torch.allclose(inv_net.seen[k][0], prev)  # each step sees the previous reconstruction
        a = float(ac[t])
        xt = math.sqrt(a) * prev + math.sqrt(1 - a) * mean  # eq. 5
        prev = torch.tanh(xt) * 0.5 + 0.1
        assert torch.allclose(inv.recons[k], prev, atol=1e-6)
        assert torch.equal(inv.noises[k], mean)  # deterministic: the mean, not a sample


def test_editing_with_the_source_caption_reproduces_the_reconstruction():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 4, 8, 8, generator=g)
    inv = invert_turbo(ConstInverter(torch.randn(2, 4, 8, 8, generator=g)), CondDenoiser(), x0, timesteps_for(4), _cond(0.2))
    den = CondDenoiser()
    same = sample_turbo(den, inv, _cond(0.2))
    assert den.calls == 4
    assert torch.allclose(same, inv.recons[-1], atol=1e-6)
    other = sample_turbo(den, inv, _cond(-0.3))
    assert (other - inv.recons[-1]).abs().mean() > 0.1
    # a mask of zeros keeps the inversion trajectory, a mask of ones is the free edit
    assert torch.allclose(sample_turbo(den, inv, _cond(-0.3), mask=torch.zeros(1, 1, 8, 8)), inv.recons[-1])
    assert torch.allclose(sample_turbo(den, inv, _cond(-0.3), mask=torch.ones(1, 1, 8, 8)), other)
    # a half mask edits one half only
    m = torch.zeros(1, 1, 8, 8)
    m[..., :4] = 1
    half = sample_turbo(den, inv, _cond(-0.3), mask=m)
    assert torch.allclose(half[..., 4:], inv.recons[-1][..., 4:]) and torch.allclose(half[..., :4], other[..., :4])
    # a mask given as a function of the step is called once per step
    calls = []
    sample_turbo(den, inv, _cond(-0.3), mask=lambda i, x: calls.append(i) or m)
    assert calls == [0, 1, 2, 3]


def test_ddim_inversion_round_trip_improves_with_steps():
    # Gaussian data: the probability-flow ODE is smooth, so DDIM inversion is exact in the limit
    den = GaussDenoiser(0.8)
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.8
    errs = []
    for n in (4, 50, 500):
        ts = timesteps_for(n)
        xt = invert_ddim(den, x0, ts, _cond(0.0))
        rec = sample_ddim(den, xt, ts, _cond(0.0))
        errs.append(float((rec - x0).abs().max()))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-2


def test_edit_friendly_ddpm_reconstructs_exactly_and_edits():
    den = CondDenoiser()
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ts = timesteps_for(20)
    xt, res = invert_ddpm(den, x0, ts, _cond(0.1), generator=torch.Generator().manual_seed(4))
    assert len(res) == 20
    assert torch.allclose(sample_ddpm(den, xt, ts, res, _cond(0.1)), x0, atol=1e-9)
    assert (sample_ddpm(den, xt, ts, res, _cond(0.5)) - x0).abs().mean() > 0.05


def test_pair_sampler_matches_two_single_runs():
    den = CondDenoiser()
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    ts = timesteps_for(4)
    steps = []
    src, tgt = sample_ddim_pair(den, x, ts, _cond(0.1), _cond(-0.2), on_step=steps.append)
    assert steps == [0, 1, 2, 3]
    assert torch.allclose(src, sample_ddim(den, x, ts, _cond(0.1)), atol=1e-6)
    assert torch.allclose(tgt, sample_ddim(den, x, ts, _cond(-0.2)), atol=1e-6)
    # with guidance: the same as sample_ddim's guided mix
    src_g, tgt_g = sample_ddim_pair(den, x, ts, _cond(0.1), _cond(-0.2), guidance=2.0, uncond=_cond(0.0))
    assert torch.allclose(tgt_g, sample_ddim(den, x, ts, _cond(-0.2), guidance=2.0, uncond=_cond(0.0)), atol=1e-6)
    with pytest.raises(ValueError, match="unconditional"):
        sample_ddim_pair(den, x, ts, _cond(0.1), _cond(-0.2), guidance=2.0)


def test_new_samplers_check_their_inputs():
    den = CondDenoiser()
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(ValueError, match="decrease strictly"):
        invert_ddim(den, x, [249, 499], _cond(0.0))
    with pytest.raises(ValueError, match="at least one timestep"):
        invert_turbo(ConstInverter(x), den, x, [], _cond(0.0))
    with pytest.raises(ValueError, match="one residual per timestep"):
        sample_ddpm(den, x, [999, 499], [x], _cond(0.0))
    with pytest.raises(ValueError, match="one image"):
        sample_ddim_pair(den, torch.zeros(2, 4, 8, 8), [999], _cond(0.0), _cond(0.1))
