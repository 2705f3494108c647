"""The low-rank UNet delta (models/unet_delta.py): saved from a peft-adapted widened UNet, merged on load, it computes
what the adapted UNet computes; the inpainting widening starts as the base model."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import UNet2DConditionModel

from retouch.models.unet_delta import delta_base, load_delta_into_peft, load_unet_delta, merge_delta, save_unet_delta, unet_delta_state
from retouch.train.inpaint import adapted_unet, widen_unet

C, M = 4, 3  # latent channels, layout channels


def tiny_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=C + M,
        out_channels=C,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=4,
    ).eval()


@pytest.fixture()
def base_dir(tmp_path):
    folder = tmp_path / "teacher" / "unet"
    tiny_unet().save_pretrained(folder)
    return folder


def _inputs(channels: int):
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, channels, 8, 8, generator=g), torch.tensor([10, 500]), torch.randn(2, 5, 16, generator=g)


def test_widening_starts_as_the_base_model():
    base = tiny_unet()
    wide = widen_unet(base, 1 + C, C).eval()
    x, t, enc = _inputs(C + M)
    fill = torch.randn(2, 1 + C, 8, 8)
    with torch.no_grad():
        want = base(x, t, encoder_hidden_states=enc).sample
        got = wide(torch.cat([x[:, :C], fill, x[:, C:]], 1), t, encoder_hidden_states=enc).sample
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_saved_delta_loads_as_the_adapted_unet(base_dir, tmp_path):
    targets = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2")
    net = adapted_unet(base_dir, C, rank=4, alpha=8.0, targets=targets, full=("conv_in",))
    with torch.no_grad():  # move the adapters and the first convolution away from their start
        for p in net.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    net.eval()
    state = unet_delta_state(net, ("conv_in",))
    assert any(k.endswith("lora_A.weight") for k in state) and "conv_in.weight" in state
    assert not any(".default" in k or "base_layer" in k for k in state)
    out = tmp_path / "inpaint" / "unet"
    save_unet_delta(out, dict(net.config), state, base_dir, 4, 8.0)
    assert delta_base(out) == base_dir.resolve()
    assert json.loads((out / "config.json").read_text())["in_channels"] == C + 1 + C + M
    merged = load_unet_delta(out)
    x, t, enc = _inputs(C + 1 + C + M)
    with torch.no_grad():
        want = net(x, t, encoder_hidden_states=enc).sample
        got = merged(x, t, encoder_hidden_states=enc).sample
    # the delta is stored in fp16: equal to fp16 rounding of the adapters
    torch.testing.assert_close(got, want, atol=2e-3, rtol=2e-3)
    # and it goes back into a fresh adapted UNet (the feedback stages continue from it)
    again = adapted_unet(base_dir, C, rank=4, alpha=8.0, targets=targets, full=("conv_in",)).eval()
    load_delta_into_peft(again, out)
    with torch.no_grad():
        torch.testing.assert_close(again(x, t, encoder_hidden_states=enc).sample, got, atol=2e-3, rtol=2e-3)


def test_a_delta_that_does_not_fit_is_refused(base_dir, tmp_path):
    state = {
        "down_blocks.0.resnets.0.conv1.lora_A.weight": torch.zeros(2, 99, 3, 3),
        "down_blocks.0.resnets.0.conv1.lora_B.weight": torch.zeros(16, 2, 1, 1),
    }
    base = UNet2DConditionModel.from_pretrained(base_dir).state_dict()
    with pytest.raises(ValueError, match="conv1"):
        merge_delta(base, state, 1.0)
    out = tmp_path / "bad" / "unet"
    save_unet_delta(out, dict(tiny_unet().config), state, base_dir, 2, 2.0)
    with pytest.raises(ValueError, match="conv1"):
        load_unet_delta(out)
    (base_dir / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="base UNet"):
        load_unet_delta(out)
