"""The TurboEdit inversion network (Wu et al. 2024, "TurboEdit: Instant text-based image editing", sec. 3.2-3.3).

F(x0, x_{0,t+1}, c, t) -> (mean, log-variance) of the noise injected at step t.  As in the paper it
is initialised from the generator's own UNet; we widen its first convolution to read the input
latents and the previous reconstruction side by side (2C channels) and its last one to write a
mean and a log-variance (2C channels), and train the rest through low-rank adapters (peft LoRA),
so a shipped inversion network is a small file beside the generator it was trained against, not a
second copy of it.  The generator itself stays frozen (it is a separate module).

Folder layout (``save_inversion`` / ``load_inversion``)::

    config.json                  InversionConfig + the generator it belongs to
    adapter_model.safetensors    LoRA weights + the new conv_in / conv_out (+ time embedding)
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .backbone import TextConditioning

logger = logging.getLogger(__name__)

CONFIG = "config.json"
WEIGHTS = "adapter_model.safetensors"


@dataclass
class InversionConfig:
    rank: int = 8  # LoRA rank of every adapted layer
    alpha: float = 8.0
    # layers adapted with LoRA (peft target names, matched as suffixes)
    targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2")
    # trained in full: the widened convolutions and the time embedding (the time now means "which
    # inversion step", a different question from "how much noise")
    full: tuple[str, ...] = ("conv_in", "conv_out", "conv_norm_out", "time_embedding")
    logvar_init: float = -6.0  # start nearly deterministic: the reconstruction loss dominates early
    generator: str = ""  # the pipeline folder whose UNet this network inverts (recorded, for users)
    extra: dict = field(default_factory=dict)


class InversionNet(nn.Module):
    """Wraps a copy of a UNet2DConditionModel as F(x0, prev, t, cond) -> (mean, logvar), each (B, C, h, w)."""

    def __init__(self, unet: nn.Module, config: InversionConfig) -> None:
        super().__init__()
        from peft import LoraConfig

        self.config = config
        unet = copy.deepcopy(unet).float()
        # the generator's input is the latent (C) and, for a layout-map model, the map (M channels after it)
        m = int(config.extra.get("layout_channels", 0))
        c = int(unet.config.in_channels) - m
        self.channels, self.layout_channels = c, m
        old_in, old_out = unet.conv_in, unet.conv_out
        conv_in = nn.Conv2d(2 * c + m, old_in.out_channels, old_in.kernel_size, padding=old_in.padding)
        conv_out = nn.Conv2d(old_out.in_channels, 2 * c, old_out.kernel_size, padding=old_out.padding)
        with torch.no_grad():
            # the input image takes the generator's "noisy latent" weights, the previous reconstruction
            # starts at zero; the mean head starts as the generator's output head, the log-variance
            # head as a constant (so step 0 of training is the generator applied to the clean latents)
            conv_in.weight.zero_()
            conv_in.weight[:, :c] = old_in.weight.float()[:, :c]
            conv_in.weight[:, 2 * c :] = old_in.weight.float()[:, c:]  # the layout map keeps the generator's weights
            conv_in.bias.copy_(old_in.bias.float())
            conv_out.weight.zero_()
            conv_out.bias.zero_()
            conv_out.weight[:c] = old_out.weight.float()
            conv_out.bias[:c] = old_out.bias.float()
            conv_out.bias[c:] = config.logvar_init
        unet.conv_in, unet.conv_out = conv_in, conv_out
        unet.requires_grad_(False)
        lora = LoraConfig(
            r=config.rank, lora_alpha=config.alpha, target_modules=_target_regex(unet, config.targets), init_lora_weights=True
        )
        unet.add_adapter(lora)
        for name, p in unet.named_parameters():
            if any(name.startswith(prefix + ".") for prefix in config.full):
                p.requires_grad_(True)
        self.unet = unet

    def forward(self, x0: Tensor, prev: Tensor, t: Tensor | int, cond: TextConditioning) -> tuple[Tensor, Tensor]:
        b = x0.shape[0]
        t = torch.as_tensor(t, device=x0.device).long()
        if t.ndim == 0:
            t = t.expand(b)
        cond = cond.broadcast_to(b)
        given = 0 if cond.layout is None else cond.layout.shape[1]
        if given != self.layout_channels:
            raise ValueError(f"this inversion network reads a layout map of {self.layout_channels} channels; the conditioning has {given}")
        parts = [x0, prev] + ([cond.layout.to(x0)] if cond.layout is not None else [])
        inp = torch.cat(parts, dim=1).float()  # (B, 2C [+ M], h, w)
        added = None
        if getattr(self.unet.config, "addition_embed_type", None) == "text_time":
            # SDXL: the pooled text embedding and the size ids join the time embedding, as in the generator
            if cond.pooled is None or cond.add_time_ids is None:
                raise ValueError("this inversion network's UNet needs SDXL conditioning: pooled text embeddings and add_time_ids")
            added = {"text_embeds": cond.pooled.float(), "time_ids": cond.add_time_ids.float()}  # (B, P), (B, 6)
        out = self.unet(inp, t, encoder_hidden_states=cond.tokens.float(), added_cond_kwargs=added, return_dict=False)[0]  # (B, 2C, h, w)
        mean, logvar = out.float().chunk(2, dim=1)  # (B, C, h, w) each
        return mean, logvar.clamp(-20.0, 5.0)

    def trainable_state_dict(self) -> dict[str, Tensor]:
        names = {n for n, p in self.unet.named_parameters() if p.requires_grad}
        return {n: t for n, t in self.unet.state_dict().items() if n in names}


def _target_regex(unet: nn.Module, targets: tuple[str, ...]) -> list[str]:
    """Full module names of the layers to adapt (peft accepts a list of names)."""
    names = []
    for name, mod in unet.named_modules():
        if isinstance(mod, nn.Linear | nn.Conv2d) and any(name == t or name.endswith("." + t) for t in targets):
            if name.startswith(("conv_in", "conv_out", "time_embedding")):
                continue
            names.append(name)
    if not names:
        raise ValueError(f"no layers of the UNet match the LoRA targets {targets}")
    return names


def save_inversion(net: InversionNet, folder: str | Path, half: bool = True) -> None:
    from ..atomic import save_safetensors, write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half else v).contiguous().cpu() for k, v in net.trainable_state_dict().items()}
    save_safetensors(state, folder / WEIGHTS)
    cfg = asdict(net.config) | {"_class_name": "TurboEditInversion", "channels": net.channels}
    write_json(folder / CONFIG, cfg)


def load_inversion(folder: str | Path, unet: nn.Module, device: torch.device | str = "cpu") -> InversionNet:
    """An inversion network from ``folder``, built around a copy of the generator's ``unet``."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise FileNotFoundError(
            f"{folder} holds no inversion network ({CONFIG} + {WEIGHTS}); "
            "train one with `retouch train recipes/shapes-draft-inversion.json`"
        )
    try:
        raw = json.loads((folder / CONFIG).read_text())
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        channels = raw.pop("channels", None)
        raw.pop("_class_name", None)
        for key in ("targets", "full"):
            if key in raw:
                raw[key] = tuple(raw[key])
        cfg = InversionConfig(**raw)
    except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError; unknown keys a TypeError
        raise ValueError(f"{folder / CONFIG} is not an inversion network config ({e})") from e
    latent_in = int(unet.config.in_channels) - int(cfg.extra.get("layout_channels", 0))
    if channels is not None and channels != latent_in:
        raise ValueError(f"{folder} inverts a generator with {channels} latent channels, this one has {latent_in}")
    net = InversionNet(unet, cfg)
    load_inversion_weights(net, folder)
    return net.to(device).eval()


def load_inversion_weights(net: InversionNet, folder: str | Path) -> None:
    """Put the adapter and convolutions saved in ``folder`` into ``net`` (which must have the same shapes)."""
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no inversion weights ({WEIGHTS})")
    try:
        state = load_file(str(path))
    except Exception as e:  # SafetensorError: a torn or foreign file
        raise ValueError(f"{path} is not a safetensors file ({type(e).__name__}: {e})") from e
    own = net.unet.state_dict()
    bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise ValueError(f"{path} does not fit this generator's UNet (e.g. {bad[:3]})")
    net.unet.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
