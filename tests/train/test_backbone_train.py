"""The backbone recipes (autoencoder -> teacher -> student) run end to end at toy size, and the
pieces with a closed form are checked against it."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from retouch.generate import generate
from retouch.models import load_backbone
from retouch.models.backbone import Denoiser, TextConditioning
from retouch.sampling import sample_ddim, timesteps_for
from retouch.train import run_recipe
from retouch.train.distill import waypoints
from retouch.train.t2i import encoder_key, make_scheduler
from retouch.world.captions import varied_caption
from retouch.world.scene import random_scene


def test_varied_captions_name_every_object_once_in_some_wording():
    rng = random.Random(0)
    seen = set()
    for k in range(200):
        scene = random_scene(random.Random(k))
        cap = varied_caption(scene, rng)
        seen.add(cap.split(" ")[0])
        for o in scene.objects:
            assert o.shape in cap and o.color in cap
        assert cap.count(";") + cap.count(". ") + cap.count(", and ") >= len(scene.objects) - 1
    assert len(seen) > 3  # the wording really varies


class _Oracle(Denoiser):
    """Predicts a fixed clean sample exactly (v-parametrization): a perfect student."""

    def __init__(self, x0: torch.Tensor) -> None:
        super().__init__("v_prediction", make_scheduler("v_prediction").alphas_cumprod)
        self.x0 = x0
        self.seen: list[torch.Tensor] = []

    def forward(self, x, t, cond, concat=None):
        self.seen.append(x.clone())
        a = self.alpha_at(t, x)
        eps = (x - a.sqrt() * self.x0) / (1 - a).sqrt()
        return a.sqrt() * eps - (1 - a).sqrt() * self.x0  # v


def test_waypoints_are_what_a_perfect_student_visits():
    g = torch.Generator().manual_seed(0)
    x0, z = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64), torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
    oracle = _Oracle(x0)
    ts = timesteps_for(4)
    out = sample_ddim(oracle, z, ts, TextConditioning(torch.zeros(1, 1, 4, dtype=torch.float64)))
    alphas = [float(oracle.alphas_cumprod[t]) for t in ts]
    for want, got in zip(waypoints(z, x0, alphas), oracle.seen, strict=True):
        torch.testing.assert_close(want, got)
    torch.testing.assert_close(out, x0)


def test_backbone_recipes_run_end_to_end(tmp_path):
    ae_dir, teacher_dir, student_dir = tmp_path / "ae", tmp_path / "teacher", tmp_path / "turbo"
    cache = str(tmp_path / "cache")
    ae = {
        "task": "autoencoder", "out": str(ae_dir), "steps": 2, "batch_size": 2, "crop": 32, "pool": 4,
        "channels": [8, 16, 16, 16], "blocks": [1, 1, 1, 1], "eval_n": 4, "stats_n": 4, "ckpt_every": 1, "threads": 1, "decoder_steps": 2,
    }  # fmt: skip
    teacher = {
        "task": "t2i", "out": str(teacher_dir), "autoencoder": str(ae_dir), "cache": cache, "n_scenes": 6, "steps": 2,
        "batch_size": 3, "channels": [32, 32], "heads": 2, "ckpt_every": 1, "threads": 1, "default_steps": 3, "guidance": 2.0,
    }  # fmt: skip
    # the teacher is made in two stages, as the shipped one: a base run, then a grounded continuation
    # that trains the base first when it is missing
    base = teacher | {"out": str(tmp_path / "base"), "steps": 1}
    teacher |= {"grounding": 0.5, "object_weight": 2.0, "init": base["out"], "init_recipe": str(tmp_path / "base.json")}
    recipes = {}
    for name, r in (("ae", ae), ("base", base), ("teacher", teacher)):
        recipes[name] = tmp_path / f"{name}.json"
        recipes[name].write_text(json.dumps(r))
    student = {
        "task": "distill", "out": str(student_dir), "teacher": str(teacher_dir), "teacher_recipe": str(recipes["teacher"]),
        "n_pairs": 4, "teacher_steps": 4, "steps": 2, "batch_size": 2, "gen_batch": 2, "ckpt_every": 1, "threads": 1,
    }  # fmt: skip
    recipes["student"] = tmp_path / "student.json"
    recipes["student"].write_text(json.dumps(student))

    m = run_recipe(recipes["ae"])
    assert {"psnr", "reader_exact_scene", "latent_std"} <= set(m)
    # phase 2 trained the decoder alone: the saved encoder is the one phase 1 saved
    assert torch.load(ae_dir / "decoder_checkpoint.pt", weights_only=False)["step"] == 2
    key = encoder_key(ae_dir)
    assert run_recipe(recipes["ae"], decoder_steps=3) and encoder_key(ae_dir) == key
    assert run_recipe(recipes["teacher"])["steps"] == 2
    assert torch.load(tmp_path / "base" / "checkpoint.pt", weights_only=False)["step"] == 1
    assert torch.load(teacher_dir / "checkpoint.pt", weights_only=False)["step"] == 2
    assert run_recipe(recipes["student"])["steps"] == 2

    t, s = load_backbone(teacher_dir), load_backbone(student_dir)
    assert (t.default_steps, t.default_guidance) == (3, 2.0)
    assert (s.default_steps, s.default_guidance) == (4, 1.0)
    assert s.latent_channels == 16 and s.default_size == 128
    # the student starts from the teacher and moved
    tw, sw = t.denoiser.unet.state_dict(), s.denoiser.unet.state_dict()
    assert tw.keys() == sw.keys() and any(not torch.equal(tw[k], sw[k]) for k in tw)
    # a resumed teacher continues from its checkpoint
    assert run_recipe(recipes["teacher"], steps=3)["steps"] == 3


def test_layout_teacher_student_and_inversion_read_the_caption_reader_map(tmp_path):
    """A layout-map teacher with a draft network saves its map's channels and links to its caption reader and draft;
    the loader paints the map and the encoded draft from the caption, the student and the inversion network read
    them too, and turbo's layout mask follows the map."""
    from retouch.models.caption_reader import DEFAULT_CAPTION_READER
    from retouch.models.layout import LAYOUT_CHANNELS

    ae = {
        "task": "autoencoder", "out": str(tmp_path / "ae"), "steps": 1, "batch_size": 2, "crop": 32, "pool": 4, "channels": [8, 16, 16, 16],
        "blocks": [1, 1, 1, 1], "eval_n": 2, "stats_n": 4, "ckpt_every": 1, "threads": 1, "decoder_steps": 1,
    }  # fmt: skip
    teacher = {
        "task": "t2i", "out": str(tmp_path / "teacher"), "autoencoder": str(tmp_path / "ae"), "cache": str(tmp_path / "cache"),
        "n_scenes": 8, "steps": 2, "batch_size": 4, "channels": [32, 32], "heads": 2, "ckpt_every": 1, "threads": 1,
        "default_steps": 2, "layout": True, "caption_reader": str(DEFAULT_CAPTION_READER), "snapshot_every": 1, "bf16_cpu": True,
        "draft": str(tmp_path / "draft"),
    }  # fmt: skip
    draft = {
        "task": "draft", "out": str(tmp_path / "draft"), "cache": str(tmp_path / "cache"), "n_scenes": 4, "steps": 1, "batch_size": 2,
        "widths": [16, 16, 8, 8], "embed": 32, "seam": 8, "eval_n": 2, "threads": 1,
    }  # fmt: skip
    student = {
        "task": "distill", "out": str(tmp_path / "turbo"), "teacher": teacher["out"], "teacher_recipe": str(tmp_path / "teacher.json"),
        "n_pairs": 4, "teacher_steps": 2, "steps": 1, "batch_size": 2, "gen_batch": 2, "ckpt_every": 1, "threads": 1,
        "share_teacher": True,
    }  # fmt: skip
    inversion = {
        "task": "inversion", "out": str(tmp_path / "turbo-inversion"), "generator": student["out"],
        "teacher_recipe": str(tmp_path / "teacher.json"), "detailed_only": False, "steps": 1, "batch_size": 2, "eval_n": 2,
        "ckpt_every": 1, "rank": 2,
    }  # fmt: skip
    for name, r in (("ae", ae), ("draft", draft), ("teacher", teacher), ("student", student), ("inversion", inversion)):
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
        run_recipe(tmp_path / f"{name}.json")
    assert sorted(p.name for p in (tmp_path / "teacher" / "snapshots").iterdir()) == ["step-000001", "step-000002"]
    t, s = load_backbone(tmp_path / "teacher"), load_backbone(tmp_path / "turbo")
    for bb in (t, s):
        assert bb.caption_reader is not None and bb.draft is not None
        assert bb.denoiser.unet.config.in_channels == 16 + LAYOUT_CHANNELS + 16
        cond = bb.encode_text(["a red star at the top left", "a blue square at the bottom right"])
        assert cond.layout.shape == (2, LAYOUT_CHANNELS + 16, 16, 16) and not torch.equal(cond.layout[0], cond.layout[1])
        # the draft's channels are the autoencoder's encoding of the draft network's picture of the caption's reading
        with torch.no_grad():
            reading = bb.caption_reader(*_tokens_and_mask(bb, ["a red star at the top left"]))
            want = bb.encode_images(((bb.draft.draw(reading) + 1) * 127.5).round().permute(0, 2, 3, 1).to(torch.uint8).numpy())
        torch.testing.assert_close(cond.layout[:1, LAYOUT_CHANNELS:], want, atol=0.15, rtol=0)
        assert torch.count_nonzero(bb.unconditional(1).layout) == 0  # guidance drops the map with the caption
    assert generate(t, ["a red star"], steps=2).shape == (1, 128, 128, 3)

    from retouch.methods import EditRequest, get_method

    img = generate(s, ["a red star at the top left on a plain background"], steps=1)[0]
    turbo = get_method("turbo", model=str(tmp_path / "turbo"), mask="layout", captioner=None)
    src = "a large red solid star at the top left, on a plain background"
    tgt = src.replace("red", "blue")
    res = turbo.edit(EditRequest(image=img, source_prompt=src, target_prompt=tgt))
    assert res.image.shape == img.shape and res.info["mask"] == "layout"
    # only the star's place differs between the two captions' maps: the other three quadrants stay as they were
    assert 0 < res.info["mask_fraction"] <= 0.25 + 1e-6
    # the default ("auto") takes that same layout mask on a layout-map generator
    auto = get_method("turbo", model=str(tmp_path / "turbo"), captioner=None)
    auto = auto.edit(EditRequest(image=img, source_prompt=src, target_prompt=tgt))
    assert auto.info["mask"] == "layout" and auto.info["mask_fraction"] == res.info["mask_fraction"]
    assert np.array_equal(res.image[80:, 80:], img[80:, 80:])
    # the student ships no second copy of the autoencoder: a pointer to the teacher's; moved alone, it says what is missing
    assert not any((tmp_path / "turbo" / "vae").glob("*.safetensors")) and (tmp_path / "turbo" / "vae" / "retouch_link.json").is_file()
    import shutil

    shutil.move(tmp_path / "teacher", tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="retouch_link.json"):
        load_backbone(tmp_path / "turbo")


def _tokens_and_mask(bb, prompts):
    enc, tok = bb.text_encoders[0], bb.tokenizers[0]
    b = tok(prompts, padding="max_length", truncation=True, max_length=tok.model_max_length, return_tensors="pt")
    return enc(b.input_ids, attention_mask=b.attention_mask)[0] * b.attention_mask[..., None], b.attention_mask


def test_decoder_fine_tune_from_a_shipped_autoencoder_keeps_its_encoder(tmp_path):
    """``init`` + ``decoder_steps`` fine-tunes only the decoder (with the scale-equivariance term): latents, and so
    every denoiser trained on them, stay valid."""
    from safetensors.torch import load_file

    base = {
        "task": "autoencoder", "out": str(tmp_path / "ae"), "steps": 1, "batch_size": 2, "crop": 32, "pool": 4, "channels": [8, 16, 16, 16],
        "blocks": [1, 1, 1, 1], "eval_n": 2, "stats_n": 4, "ckpt_every": 1, "threads": 1,
    }  # fmt: skip
    tuned = base | {"out": str(tmp_path / "tuned"), "init": str(tmp_path / "ae"), "steps": 0, "decoder_steps": 2, "equivariance": 1.0}
    tuned["decoder_lr"] = 1e-2
    # with steps > 0 the same init is fine-tuned jointly (EQ-VAE style): the encoder moves, so the latents change
    joint = base | {"out": str(tmp_path / "joint"), "init": str(tmp_path / "ae"), "steps": 2, "lr": 1e-2, "equivariance": 1.0}
    for name, r in (("base", base), ("tuned", tuned), ("joint", joint)):
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
        run_recipe(tmp_path / f"{name}.json")
    assert encoder_key(tmp_path / "ae") == encoder_key(tmp_path / "tuned")
    a = load_file(tmp_path / "ae" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "tuned" / "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))
    assert encoder_key(tmp_path / "joint") != encoder_key(tmp_path / "ae")
    (tmp_path / "bad.json").write_text(json.dumps(tuned | {"out": str(tmp_path / "bad"), "decoder_steps": 0}))
    with pytest.raises(ValueError, match="decoder_steps"):
        run_recipe(tmp_path / "bad.json")



def test_repa_term_trains_a_layout_teacher_and_names_a_bad_layer(tmp_path):
    """REPA (``repa`` > 0): the scene reader's per-place features of the training renders are cached once, the run
    trains and saves a pipeline that loads and draws like any other (the projector is not part of it), and an unknown
    layer is refused by name."""
    from retouch.models.caption_reader import DEFAULT_CAPTION_READER
    from retouch.models.layout import LAYOUT_CHANNELS
    from retouch.train.t2i import reader_features

    ae = {
        "task": "autoencoder", "out": str(tmp_path / "ae"), "steps": 1, "batch_size": 2, "crop": 32, "pool": 4, "channels": [8, 16, 16, 16],
        "blocks": [1, 1, 1, 1], "eval_n": 2, "stats_n": 4, "ckpt_every": 1, "threads": 1,
    }  # fmt: skip
    teacher = {
        "task": "t2i", "out": str(tmp_path / "teacher"), "autoencoder": str(tmp_path / "ae"), "cache": str(tmp_path / "cache"),
        "n_scenes": 8, "steps": 2, "batch_size": 4, "channels": [32, 32], "heads": 2, "ckpt_every": 1, "threads": 1,
        "default_steps": 2, "layout": True, "caption_reader": str(DEFAULT_CAPTION_READER), "bf16_cpu": True,
        "repa": 0.5, "repa_layer": "down_blocks.0.attentions.0",
    }  # fmt: skip
    for name, r in (("ae", ae), ("teacher", teacher)):
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
        run_recipe(tmp_path / f"{name}.json")
    # the cached targets are the reader's features of each scene's own render, each place's 4 x 4 map where the place lies
    (cached,) = (tmp_path / "cache").glob("reader-*.npy")
    feats = np.load(cached)
    scene = random_scene(random.Random(3000 * 1_000_003 + 5))
    assert feats.shape == (8, 128, 8, 8) and np.array_equal(feats[5], reader_features([scene])[0])
    assert not np.array_equal(feats[5, :, :4, :4], feats[5, :, 4:, 4:])
    bb = load_backbone(tmp_path / "teacher")
    assert bb.denoiser.unet.config.in_channels == 16 + LAYOUT_CHANNELS
    assert not any("repa" in k for k in bb.denoiser.unet.state_dict())
    assert generate(bb, ["a red star at the top left"], steps=2).shape == (1, 128, 128, 3)
    bad = teacher | {"out": str(tmp_path / "bad"), "repa_layer": "down_blocks.9.attentions.0"}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="repa_layer 'down_blocks.9.attentions.0' is not one of this UNet's attention blocks"):
        run_recipe(tmp_path / "bad.json")
