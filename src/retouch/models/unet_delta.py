"""A UNet folder stored as a low-rank delta on another UNet: how a fine-tuned Shapes model stays small.

The Shapes inpainting UNet is the text-to-image teacher with a wider first convolution (it also reads the mask
and the masked image's latent, as SD-inpainting's UNet does) and low-rank adapters (LoRA, Hu et al. 2022,
eq. 3: W' = W + (alpha / r) B A) trained on every attention and ResNet layer.  Shipping it whole would cost a
second 8 MB; as a delta it costs about one.  The folder is an ordinary diffusers ``unet/`` folder except
for its weights::

    unet/config.json              the full UNet2DConditionModel config (its in_channels included)
    unet/retouch_delta.json       {"base": RELATIVE_PATH_TO_BASE_UNET_FOLDER, "rank": r, "alpha": a}
    unet/delta.safetensors        "<module>.lora_A.weight" / "<module>.lora_B.weight" pairs, and tensors
                                  that replace the base's whole (the widened conv_in)

``load_unet_delta`` rebuilds the merged UNet (a plain ``UNet2DConditionModel``; nothing of peft stays), so
every sampler sees it like any other.  ``unet_delta_state`` turns a peft-adapted UNet (``unet.add_adapter``)
into the delta's tensors.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

DELTA_REF = "retouch_delta.json"
DELTA_WEIGHTS = "delta.safetensors"
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


def is_unet_delta(folder: str | Path) -> bool:
    return (Path(folder) / DELTA_REF).is_file()


def unet_delta_state(unet: torch.nn.Module, full: tuple[str, ...]) -> dict[str, Tensor]:
    """The delta of a peft-adapted UNet: each LoRA pair under ``<module>.lora_A/B.weight`` (peft's adapter name
    dropped) and every parameter of the modules named in ``full`` whole (under the base model's own names)."""
    out: dict[str, Tensor] = {}
    for name, t in unet.state_dict().items():
        m = _LORA_KEY.match(name)
        if m:
            out[f"{m['module']}.lora_{m['ab']}.weight"] = t.detach()
        elif any(name.startswith(p + ".") for p in full):
            out[name.replace(".base_layer.", ".")] = t.detach()
    return out


def save_unet_delta(folder: str | Path, config: dict, state: dict[str, Tensor], base: str | Path, rank: int, alpha: float) -> None:
    """Write ``folder`` (a ``unet/`` component) as a delta of the UNet folder ``base``."""
    from ..atomic import save_safetensors, write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = Path(base).resolve()
    if not (base / "config.json").is_file():
        raise FileNotFoundError(f"the base UNet folder {base} has no config.json")
    save_safetensors({k: v.to(torch.float16).contiguous().cpu() for k, v in state.items()}, folder / DELTA_WEIGHTS)
    write_json(folder / "config.json", {k: v for k, v in config.items() if not k.startswith("_")} | {"_class_name": "UNet2DConditionModel"})
    write_json(folder / DELTA_REF, {"base": os.path.relpath(base, folder.resolve()), "rank": int(rank), "alpha": float(alpha)})


def merge_delta(base_state: dict[str, Tensor], delta: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
    """``base_state`` with every LoRA pair of ``delta`` added (W + scale B A) and its whole tensors put in."""
    out = dict(base_state)
    pairs: dict[str, dict[str, Tensor]] = {}
    for k, v in delta.items():
        m = _LORA_KEY.match(k)
        if m:
            pairs.setdefault(m["module"], {})[m["ab"]] = v.float()
        else:
            out[k] = v
    for module, ab in pairs.items():
        key = f"{module}.weight"
        if key not in out or set(ab) != {"A", "B"}:
            raise ValueError(f"the delta's LoRA pair for {module!r} does not fit the base UNet")
        w = out[key].float()
        a, b = ab["A"], ab["B"]  # Linear: (r, in), (out, r); Conv2d: (r, in, k, k), (out, r, 1, 1)
        if w.ndim == 2:
            d = b @ a  # (out, in)
        else:
            d = torch.einsum("or,rikl->oikl", b.flatten(1), a)  # (out, in, k, k)
        if d.shape != w.shape:
            raise ValueError(f"the delta for {module!r} has shape {tuple(d.shape)}, the base weight {tuple(w.shape)}")
        out[key] = (w + scale * d).to(out[key].dtype)
    return out


def load_unet_delta(folder: str | Path, torch_dtype: torch.dtype = torch.float32, **_: Any) -> Any:
    """The merged ``UNet2DConditionModel`` of a delta folder (see the module docstring)."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        ref = json.loads((folder / DELTA_REF).read_text())
        base = (folder / ref["base"]).resolve()
        scale = float(ref["alpha"]) / int(ref["rank"])
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        raise ValueError(f"{folder}: not a readable UNet delta folder ({type(e).__name__}: {e})") from e
    if not (base / "config.json").is_file():
        raise FileNotFoundError(f"{folder / DELTA_REF} names the base UNet {base}, which is missing")
    try:
        delta = load_file(str(folder / DELTA_WEIGHTS))
    except Exception as e:  # SafetensorError, FileNotFoundError: say which file
        raise ValueError(f"{folder / DELTA_WEIGHTS} cannot be read ({type(e).__name__}: {e})") from e
    base_state = UNet2DConditionModel.from_pretrained(base, torch_dtype=torch.float32).state_dict()
    unet = UNet2DConditionModel.from_config(config)
    state = merge_delta(base_state, delta, scale)
    own = unet.state_dict()
    bad = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if bad:
        raise ValueError(f"{folder}: the merged weights do not fit its config (e.g. {bad[:3]})")
    unet.load_state_dict({k: state[k].float() for k in own})
    return unet.to(torch_dtype).eval()


def delta_base(folder: str | Path) -> Path:
    """The base UNet folder a delta folder is stored against."""
    folder = Path(folder)
    try:
        return (folder / json.loads((folder / DELTA_REF).read_text())["base"]).resolve()
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{folder}: not a readable UNet delta folder ({type(e).__name__}: {e})") from e


def load_delta_into_peft(unet: torch.nn.Module, folder: str | Path) -> None:
    """Put a delta folder's LoRA pairs and whole tensors into a peft-adapted UNet of the same shapes (to go on
    training it: the feedback stages start from the inpainting model's adapters)."""
    from safetensors.torch import load_file

    delta = load_file(str(Path(folder) / DELTA_WEIGHTS))
    own = unet.state_dict()
    names = {}
    for k in own:
        m = _LORA_KEY.match(k)
        names[f"{m['module']}.lora_{m['ab']}.weight" if m else k.replace(".base_layer.", ".")] = k
    missing = [k for k in delta if k not in names or own[names[k]].shape != delta[k].shape]
    if missing:
        raise ValueError(f"{folder}: the delta does not fit this UNet's adapters (e.g. {missing[:3]})")
    unet.load_state_dict({names[k]: v.float() for k, v in delta.items()}, strict=False)
