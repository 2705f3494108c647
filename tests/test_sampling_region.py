"""Region-conditioned sampling (Beyond Editing Pairs, Appendix A.3): outside the mask the source, inside the model's."""

from __future__ import annotations

import pytest
import torch

from retouch.sampling import sample_region, timesteps_for
from tests.test_sampling import COND, PointDenoiser


def _setup(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(2, 4, 8, 8, generator=g)  # what the toy model draws
    source = torch.randn(2, 4, 8, 8, generator=g)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:6, 1:5] = 1.0
    return PointDenoiser(target, "v_prediction"), source, target, mask


def test_outside_the_mask_is_the_source_and_inside_the_models_sample():
    den, source, target, mask = _setup()
    out = sample_region(den, source, timesteps_for(4), COND, mask, generator=torch.Generator().manual_seed(1))
    outside, inside = mask.expand_as(out) == 0, mask.expand_as(out) == 1
    assert torch.equal(out[outside], source[outside])  # exactly, not approximately
    assert torch.allclose(out[inside], target[inside], atol=1e-4)
    assert den.calls == 4  # one evaluation per step


def test_an_empty_mask_returns_the_source_and_a_full_mask_ignores_it():
    den, source, target, mask = _setup()
    noises = [torch.randn(source.shape, generator=torch.Generator().manual_seed(k)) for k in range(2)]
    assert torch.equal(sample_region(den, source, timesteps_for(2), COND, torch.zeros_like(mask), noises=noises), source)
    full = sample_region(den, source, timesteps_for(2), COND, torch.ones_like(mask), noises=noises)
    other = sample_region(den, source + 5, timesteps_for(2), COND, torch.ones_like(mask), noises=noises)
    assert torch.equal(full, other)


@pytest.mark.parametrize("through", [True, False])
def test_gradients_reach_the_mask(through):
    den, source, _, mask = _setup()
    m = torch.full_like(mask, 0.5, requires_grad=True)
    out = sample_region(den, source, timesteps_for(2), COND, m, generator=torch.Generator().manual_seed(0), grad_through_denoiser=through)
    out.pow(2).sum().backward()
    assert m.grad is not None and m.grad.abs().sum() > 0


def test_bad_masks_and_noises_are_refused():
    den, source, _, mask = _setup()
    with pytest.raises(ValueError, match="mask must be"):
        sample_region(den, source, timesteps_for(2), COND, mask[:, :, :4])
    with pytest.raises(ValueError, match="one noise per timestep"):
        sample_region(den, source, timesteps_for(2), COND, mask, noises=[torch.zeros_like(source)])
