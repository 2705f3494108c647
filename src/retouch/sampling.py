"""Samplers as plain functions of (denoiser, x, timesteps, cond, ..., callback).

They see the network only through ``retouch.models.Denoiser`` (raw prediction + ``to_x0_eps``
+ ``alphas_cumprod``), so one sampler serves every backbone and every prediction type.  They
leave autograd alone: wrap calls in ``torch.no_grad()`` unless gradients are wanted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


def check_timesteps(denoiser: Denoiser, timesteps: Sequence[int], who: str) -> list[int]:
    """``timesteps`` as ints, strictly decreasing inside the training schedule, or a ValueError naming ``who``."""
    ts = [int(t) for t in timesteps]
    if not ts:
        raise ValueError(f"{who} needs at least one timestep")
    if any(b >= a for a, b in zip(ts, ts[1:], strict=False)):
        raise ValueError(f"{who}: timesteps must decrease strictly, got {ts}")
    if ts[0] >= denoiser.num_train_timesteps or ts[-1] < 0:
        raise ValueError(f"{who}: timesteps must lie in [0, {denoiser.num_train_timesteps}), got {ts}")
    return ts


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
    concat: Tensor | None = None,
) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12) from ``x`` at ``timesteps[0]`` through each timestep down to the clean sample.

    x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z,
    sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev)   (eq. 16; eta = 0 is deterministic).
    After the last timestep a_prev = 1, so the result is the last x0 estimate (as diffusers'
    DDIMScheduler with set_alpha_to_one).  With ``guidance`` != 1 the raw predictions are mixed as
    uncond + guidance * (cond - uncond) (classifier-free guidance), which needs ``uncond``.
    ``concat`` (B, C', h, w): extra input channels the network reads beside ``x`` at every step (an inpainting
    model's mask and masked-image latent); both guidance branches read it.
    """
    ts = check_timesteps(denoiser, timesteps, "sample_ddim")
    guided = guidance != 1.0
    if guided and uncond is None:
        raise ValueError(f"guidance {guidance} needs an unconditional conditioning (uncond)")
    b = x.shape[0]
    cond = cond.broadcast_to(b)
    both = uncond.broadcast_to(b).cat(cond) if guided else None  # (2B, ...): one network call per step
    both_concat = torch.cat([concat, concat]) if guided and concat is not None else concat
    ac = denoiser.alphas_cumprod
    n = len(ts)
    for i, t in enumerate(ts):
        if guided:
            pred_u, pred_c = denoiser(torch.cat([x, x]), t, both, concat=both_concat).chunk(2)  # (B, C, h, w) each
            pred = pred_u + guidance * (pred_c - pred_u)
        else:
            pred = denoiser(x, t, cond, concat=concat)  # (B, C, h, w)
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


# -- TurboEdit: encoder-based iterative inversion and editing ------------------------------------
# Wu et al. 2024, "TurboEdit: Instant text-based image editing", Algorithms 1 and 2.


@dataclass
class TurboInversion:
    """What Algorithm 1 returns: the injected noises eps_t and the reconstructions x_{0,t}, one per timestep."""

    timesteps: list[int]
    noises: list[Tensor]  # (B, C, h, w) each
    recons: list[Tensor]  # (B, C, h, w) each; recons[-1] is the final reconstruction

    def to(self, device: torch.device | str) -> TurboInversion:
        return TurboInversion(self.timesteps, [n.to(device) for n in self.noises], [r.to(device) for r in self.recons])


def renoise(denoiser: Denoiser, prev_x0: Tensor, eps: Tensor, t: int) -> Tensor:
    """x_t = sqrt(a_t) x_{0,t+1} + sqrt(1 - a_t) eps_t (TurboEdit eq. 5; the few-step sampler's re-noising)."""
    a = denoiser.alpha_at(t, prev_x0)
    return (a.sqrt() * prev_x0.to(a.dtype) + (1 - a).sqrt() * eps.to(a.dtype)).to(prev_x0.dtype)


def turbo_step(
    inverter: torch.nn.Module,
    denoiser: Denoiser,
    x0: Tensor,
    prev: Tensor,
    t: int,
    cond: TextConditioning,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One step of Algorithm 1: (mean, logvar, eps_t, x_{0,t}).

    eps_t = mean + exp(logvar / 2) * noise (the reparameterisation trick, TurboEdit eq. 7) when a
    ``noise`` tensor is given (training), the mean otherwise (deterministic inversion).
    Two network evaluations: the inversion network and the generator.
    """
    mean, logvar = inverter(x0, prev, t, cond)  # (B, C, h, w) each
    eps = mean if noise is None else mean + (0.5 * logvar).exp() * noise
    xt = renoise(denoiser, prev, eps, t)  # (B, C, h, w)
    x0_t, _ = denoiser.to_x0_eps(xt, t, denoiser(xt, t, cond))
    return mean, logvar, eps, x0_t


def invert_turbo(
    inverter: torch.nn.Module,
    denoiser: Denoiser,
    x0: Tensor,
    timesteps: Sequence[int],
    cond: TextConditioning,
    callback: StepCallback | None = None,
) -> TurboInversion:
    """Algorithm 1 (iterative inversion): 2 network evaluations per timestep, x_{0,T+1} = 0."""
    ts = check_timesteps(denoiser, timesteps, "invert_turbo")
    prev = torch.zeros_like(x0)
    noises, recons = [], []
    for i, t in enumerate(ts):
        _, _, eps, prev = turbo_step(inverter, denoiser, x0, prev, t, cond)
        noises.append(eps)
        recons.append(prev)
        if callback:
            callback(i + 1, len(ts), prev)
    return TurboInversion(ts, noises, recons)


def sample_turbo(
    denoiser: Denoiser,
    inversion: TurboInversion,
    cond: TextConditioning,
    mask: Tensor | Callable[[int, Tensor], Tensor] | None = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """Algorithm 2 (iterative editing) with the inverted noises and a new conditioning.

    With ``mask`` ((B or 1, 1, h, w) in [0, 1], 1 = edit) each step keeps the edited estimate inside
    the mask and the inversion trajectory's x_{0,t} outside it (TurboEdit sec. 3.5).  ``mask`` may
    also be a function ``mask(i, x0_edit)`` of the step index and the step's unblended estimate (a mask
    built from attention maps gathered so far, as prompt-to-prompt's local blend, or from how far
    the edit has moved from the inversion, as DiffEdit).
    One network evaluation per timestep.
    """
    check_timesteps(denoiser, inversion.timesteps, "sample_turbo")
    if len(inversion.noises) != len(inversion.timesteps) or len(inversion.recons) != len(inversion.timesteps):
        raise ValueError("an inversion needs one noise and one reconstruction per timestep")
    prev = torch.zeros_like(inversion.noises[0])
    n = len(inversion.timesteps)
    for i, (t, eps) in enumerate(zip(inversion.timesteps, inversion.noises, strict=True)):
        xt = renoise(denoiser, prev, eps, t)
        prev, _ = denoiser.to_x0_eps(xt, t, denoiser(xt, t, cond))  # (B, C, h, w)
        m = mask(i, prev) if callable(mask) else mask
        if m is not None:
            prev = m * prev + (1 - m) * inversion.recons[i]
        if callback:
            callback(i + 1, n, prev)
    return prev


# -- Region-conditioned sampling ("Beyond Editing Pairs", Appendix A.3) ---------------------------


def sample_region(
    denoiser: Denoiser,
    source: Tensor,
    timesteps: Sequence[int],
    cond: TextConditioning,
    mask: Tensor,
    noises: Sequence[Tensor] | None = None,
    generator: torch.Generator | None = None,
    grad_through_denoiser: bool = True,
    callback: StepCallback | None = None,
) -> Tensor:
    """A few-step sample from noise under ``cond`` inside ``mask`` that keeps ``source`` outside it.

    ``source``: the clean source latents (B, C, h, w); ``mask``: (B or 1, 1, h, w) in [0, 1], 1 = generate.
    At every step the model's latent outside the mask is replaced by the source re-noised to that step with the
    same noise (eq. 22-23), so after the last step the latent outside the mask is ``source`` itself:
        x_t = m * (sqrt(a_t) x0_prev + sqrt(1 - a_t) eps_t) + (1 - m) * (sqrt(a_t) source + sqrt(1 - a_t) eps_t),
        x0 = m * x0_theta(x_t) + (1 - m) * source.
    ``noises``: one (B, C, h, w) per timestep (default: drawn from ``generator``).  Gradients reach ``mask`` through
    every blend; with ``grad_through_denoiser=False`` the network sees a detached input (cheaper training: the
    mask's gradient then comes from the blends alone).  One network evaluation per timestep.
    """
    ts = check_timesteps(denoiser, timesteps, "sample_region")
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != source.shape[-2:]:
        raise ValueError(f"mask must be (B, 1, {source.shape[-2]}, {source.shape[-1]}), got {tuple(mask.shape)}")
    if noises is None:
        dev = generator.device if generator is not None else source.device
        noises = [torch.randn(source.shape, generator=generator, device=dev, dtype=source.dtype).to(source.device) for _ in ts]
    if len(noises) != len(ts):
        raise ValueError(f"sample_region needs one noise per timestep ({len(ts)}), got {len(noises)}")
    m = mask.to(source.dtype)
    cond = cond.broadcast_to(source.shape[0])
    prev = torch.zeros_like(source)  # x_{0,T+1} = 0, as the few-step sampler starts
    n = len(ts)
    for i, (t, eps) in enumerate(zip(ts, noises, strict=True)):
        xt = m * renoise(denoiser, prev, eps, t) + (1 - m) * renoise(denoiser, source, eps, t)
        inp = xt if grad_through_denoiser else xt.detach()
        x0, _ = denoiser.to_x0_eps(inp, t, denoiser(inp, t, cond))  # (B, C, h, w)
        prev = m * x0.to(source.dtype) + (1 - m) * source
        if callback:
            callback(i + 1, n, prev)
    return prev


# -- Baselines: DDIM inversion and edit-friendly DDPM inversion -----------------------------------


def _guided_pred(denoiser: Denoiser, x: Tensor, t: int, cond: TextConditioning, guidance: float, uncond: TextConditioning | None) -> Tensor:
    if guidance == 1.0:
        return denoiser(x, t, cond.broadcast_to(x.shape[0]))
    if uncond is None:
        raise ValueError(f"guidance {guidance} needs an unconditional conditioning (uncond)")
    b = x.shape[0]
    pred_u, pred_c = denoiser(torch.cat([x, x]), t, uncond.broadcast_to(b).cat(cond.broadcast_to(b))).chunk(2)
    return pred_u + guidance * (pred_c - pred_u)


def invert_ddim(
    denoiser: Denoiser,
    x0: Tensor,
    timesteps: Sequence[int],
    cond: TextConditioning,
    callback: StepCallback | None = None,
) -> Tensor:
    """DDIM inversion (Song et al. 2021 eq. 12 run backwards; Mokady et al. 2023 sec. 3): clean latents -> x at timesteps[0].

    ``timesteps`` is the sampling order (decreasing); inversion walks it from the end.  Each step
    predicts the noise at the current point, labelled with the next (noisier) timestep, and moves
    along it -- the linearisation that makes few-step DDIM inversion drift.
    """
    ts = check_timesteps(denoiser, timesteps, "invert_ddim")[::-1]
    x = x0
    a_cur = 1.0
    for i, t in enumerate(ts):
        _, eps = denoiser.to_x0_eps(x, t, denoiser(x, t, cond.broadcast_to(x.shape[0])))
        a_t = float(denoiser.alphas_cumprod[t])
        xf = x.float()
        x0_hat = (xf - math.sqrt(1 - a_cur) * eps.float()) / math.sqrt(a_cur)
        x = (math.sqrt(a_t) * x0_hat + math.sqrt(1 - a_t) * eps.float()).to(x0.dtype)
        a_cur = a_t
        if callback:
            callback(i + 1, len(ts), x)
    return x


def invert_ddpm(
    denoiser: Denoiser,
    x0: Tensor,
    timesteps: Sequence[int],
    cond: TextConditioning,
    guidance: float = 1.0,
    uncond: TextConditioning | None = None,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """Edit-friendly DDPM inversion (Huberman-Spiegelglas et al. 2024, Algorithm 1 / eq. 6).

    Noisy versions x_t = sqrt(a_t) x0 + sqrt(1 - a_t) n_t are drawn with *independent* noises, then
    for each step t -> s the residual that the stochastic (eta = 1) sampler would need to land on
    x_s is stored: r_t = x_s - mu_t(x_t).  Returns (x at timesteps[0], residuals).  Storing
    r = sigma_t z_t rather than z_t covers the last step (sigma = 0, s = clean) in the same way.
    """
    ts = check_timesteps(denoiser, timesteps, "invert_ddpm")
    dev = generator.device if generator is not None else x0.device
    xs = []
    for t in ts:
        a = float(denoiser.alphas_cumprod[t])
        n = torch.randn(x0.shape, generator=generator, device=dev, dtype=torch.float32).to(x0.device)
        xs.append((math.sqrt(a) * x0.float() + math.sqrt(1 - a) * n).to(x0.dtype))
    xs.append(x0)
    residuals = []
    for i, t in enumerate(ts):
        mu = _ddpm_mean(denoiser, xs[i], t, ts[i + 1] if i + 1 < len(ts) else None, cond, guidance, uncond)
        residuals.append(xs[i + 1] - mu)
        if callback:
            callback(i + 1, len(ts), xs[i + 1])
    return xs[0], residuals


def _ddpm_mean(
    denoiser: Denoiser, x: Tensor, t: int, s: int | None, cond: TextConditioning, guidance: float, uncond: TextConditioning | None
) -> Tensor:
    """The mean of the eta = 1 DDIM step t -> s (s = None: the clean sample), DDIM eq. 12 with eq. 16's sigma."""
    x0, eps = denoiser.to_x0_eps(x, t, _guided_pred(denoiser, x, t, cond, guidance, uncond))
    a_t = float(denoiser.alphas_cumprod[t])
    a_s = float(denoiser.alphas_cumprod[s]) if s is not None else 1.0
    var = (1 - a_s) / (1 - a_t) * (1 - a_t / a_s)
    return (math.sqrt(a_s) * x0.float() + math.sqrt(max(1 - a_s - var, 0.0)) * eps.float()).to(x.dtype)


def sample_ddpm(
    denoiser: Denoiser,
    x: Tensor,
    timesteps: Sequence[int],
    residuals: Sequence[Tensor],
    cond: TextConditioning,
    guidance: float = 1.0,
    uncond: TextConditioning | None = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """The eta = 1 sampler driven by stored residuals (edit-friendly DDPM editing): x_s = mu_t(x_t) + r_t."""
    ts = check_timesteps(denoiser, timesteps, "sample_ddpm")
    if len(residuals) != len(ts):
        raise ValueError(f"sample_ddpm needs one residual per timestep: {len(residuals)} for {len(ts)}")
    for i, t in enumerate(ts):
        x = _ddpm_mean(denoiser, x, t, ts[i + 1] if i + 1 < len(ts) else None, cond, guidance, uncond) + residuals[i]
        if callback:
            callback(i + 1, len(ts), x)
    return x


def sample_ddim_pair(
    denoiser: Denoiser,
    x: Tensor,
    timesteps: Sequence[int],
    cond_src: TextConditioning,
    cond_tgt: TextConditioning,
    guidance: float = 1.0,
    uncond: TextConditioning | None = None,
    on_step: Callable[[int], None] | None = None,
    callback: StepCallback | None = None,
) -> tuple[Tensor, Tensor]:
    """Deterministic DDIM of a source and a target branch from the same ``x`` (B=1) in one batch laid out
    [source half, target half] -- [u_src, c_src, u_tgt, c_tgt] with guidance -- so an attention
    controller (``models.p2p``) can hand the source's maps to the target.  ``on_step(i)`` runs before step i."""
    ts = check_timesteps(denoiser, timesteps, "sample_ddim_pair")
    if x.shape[0] != 1:
        raise ValueError(f"sample_ddim_pair runs one image (its two branches share the batch), got a batch of {x.shape[0]}")
    guided = guidance != 1.0
    if guided and uncond is None:
        raise ValueError(f"guidance {guidance} needs an unconditional conditioning (uncond)")
    conds = [uncond, cond_src, uncond, cond_tgt] if guided else [cond_src, cond_tgt]
    both = conds[0].cat(conds[1:])
    xs = torch.cat([x, x])  # (2, C, h, w): source, target
    n = len(ts)
    for i, t in enumerate(ts):
        if on_step:
            on_step(i)
        inp = xs.repeat_interleave(2, dim=0) if guided else xs  # (4 or 2, C, h, w)
        pred = denoiser(inp, t, both)
        if guided:
            pu, pc = pred[0::2], pred[1::2]  # (2, C, h, w) each
            pred = pu + guidance * (pc - pu)
        x0, eps = denoiser.to_x0_eps(xs, t, pred)
        a_prev = float(denoiser.alphas_cumprod[ts[i + 1]]) if i + 1 < n else 1.0
        xs = (math.sqrt(a_prev) * x0.float() + math.sqrt(1 - a_prev) * eps.float()).to(x0.dtype)
        if callback:
            callback(i + 1, n, xs[1:])
    return xs[:1], xs[1:]
