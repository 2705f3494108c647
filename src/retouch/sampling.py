"""Samplers as plain functions of (denoiser, x, timesteps, cond, ..., callback).

They see the network only through ``retouch.models.Denoiser`` (raw prediction + ``to_x0_eps``
+ ``alphas_cumprod``), so one sampler serves every backbone and every prediction type.  They
leave autograd alone: wrap calls in ``torch.no_grad()`` unless gradients are wanted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .models.backbone import Denoiser, TextConditioning

logger = logging.getLogger(__name__)

# callback(steps done, steps in all, x after the step)
StepCallback = Callable[[int, int, Tensor], None]


def timesteps_for(n_steps: int, num_train: int = 1000) -> list[int]:
    """``n_steps`` evenly spaced "trailing" timesteps, from the last training step down.

    As diffusers' ``timestep_spacing="trailing"`` (round(arange(T, 0, -T/n)) - 1), which the
    Turbo checkpoints use: 1 -> [999]; 4 -> [999, 749, 499, 249].
    """
    if not 1 <= n_steps <= num_train:
        raise ValueError(f"n_steps must lie in [1, {num_train}], got {n_steps}")
    # numpy's arange computes start + k * delta with delta = (start + step) - start; doing the same
    # float arithmetic gives diffusers' values bit for bit (ties to even included), but always
    # exactly n of them: the float arange overshoots for some n (n=61 of 1000 adds a step at -1)
    delta = (num_train - num_train / n_steps) - num_train
    return [round(num_train + k * delta) - 1 for k in range(n_steps)]


def sample_ddim(
    denoiser: Denoiser,
    x: Tensor,
    timesteps: Sequence[int],
    cond: TextConditioning,
    guidance: float = 1.0,
    uncond: TextConditioning | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12) from ``x`` at ``timesteps[0]`` through each timestep down to the clean sample.

    x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z,
    sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev)   (eq. 16; eta = 0 is deterministic).
    After the last timestep a_prev = 1, so the result is the last x0 estimate (as diffusers'
    DDIMScheduler with set_alpha_to_one).  With ``guidance`` != 1 the raw predictions are mixed as
    uncond + guidance * (cond - uncond) (classifier-free guidance), which needs ``uncond``.
    """
    ts = [int(t) for t in timesteps]
    if not ts:
        raise ValueError("sample_ddim needs at least one timestep")
    if any(b >= a for a, b in zip(ts, ts[1:], strict=False)):
        raise ValueError(f"timesteps must decrease strictly, got {ts}")
    if ts[0] >= denoiser.num_train_timesteps or ts[-1] < 0:
        raise ValueError(f"timesteps must lie in [0, {denoiser.num_train_timesteps}), got {ts}")
    guided = guidance != 1.0
    if guided and uncond is None:
        raise ValueError(f"guidance {guidance} needs an unconditional conditioning (uncond)")
    b = x.shape[0]
    cond = cond.broadcast_to(b)
    both = uncond.broadcast_to(b).cat(cond) if guided else None  # (2B, ...): one network call per step
    ac = denoiser.alphas_cumprod
    n = len(ts)
    for i, t in enumerate(ts):
        if guided:
            pred_u, pred_c = denoiser(torch.cat([x, x]), t, both).chunk(2)  # (B, C, h, w) each
            pred = pred_u + guidance * (pred_c - pred_u)
        else:
            pred = denoiser(x, t, cond)  # (B, C, h, w)
        x0, eps = denoiser.to_x0_eps(x, t, pred)
        a_t = float(ac[t])
        a_prev = float(ac[ts[i + 1]]) if i + 1 < n else 1.0
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) if eta else 0.0
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        x_prev = math.sqrt(a_prev) * x0.to(dtype) + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps.to(dtype)
        if sigma:
            dev = generator.device if generator is not None else x.device
            x_prev = x_prev + sigma * torch.randn(x.shape, generator=generator, device=dev, dtype=dtype).to(x.device)
        x = x_prev.to(x0.dtype)
        if callback:
            callback(i + 1, n, x)
    return x
