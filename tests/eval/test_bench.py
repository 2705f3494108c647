import json

import numpy as np
import pytest

from retouch.eval.bench import BenchConfig, run_bench
from retouch.methods import EditRequest, EditResult, Method, get_method
from retouch.world.suite import write_suite


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_suite")
    write_suite(d, n=40, seed=12)
    return d


def test_oracle_and_identity_calibrate_the_metrics(suite, tmp_path):
    o = run_bench(BenchConfig(suite=str(suite), method="oracle", json_out=str(tmp_path / "o.json")))
    assert o["n"] == 40
    assert o["success"] == 1.0 and o["attr_accuracy"] == 1.0
    assert o["gt_l1"] == 0.0 and o["gt_l2"] == 0.0
    i = run_bench(BenchConfig(suite=str(suite), method="identity"))
    assert i["success"] == 0.0
    assert i["bg_psnr"] == 100.0 and i["bg_mse"] == 0.0 and i["bg_ssim"] == pytest.approx(1.0)
    assert i["gt_l1"] > 0
    # the summary file, the per-case CSV and the markdown table are written
    summary = json.loads((tmp_path / "o.json").read_text())
    for k in (
        "n",
        "success",
        "attr_accuracy",
        "bg_psnr",
        "bg_mse",
        "bg_ssim",
        "gt_l1",
        "gt_l2",
        "s_per_edit",
        "nfe_per_edit",
        "s_per_inversion",
        "nfe_per_inversion",
        "per_type",
    ):
        assert k in summary
    assert set(summary["per_type"]) >= {"random", "change_style"}
    assert (tmp_path / "o.csv").read_text().count("\n") == 41
    assert "| change_style |" in (tmp_path / "o.md").read_text()
    assert summary["lpips"].startswith("unavailable") or summary["lpips"] == "available"


class Spy(Method):
    name = "spy"

    def __init__(self):
        self.seen = []

    def edit(self, request: EditRequest, callback=None) -> EditResult:
        self.seen.append(request)
        return EditResult(image=request.image.copy(), nfe_edit=4, nfe_inversion=8)


@pytest.mark.parametrize(
    "inputs, given",
    [
        ("instruction", {"instruction"}),
        ("prompts", {"source_prompt", "target_prompt"}),
        ("mask", {"instruction", "source_prompt", "target_prompt", "mask"}),
    ],
)
def test_a_method_sees_only_what_inputs_allow(suite, inputs, given):
    spy = Spy()
    s = run_bench(BenchConfig(suite=str(suite), method="spy", inputs=inputs, limit=5), method=spy)
    assert len(spy.seen) == 5
    for r in spy.seen:
        have = {k for k in ("instruction", "source_prompt", "target_prompt", "mask") if getattr(r, k) is not None}
        assert have == given
        assert not hasattr(r, "target_scene") and not hasattr(r, "target")
    assert s["nfe_per_edit"] == 4 and s["nfe_per_inversion"] == 8


def test_mask_input_is_the_exact_world_mask(suite):
    spy = Spy()
    run_bench(BenchConfig(suite=str(suite), method="spy", inputs="mask", limit=3), method=spy)
    from retouch.world.suite import load_suite

    for r, case in zip(spy.seen, load_suite(suite), strict=False):
        assert r.mask.dtype == bool and r.mask.shape == (128, 128)
        # PIE's border rule is for scoring, not for the method's input
        assert np.array_equal(r.mask, case.mask((128, 128), border=False))


class Shrinker(Method):
    name = "shrinker"

    def edit(self, request, callback=None):
        return EditResult(image=request.image[:64])


def test_wrong_output_size_is_an_error(suite):
    with pytest.raises(RuntimeError, match="returned shape"):
        run_bench(BenchConfig(suite=str(suite), method="shrinker", limit=1), method=Shrinker())


def test_unknown_method_and_inputs_are_clear_errors(suite):
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(ValueError, match="unknown --inputs"):
        run_bench(BenchConfig(suite=str(suite), method="identity", inputs="everything"))


def test_reference_methods_refuse_to_run_outside_the_bench():
    with pytest.raises(RuntimeError, match="reference method"):
        get_method("oracle").edit(EditRequest(image=np.zeros((32, 32, 3), np.uint8)))


def _write_tiny_vit(path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)
    ViTModel(cfg).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)


def test_clip_and_dino_metrics_when_models_are_given(suite, tmp_path):
    from tests.eval.test_clip import _write_tiny_clip

    _write_tiny_clip(tmp_path / "clip")
    _write_tiny_vit(tmp_path / "dino")
    s = run_bench(BenchConfig(suite=str(suite), method="identity", limit=4, clip=str(tmp_path / "clip"), dino=str(tmp_path / "dino")))
    assert s["dino_src"] == pytest.approx(1.0, abs=1e-5)  # identity returns the source
    assert s["dino_gt"] < 1.0
    assert s["clip_img"] == pytest.approx(1.0, abs=1e-5) and s["clip_dir"] == pytest.approx(0.0, abs=1e-5)
    assert 0.0 <= s["clip_whole"] <= 100.0
    assert s["dino"].startswith("available")
    with pytest.raises(RuntimeError, match="offline"):
        run_bench(BenchConfig(suite=str(suite), method="identity", limit=1, dino=str(tmp_path / "nothing")))


def test_detection_stats_separate_missing_from_wrong():
    from retouch.eval.metrics import detection_stats
    from retouch.world.scene import Scene, WorldObject

    a = WorldObject("star", "red", "small", "solid", "upright", "moon", 0)
    b = WorldObject("circle", "blue", "large", "dotted", "upright", "bolt", 1)
    target = Scene((a, b), "plain", "flat")
    # one object drawn with the wrong colour, the other not drawn at all
    pred = Scene((WorldObject("star", "green", "small", "solid", "upright", "moon", 0),), "plain", "flat")
    d = detection_stats([pred], [target])
    assert d["detected"] == 0.5
    assert d["acc_detected_color"] == 0.0 and d["acc_detected_shape"] == 1.0
