"""The backbone recipes (autoencoder -> teacher -> student) run end to end at toy size, and the
pieces with a closed form are checked against it."""

from __future__ import annotations

import json
import random

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


def test_slot_teacher_and_its_student_carry_the_adapter(tmp_path):
    """A teacher with a slot adapter saves it as ``text_adapter/``; the loader applies it, the student shares it."""
    ae_dir = tmp_path / "ae"
    ae = {
        "task": "autoencoder", "out": str(ae_dir), "steps": 1, "batch_size": 2, "crop": 32, "pool": 4, "channels": [8, 16, 16, 16],
        "blocks": [1, 1, 1, 1], "eval_n": 2, "stats_n": 4, "ckpt_every": 1, "threads": 1, "decoder_steps": 1,
    }  # fmt: skip
    teacher = {
        "task": "t2i", "out": str(tmp_path / "teacher"), "autoencoder": str(ae_dir), "cache": str(tmp_path / "cache"), "n_scenes": 8,
        "steps": 3, "batch_size": 4, "channels": [32, 32], "heads": 2, "ckpt_every": 1, "threads": 1, "default_steps": 2,
        "grounding": 0.5, "slot_tokens": 4, "slot_parse": 1.0, "lr": 1e-2, "warmup": 1,
    }  # fmt: skip
    student = {
        "task": "distill", "out": str(tmp_path / "turbo"), "teacher": teacher["out"], "teacher_recipe": str(tmp_path / "teacher.json"),
        "n_pairs": 4, "teacher_steps": 2, "steps": 1, "batch_size": 2, "gen_batch": 2, "ckpt_every": 1, "threads": 1,
        "share_teacher": True,
    }  # fmt: skip
    for name, r in (("ae", ae), ("teacher", teacher), ("student", student)):
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
        run_recipe(tmp_path / f"{name}.json")
    state = torch.load(tmp_path / "teacher" / "checkpoint.pt", weights_only=False)
    assert {"adapter", "ema_adapter", "parse"} <= set(state)
    t, s = load_backbone(tmp_path / "teacher"), load_backbone(tmp_path / "turbo")
    assert json.loads((tmp_path / "teacher" / "model_index.json").read_text())["text_adapter"] == ["retouch", "SlotAdapter"]
    assert t.text_adapter is not None and s.text_adapter is not None
    for a, b in zip(t.text_adapter.parameters(), s.text_adapter.parameters(), strict=True):
        assert torch.equal(a, b)
    tokens = t.encode_text(["a red star at the top left", "a blue square"]).tokens
    max_len = t.tokenizers[0].model_max_length
    assert tokens.shape == (2, max_len + 4, 384)
    # the slot vectors depend on the caption and are not padding (non-zero)
    assert tokens[:, max_len:].abs().sum(-1).min() > 0 and not torch.allclose(tokens[0, max_len:], tokens[1, max_len:])
    assert generate(s, ["a red star"], steps=1).shape == (1, 128, 128, 3)
    # continuing a slot teacher keeps its adapter; dropping it, or another slot count, is refused
    more = teacher | {"out": str(tmp_path / "more"), "init": teacher["out"], "steps": 1, "lr": 0.0}
    assert run_recipe_dict(tmp_path, more)["steps"] == 1
    for a, b in zip(load_backbone(tmp_path / "more").text_adapter.parameters(), t.text_adapter.parameters(), strict=True):
        assert torch.equal(a, b)  # with lr 0 the continued adapter is the one it started from
    with pytest.raises(ValueError, match="slot_tokens: 4"):
        run_recipe_dict(tmp_path, more | {"slot_tokens": 0, "slot_parse": 0.0, "out": str(tmp_path / "x")})
    with pytest.raises(ValueError, match="slot_tokens must be 0"):
        run_recipe_dict(tmp_path, teacher | {"slot_tokens": 3, "out": str(tmp_path / "y")})
    # the student ships no second copy of the autoencoder or adapter: pointers to the teacher's
    assert not any((tmp_path / "turbo" / "vae").glob("*.safetensors")) and (tmp_path / "turbo" / "vae" / "retouch_link.json").is_file()
    assert not any((tmp_path / "turbo" / "text_adapter").glob("*.safetensors"))
    # moved without its teacher, the student says what is missing
    import shutil

    shutil.move(tmp_path / "teacher", tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="retouch_link.json"):
        load_backbone(tmp_path / "turbo")


def run_recipe_dict(folder, recipe: dict) -> dict:
    path = folder / "recipe.json"
    path.write_text(json.dumps(recipe))
    return run_recipe(path)
