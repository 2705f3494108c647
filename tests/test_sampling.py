"""DDIM and the timestep grid against analytic denoisers and against diffusers' own DDIM step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from retouch.models import Denoiser, TextConditioning
from retouch.sampling import sample_ddim, timesteps_for


def _schedule() -> torch.Tensor:
    # SD's "scaled_linear" betas
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


COND = TextConditioning(torch.zeros(1, 3, 8))


class PointDenoiser(Denoiser):
    """Data is the single point ``x0*``: the exact posterior prediction, in any parametrization."""

    def __init__(self, x0: torch.Tensor, prediction_type: str = "epsilon") -> None:
        super().__init__(prediction_type, _schedule())
        self.x0 = x0
        self.calls = 0

    def forward(self, x, t, cond, concat=None):
        self.calls += 1
        a = self.alpha_at(t, x)
        eps = (x - a.sqrt() * self.x0) / (1 - a).sqrt()
        if self.prediction_type == "epsilon":
            return eps
        if self.prediction_type == "sample":
            return self.x0.expand_as(x).clone()
        return a.sqrt() * eps - (1 - a).sqrt() * self.x0  # v


class GaussDenoiser(Denoiser):
    """Data ~ N(0, s^2) per element: E[eps | x_t] = sqrt(1 - a) x_t / (a s^2 + 1 - a)."""

    def __init__(self, s: float) -> None:
        super().__init__("epsilon", _schedule())
        self.s = s

    def forward(self, x, t, cond, concat=None):
        a = self.alpha_at(t, x)
        return (1 - a).sqrt() * x / (a * self.s**2 + 1 - a)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("n_steps", [1, 4])
def test_ddim_lands_on_the_data_point(prediction_type, n_steps):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 8, 8, generator=g)
    den = PointDenoiser(x0, prediction_type)
    x = torch.randn(2, 4, 8, 8, generator=g) * 3  # any starting point
    seen = []
    out = sample_ddim(den, x, timesteps_for(n_steps), COND, callback=lambda i, n, xi: seen.append((i, n, xi.shape)))
    assert torch.allclose(out, x0, atol=1e-4)
    assert seen == [(i + 1, n_steps, x.shape) for i in range(n_steps)]
    assert den.calls == n_steps


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_to_x0_eps_inverts_the_forward_process(prediction_type):
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(3, 4, 4, 4, generator=g), torch.randn(3, 4, 4, 4, generator=g)
    den = Denoiser(prediction_type, _schedule())
    t = torch.tensor([999, 500, 3])
    a = den.alpha_at(t, x0)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
    pred = {"epsilon": eps, "sample": x0, "v_prediction": a.sqrt() * eps - (1 - a).sqrt() * x0}[prediction_type]
    x0_hat, eps_hat = den.to_x0_eps(xt, t, pred)
    assert torch.allclose(x0_hat, x0, atol=1e-4) and torch.allclose(eps_hat, eps, atol=1e-4)


def test_ddim_steps_follow_eq12_on_gaussian_data():
    # with data N(0, s^2) every DDIM step is a known scalar map of x (a check that does not
    # collapse onto the final x0 estimate as the single-point case does)
    s = 0.5
    den = GaussDenoiser(s)
    ts = timesteps_for(4)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = []
    sample_ddim(den, x, ts, COND, callback=lambda i, n, xi: got.append(xi.clone()))
    ac = den.alphas_cumprod
    expect = x.clone()
    for i, t in enumerate(ts):
        a, ap = float(ac[t]), float(ac[ts[i + 1]]) if i + 1 < len(ts) else 1.0
        den_ = a * s**2 + 1 - a
        expect = expect * (math.sqrt(ap) * math.sqrt(a) * s**2 + math.sqrt(1 - ap) * math.sqrt(1 - a)) / den_
        assert torch.allclose(got[i], expect, rtol=1e-9, atol=1e-9)


def test_ddim_matches_diffusers_ddim_scheduler():
    from diffusers import DDIMScheduler

    class Random(Denoiser):  # a fixed random function of (x, t): anything but analytic
        def forward(self, x, t, cond, concat=None):
            return torch.tanh(x * 0.7 + 0.001 * self.timesteps(t, x).view(-1, 1, 1, 1).float()) + cond.tokens.mean()

    sched = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        set_alpha_to_one=True,
        clip_sample=False,
    )
    den = Random("epsilon", sched.alphas_cumprod)
    sched.set_timesteps(4)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    ref = x.clone()
    for t in sched.timesteps:
        ref = sched.step(den(ref, int(t), COND), t, ref).prev_sample
    ours = sample_ddim(den, x, sched.timesteps.tolist(), COND)
    assert sched.timesteps.tolist() == timesteps_for(4)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_guidance_mixes_raw_predictions():
    class CondShift(Denoiser):  # prediction = x + mean of the tokens
        def forward(self, x, t, cond, concat=None):
            return x * 0 + cond.tokens.mean(dim=(1, 2)).view(-1, 1, 1, 1)

    den = CondShift("sample", _schedule())
    cond, uncond = TextConditioning(torch.full((1, 3, 8), 2.0)), TextConditioning(torch.zeros(1, 3, 8))
    x = torch.randn(2, 4, 4, 4)
    out = sample_ddim(den, x, [999], cond, guidance=3.0, uncond=uncond)
    assert torch.allclose(out, torch.full_like(x, 6.0))  # 0 + 3 * (2 - 0)
    with pytest.raises(ValueError, match="uncond"):
        sample_ddim(den, x, [999], cond, guidance=3.0)


def test_eta_is_seeded_noise():
    den = GaussDenoiser(0.5)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    run = lambda seed: sample_ddim(den, x, timesteps_for(4), COND, eta=1.0, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(0), run(0))
    assert not torch.allclose(run(0), run(1))
    assert not torch.allclose(run(0), sample_ddim(den, x, timesteps_for(4), COND))


def test_bad_timesteps():
    den = GaussDenoiser(1.0)
    x = torch.zeros(1, 4, 2, 2)
    for ts in ([], [249, 499], [1000, 10], [10, -1]):
        with pytest.raises(ValueError):
            sample_ddim(den, x, ts, COND)


def test_timesteps_for():
    assert timesteps_for(1) == [999]
    assert timesteps_for(2) == [999, 499]
    assert timesteps_for(4) == [999, 749, 499, 249]
    assert timesteps_for(3) == [999, 666, 332]
    assert timesteps_for(1000) == list(range(999, -1, -1))
    # diffusers' float arange gives these values (and for n=61 one step too many, at -1)
    for n in (48, 61, 50):
        ref = (np.round(np.arange(1000, 0, -1000 / n)).astype(np.int64) - 1)[:n].tolist()
        assert timesteps_for(n) == ref and len(ref) == n and min(ref) >= 0
    with pytest.raises(ValueError):
        timesteps_for(0)
